"""What ``edgeroute bench`` and ``edgeroute calibrate`` do, as functions (the CLI only parses and prints)."""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional, TextIO, Union

from ..local.base import LocalModel
from ..policy.calibration import (
    Calibration,
    calibrate_guarantee,
    calibrate_selective,
    calibrate_target_rate,
    load_calibration,
    save_calibration,
)
from .datasets import load_items
from .grading import grade
from .report import CloudAssumptions, build_report, markdown, public
from .runner import RunParams, decode_vector, rescore, run_cloud, run_local
from ..signals import SelfRefBlend, confidence_signal, default_signals
from ..signals.probe import PregenProbe, model_identity


def needs_hidden(signals: list[Any]) -> bool:
    """A hidden-state probe is among ``signals``, so cached records need their hidden states."""
    from ..signals.probe import ProbeSignal

    return any(isinstance(s, ProbeSignal) for s in signals)


def _signals(engine: LocalModel) -> list[Any]:
    """The Router's signals for ``engine`` (with the Self-REF blend when the engine runs an adapter)."""
    return default_signals(engine)


def _provider(signals: list[Any]) -> str:
    """The name of the confidence the Router would use with ``signals`` (``confidence_signal``)."""
    signal = confidence_signal(signals)
    assert signal is not None
    return str(signal.provides_confidence)


def open_model(model: Optional[str | LocalModel], *, selfref: bool = False,
               hidden_layers: Optional[Union[str, tuple[int, ...]]] = None) -> tuple[LocalModel, bool]:
    """The engine to run (and whether this module owns it); with ``selfref``, the shipped Self-REF adapter is
    loaded when it was trained on this model; ``hidden_layers``: the blocks to capture (default: the engine's)."""
    if isinstance(model, LocalModel):
        return model, False
    from ..local.llama import LlamaCppModel
    from ..local.selfref import SelfRefAdapter

    engine = LlamaCppModel(model, hidden_layers=hidden_layers)
    adapter = SelfRefAdapter.shipped() if selfref else None
    if adapter is not None and adapter.fits(engine.fingerprint):
        engine.load_selfref(adapter)
    return engine, True


def run_bench(
    *,
    split: str = "test",
    data: Optional[str] = None,
    model: Optional[str | LocalModel] = None,
    limit: Optional[int] = None,
    params: RunParams = RunParams(),
    cloud: CloudAssumptions = CloudAssumptions(),
    cloud_url: Optional[str] = None,
    cloud_model: Optional[str] = None,
    use_cache: bool = True,
    out_dir: Optional[Path] = None,
    progress: Optional[TextIO] = sys.stderr,
    selfref: bool = True,
) -> dict[str, Any]:
    """Run (or reuse) the local model over a split, optionally a real cloud too, and build the report. With
    ``selfref`` (default) the shipped Self-REF adapter scores every answer when it fits the model (``selfref``
    under ``signals``; answers cached without it are generated again, with the same text).

    With ``out_dir``, also writes ``report.md``, ``report.json`` and the PNG plots there."""
    t0 = time.perf_counter()
    items = load_items(data, split)[: limit or None]
    local_model, owned = open_model(model, selfref=selfref)
    try:
        signals = _signals(local_model)
        pregen = PregenProbe(**model_identity(local_model))
        hidden = needs_hidden(signals) or pregen.available  # the probes need the cached hidden states
        local, info = run_local(items, local_model, params, use_cache=use_cache, progress=progress,
                                need_hidden=hidden, need_selfref=selfref)
        # the report's confidence is the Router's default one; the Self-REF blend is listed among the signals
        confidence_name = _provider([s for s in signals if not isinstance(s, SelfRefBlend)])
        local = rescore(local, items, signals, confidence=confidence_name)
    finally:
        if owned:
            local_model.close()
    cloud_records = None
    if cloud_url:
        from ..cloud.openai_compat import OpenAICompatBackend

        backend = OpenAICompatBackend(cloud_url, cloud_model or "")
        try:
            cloud_records, _ = run_cloud(items, backend, params, identity=f"{cloud_url}|{cloud_model}",
                                         use_cache=use_cache, progress=progress)
        finally:
            backend.close()
        cloud = CloudAssumptions(cloud.accuracy, cloud.latency_ms, cloud.price_per_1k_tokens_usd, cloud.wait_joules,
                                 f"measured: {cloud_model or 'default model'} at {cloud_url}")
    report = build_report(items, local, cloud, cloud_records, confidence_signal=confidence_name)
    if pregen.available:
        report["pregen"] = pregen_stats(items, local, pregen, report["assumptions"]["accuracy"])
    report["calibrated"] = calibrated_stats(items, local, signals, info["model"])
    report["split"] = split if data is None else f"{split} of {data}"
    report["model"] = info["model"]
    report["params"] = info["params"]
    report["run"] = {"generated": info["generated"], "cached": info["cached"], "cache": info["cache"],
                     "elapsed_s": round(time.perf_counter() - t0, 2)}
    if out_dir is not None:
        import json

        from .plots import write_plots

        out_dir.mkdir(parents=True, exist_ok=True)
        title = f"edgeroute bench ({report['split']})"
        (out_dir / "report.md").write_text(markdown(report, title), encoding="utf-8")
        (out_dir / "report.json").write_text(json.dumps(public(report), indent=2), encoding="utf-8")
        report["plots"] = [str(p) for p in write_plots(report, out_dir, title)]
    return report


def pregen_stats(
    items: list[dict[str, Any]], local: list[dict[str, Any]], pregen: PregenProbe, cloud_accuracy: float = 1.0
) -> dict[str, Any]:
    """What the pre-generation probe would do on these items at its threshold: how many local generations it
    skips, the local time and energy that saves, how many of those the local model would have got right, and the
    change in accuracy if the skipped queries get the cloud's accuracy instead (vs local-only answering)."""
    scores, skipped_ms, skipped_j, correct_skipped, correct_total, n_skipped = [], 0.0, 0.0, 0, 0, 0
    for item, r in zip(items, local):
        h = decode_vector(r.get("prompt_hidden"))
        ok = grade(r["text"], item)
        correct_total += ok
        if h is None:
            continue
        score = pregen.score(h, [{"role": "user", "content": item["question"]}])
        scores.append(score)
        if score < pregen.threshold:
            n_skipped += 1
            skipped_ms += r["latency_ms"]
            skipped_j += r["joules"] or 0.0
            correct_skipped += ok
    n = max(len(items), 1)
    return {
        "threshold": pregen.threshold,
        "skip_rate": n_skipped / n,
        "local_ms_saved_per_query": skipped_ms / n,
        "local_joules_saved_per_query": skipped_j / n,
        "local_time_saved_share": skipped_ms / max(sum(r["latency_ms"] for r in local), 1e-9),
        "skipped_that_local_got_right": correct_skipped,
        "share_of_correct_local_answers_skipped": correct_skipped / max(correct_total, 1),
        "accuracy_change_vs_local_only": (n_skipped * cloud_accuracy - correct_skipped) / n,
    }


def calibrated_stats(items: list[dict[str, Any]], local: list[dict[str, Any]], signals: list[Any],
                     fingerprint: str) -> dict[str, dict[str, Any]]:
    """For each confidence among ``signals`` with a saved or shipped calibration for this model: its threshold and,
    on these items, the share sent to the cloud (confidence below the threshold or unknown) and the risk the
    calibration bounds (the share of all queries answered locally and wrong)."""
    out: dict[str, dict[str, Any]] = {}
    for s in signals:
        with warnings.catch_warnings():  # a look-up per signal: the others' calibrations are not news here
            warnings.simplefilter("ignore", RuntimeWarning)
            cal = load_calibration(fingerprint, s.confidence_id) if s.provides_confidence else None
        if cal is None:
            continue
        accepted = [r["signals"].get(s.provides_confidence, -1.0) >= cal.threshold for r in local]
        wrong = [a and not grade(r["text"], item) for a, r, item in zip(accepted, local, items)]
        n = max(len(items), 1)
        out[s.provides_confidence] = {"threshold": cal.threshold, "epsilon": cal.epsilon, "delta": cal.delta,
                                      "calibration": cal.describe(), "cloud_rate": 1 - sum(accepted) / n,
                                      "risk": sum(wrong) / n}
    return out


def covers(items: list[dict[str, Any]]) -> str:
    """What a calibration on ``items`` covers: how many answers, from which families and sources."""
    from collections import Counter

    fams = Counter(i["family"] for i in items)
    sources = sorted({i.get("source", i["family"]) for i in items})
    return (f"{len(items)} answers from {len(fams)} task families ({len(sources)} sources: {', '.join(sources)}), "
            "mixed in these proportions; the guarantee holds for traffic drawn from this mixture, not for other "
            "traffic: measure on your own (edgeroute calibrate --data)")


def calibrate(
    *,
    data: Optional[str] = None,
    model: Optional[str | LocalModel] = None,
    epsilon: float = 0.1,
    delta: float = 0.05,
    target_cloud_rate: Optional[float] = None,
    mode: str = "risk",
    params: RunParams = RunParams(),
    save: bool = True,
    out: Optional[str] = None,
    progress: Optional[TextIO] = sys.stderr,
    selfref: bool = False,
) -> tuple[Calibration, Optional[Path]]:
    """Calibrate the Router's threshold for ``model`` on the calibration split (or every item of ``data``) and
    save it where Router finds it. ``mode`` "risk" (default) bounds the share of all queries answered locally and
    wrong, "selective" the share of wrong answers among the accepted ones. Raises ``CalibrationError`` when
    epsilon cannot be certified. With ``selfref`` the confidence calibrated is the one a ``Router(selfref=True)``
    uses (the Self-REF blend). The file says which distribution the guarantee covers (``covers``)."""
    from dataclasses import replace

    items = load_items(data, "calibration" if data is None else None)
    local_model, owned = open_model(model, selfref=selfref)
    try:
        signals = _signals(local_model)
        records, _ = run_local(items, local_model, params, progress=progress, need_hidden=needs_hidden(signals),
                               need_selfref=selfref)
        records = rescore(records, items, signals)
        fingerprint, engine = local_model.fingerprint, local_model.golden()
    finally:
        if owned:
            local_model.close()
    conf = [r["confidence"] if r["confidence"] is not None else 0.0 for r in records]
    correct = [grade(r["text"], it) for it, r in zip(items, records)]
    if target_cloud_rate is not None:
        cal = calibrate_target_rate(conf, correct, target_cloud_rate)
    elif mode == "risk":
        cal = calibrate_guarantee(conf, correct, epsilon, delta)
    elif mode == "selective":
        cal = calibrate_selective(conf, correct, epsilon, delta)
    else:
        from .._errors import ConfigError

        raise ConfigError(f"unknown calibration mode {mode!r} (selective or risk)")
    source = confidence_signal(signals)
    assert source is not None
    cal = replace(cal, model=fingerprint, confidence_id=source.confidence_id,
                  source=data or "edgeroute's calibration split", covers=covers(items), engine=engine)
    path = save_calibration(cal, Path(out) if out else None) if save else None
    return cal, path
