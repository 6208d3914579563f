"""``edgeroute bench policy``'s inputs and run: the harness's cached answers as replayable queries, with the cloud
measured (a real endpoint, or the loopback stand-in), or stated as a profile; then the replay (``replay``) on the
stationary stream, the energy scope's effect, and four shifted streams."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, TextIO

from ..local.base import LocalModel
from ..policy.calibration import load_calibration
from ..signals import confidence_signal, default_signals
from ..signals.probe import PregenProbe, model_identity
from .api import needs_hidden, open_model
from .datasets import load_items
from .grading import grade
from .report import CloudAssumptions
from .runner import RunParams, cloud_cache, decode_vector, rescore, run_cloud, run_local
from .standin import STAND_IN_MODEL

if TYPE_CHECKING:
    from ..policy.reward import RewardWeights
    from .replay import Query


def policy_queries(
    *,
    split: str = "all",
    data: Optional[str] = None,
    model: Optional[str | LocalModel] = None,
    params: RunParams = RunParams(),
    cloud: CloudAssumptions = CloudAssumptions(),
    cloud_url: Optional[str] = None,
    cloud_model: Optional[str] = None,
    cloud_energy_class: Optional[str] = None,
    cloud_latency_sigma: Optional[float] = None,
    progress: Optional[TextIO] = sys.stderr,
) -> tuple[list["Query"], dict[str, Any]]:
    """The harness's cached results (generated where missing) as replayable queries, and what they rest on. With
    ``cloud_url`` every question is asked of that real endpoint once (cached): the cloud's quality is graded, its
    latency and tokens are recorded per query; ``"stand-in"`` starts the loopback ``llama_cpp.server`` stand-in
    (``bench.standin``) and measures that. Otherwise ``cloud`` is an assumption, labelled so: with
    ``cloud_latency_sigma`` a *profile* (each query's cloud answer right with probability ``cloud.accuracy``, its
    latency lognormal with median ``cloud.latency_ms``, both seeded by the item's id). The cloud's
    energy per query is the ``energy.cloud`` estimate from its tokens (``cloud_energy_class``, else guessed from
    the model's name)."""
    from .._constants import DEFAULT_CLOUD_MODEL
    from ..energy.cloud import cloud_rate
    from .replay import CloudCosts, Query

    items = load_items(data, split)
    local_model, owned = open_model(model)
    try:
        signals = default_signals(local_model)
        pregen = PregenProbe(**model_identity(local_model))
        records, info = run_local(items, local_model, params, progress=progress,
                                  need_hidden=needs_hidden(signals) or pregen.available)
        records = rescore(records, items, signals)
        fingerprint = local_model.fingerprint
    finally:
        if owned:
            local_model.close()
    cloud_quality: list[float] = [cloud.accuracy] * len(items)
    sizes = [(r.get("prompt_tokens", 0), r.get("completion_tokens", 0)) for r in records]  # the local answer's
    cloud_s: list[Optional[float]] = [None] * len(items)
    latency_ms = cloud.latency_ms
    if cloud_url == "stand-in":
        cloud_records, cloud_model = _stand_in_records(items, params, fingerprint, progress), STAND_IN_MODEL
    elif cloud_url:
        cloud_records = _cloud_records(items, params, cloud_url, cloud_model, f"{cloud_url}|{cloud_model}", progress)
    if cloud_url:
        cloud_quality = [float(not c.get("error") and grade(c["text"], it)) for it, c in zip(items, cloud_records)]
        sizes = [(c.get("prompt_tokens", 0), c.get("completion_tokens", 0)) for c in cloud_records]
        cloud_s = [c["latency_ms"] / 1000.0 for c in cloud_records]
        latency_ms = sum(c["latency_ms"] for c in cloud_records) / max(len(cloud_records), 1)
    elif cloud_latency_sigma is not None:
        cloud_quality, cloud_s = _profile(items, cloud, cloud_latency_sigma)
    rate = cloud_rate(cloud_model or DEFAULT_CLOUD_MODEL, cloud_energy_class)
    cloud_j = [float(rate.estimate(n_in, n_out).joules or 0.0) for n_in, n_out in sizes]
    queries = []
    for item, r, cq, (n_in, n_out), cj, cs in zip(items, records, cloud_quality, sizes, cloud_j, cloud_s):
        messages = [{"role": "user", "content": item["question"]}]
        sig = dict(r["signals"])
        hidden = decode_vector(r.get("prompt_hidden"))
        if pregen.available and hidden is not None:
            sig["pregen_confidence"] = pregen.score(hidden, messages)
        queries.append(Query(messages, sig, r["confidence"], float(grade(r["text"], item)), cq,
                             float(r["joules"] or 0.0), r["latency_ms"] / 1000.0, int(n_in + n_out), cj, cs))
    source = confidence_signal(signals)
    cal = load_calibration(fingerprint, source.confidence_id if source else "")
    basis = {
        "split": split if data is None else f"{split} of {data}",
        "items": len(items),
        "model": fingerprint,
        "cache": info["cache"],
        "cloud_source": (f"measured: {cloud_model or 'default model'} at {cloud_url}" if cloud_url
                         else f"profile (stated, not measured): accuracy {cloud.accuracy:g}, lognormal latency median "
                              f"{cloud.latency_ms:g} ms, sigma {cloud_latency_sigma:g}"
                         if cloud_latency_sigma is not None else "assumed"),
        "cloud": {"accuracy": sum(cloud_quality) / max(len(cloud_quality), 1), "latency_ms": latency_ms,
                  "latency_ms_percentiles": _percentiles([x * 1000.0 for x in cloud_s if x is not None]),
                  "wait_joules": cloud.wait_joules, "price_per_1k_tokens_usd": cloud.price_per_1k_tokens_usd},
        "cloud_energy": {"method": "estimated", "class": rate.name, "source": rate.source,
                         "j_per_query_mean": sum(cloud_j) / max(len(cloud_j), 1),
                         "tokens": "the cloud's own usage" if cloud_url else "the local answer's (assumed)"},
        "calibrated_threshold": cal.threshold if cal else None,
        "pregen_threshold": pregen.threshold if pregen.available else None,
        "_costs": CloudCosts(None if cloud_url or cloud_latency_sigma is not None else latency_ms / 1000.0, cloud.wait_joules,
                             cloud.price_per_1k_tokens_usd),
    }
    return queries, basis


def _cloud_records(items: list[dict[str, Any]], params: RunParams, url: str, model: Optional[str], identity: str,
                   progress: Optional[TextIO]) -> list[dict[str, Any]]:
    from ..cloud.openai_compat import OpenAICompatBackend

    backend = OpenAICompatBackend(url, model or "")
    try:
        return run_cloud(items, backend, params, identity=identity, progress=progress)[0]
    finally:
        backend.close()


def _stand_in_records(items: list[dict[str, Any]], params: RunParams, fingerprint: str,
                      progress: Optional[TextIO]) -> list[dict[str, Any]]:
    """Every item's answer from the loopback stand-in (started only when some are not cached yet)."""
    from ..local.resolve import default_model_path
    from .standin import StandInServer

    identity = f"stand-in|{default_model_path().name}|{fingerprint[:16]}"
    have = {k for k, v in cloud_cache(identity, params).load().items() if not v.get("error")}
    if all(i["id"] in have for i in items):  # all cached: no server to start (the backend is never called)
        return _cloud_records(items, params, "http://127.0.0.1:9/v1", STAND_IN_MODEL, identity, progress)
    with StandInServer() as server:
        return _cloud_records(items, params, server.base_url, STAND_IN_MODEL, identity, progress)


def _profile(items: list[dict[str, Any]], cloud: CloudAssumptions, sigma: float
             ) -> tuple[list[float], list[Optional[float]]]:
    """A stated cloud: per item, right with probability ``cloud.accuracy`` and a lognormal latency (s) with median
    ``cloud.latency_ms``, seeded by the item's id (the same item gets the same draw in every run)."""
    import zlib

    import numpy as np

    quality, latency = [], []
    for item in items:
        rng = np.random.default_rng(zlib.crc32(item["id"].encode("utf-8")))
        quality.append(float(rng.random() < cloud.accuracy))
        latency.append(float(cloud.latency_ms / 1000.0 * np.exp(sigma * rng.standard_normal())))
    return quality, latency


def _percentiles(values: list[float]) -> Optional[dict[str, float]]:
    """p10/p50/p90/p99 of recorded values (None when nothing was recorded)."""
    if not values:
        return None
    import numpy as np

    return {f"p{q}": float(np.percentile(values, q)) for q in (10, 50, 90, 99)}


def run_policy_bench(
    queries: list["Query"],
    basis: dict[str, Any],
    *,
    length: Optional[int] = None,
    weights: Optional["RewardWeights"] = None,
    guardrail: Optional[float] = None,
    warmup: int = 500,
    seed: int = 0,
    feedback_rate: float = 1.0,
    price_factor: float = 10.0,
    shift_preset: str = "battery-saver",
    accuracy_factor: float = 0.5,
    allow_below_threshold: bool = False,
    out_dir: Optional[Path] = None,
) -> dict[str, Any]:
    """Replay ``queries`` through LinUCB, the best fixed threshold, always-local, always-cloud and random; then four
    mid-stream changes: the cloud's price times ``price_factor``; the lambdas switched to ``shift_preset``; a cloud
    outage for a quarter of the stream; the cloud's accuracy times ``accuracy_factor``. ``allow_below_threshold``
    lets LinUCB accept answers below the calibrated threshold (it then keeps no guarantee)."""
    from dataclasses import replace

    from .._constants import DEFAULT_PRESET, DEFAULT_THRESHOLD
    from ..policy.reward import RewardWeights
    from .replay import adaptation, compare, describe, make_stream, scope_effect

    weights = weights or RewardWeights.preset(DEFAULT_PRESET)
    costs = basis["_costs"]
    guard = guardrail if guardrail is not None else (basis["calibrated_threshold"] or DEFAULT_THRESHOLD)
    n = length or max(len(queries), 2000)
    if not 0 <= warmup < n or not queries:
        from .._errors import ConfigError

        raise ConfigError(f"need queries to replay and 0 <= warmup < stream length (warmup {warmup}, length {n})")
    stream = make_stream(queries, n, seed)
    t0 = time.perf_counter()
    pre_t = basis["pregen_threshold"]
    opts = {"allow_below_threshold": True} if allow_below_threshold else {}
    result = compare(stream, lambda i: (weights, costs), guardrail=guard, warmup=warmup, seed=seed,
                     pregen_threshold=pre_t, feedback_rate=feedback_rate, **opts)
    pricier = replace(costs, price_per_1k_usd=costs.price_per_1k_usd * price_factor)
    shifts = {
        f"cloud_price_x{price_factor:g}": adaptation(stream, (weights, costs), (weights, pricier), guardrail=guard,
                                                     seed=seed, pregen_threshold=pre_t, **opts),
        f"lambdas_to_{shift_preset}": adaptation(stream, (weights, costs), (RewardWeights.preset(shift_preset), costs),
                                                 guardrail=guard, seed=seed, pregen_threshold=pre_t, **opts),
        "cloud_outage": adaptation(stream, (weights, costs), (weights, replace(costs, available=False)),
                                   guardrail=guard, seed=seed, pregen_threshold=pre_t, until=n // 2 + n // 4,
                                   **opts),
        f"cloud_accuracy_x{accuracy_factor:g}": adaptation(
            stream, (weights, costs), (weights, replace(costs, accuracy_scale=accuracy_factor)), guardrail=guard,
            seed=seed, pregen_threshold=pre_t, **opts),
    }
    scopes = scope_effect(stream, weights, costs, guardrail=guard, seed=seed, pregen_threshold=pre_t, **opts)
    report = {
        "basis": {k: v for k, v in basis.items() if not k.startswith("_")},
        "energy_scope": scopes,
        "queries": len(stream),
        "seed": seed,
        "guardrail_threshold": guard,
        "allow_below_threshold": allow_below_threshold,
        "feedback_rate": feedback_rate,
        "setting": describe(weights, costs),
        "policies": {k: v for k, v in result.items() if not k.startswith("_") and k != "after_warmup"},
        "after_warmup": result["after_warmup"],
        "adaptation": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in shifts.items()},
        "elapsed_s": round(time.perf_counter() - t0, 2),
        "_shifts": shifts,
    }
    if out_dir is not None:
        import json

        from .plots import write_policy_plot, write_policy_series_plot
        from .report import public

        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "policy.json").write_text(json.dumps(public(report), indent=2), encoding="utf-8")
        report["plots"] = [str(write_policy_plot(report, out_dir)), str(write_policy_series_plot(report, out_dir))]
    return report
