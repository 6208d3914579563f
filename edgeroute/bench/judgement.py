"""What ``edgeroute bench transfer`` does: how well the Router's judgement holds on task families and sources it
was not trained on, and what it is worth (risk and coverage), side by side with the training-free signals.

- **LOFO / LOSO** (train split): the shipped estimator's specification (read from the probe file) is refitted with
  one family, or one whole source, left out, and scored on it; per family, per source, mean and pooled.
- **Splits**: the shipped confidence itself (the Router's, through its real ONNX probe) on ``test`` (in-family),
  ``calibration`` and ``heldout-families`` (whole families never trained, selected or calibrated on): AUROC, and at
  the shipped threshold the coverage and the error among accepted answers.
- **Risk-coverage**: the share of queries answered locally at accepted error <= epsilon, for the confidence, the
  perfect judge (oracle), always-local, always-cloud and the best training-free signal alone (chosen by LOSO on
  train, its direction too).
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any, Optional, TextIO

import numpy as np

from ..local.base import LocalModel
from ..policy.calibration import load_calibration
from ..signals import confidence_signal
from ..signals.probe import SCALAR_FEATURES, ProbeSignal, model_identity
from .datasets import load_items
from .metrics import auroc, round4
from .runner import RunParams, rescore, run_local
from .crossval import accepted_error, cross_validate, risk_coverage, signal_sign, single_signal_cv
from .transfer import Dataset, Spec, build_dataset

SPLIT_ORDER = ("test", "calibration", "heldout-families")


def shipped_spec(probe: ProbeSignal) -> Optional[Spec]:
    """The estimator specification recorded in a probe file's metadata (None for a file without one)."""
    try:
        d = json.loads(probe.meta.get("model_type", ""))
    except json.JSONDecodeError:
        return None
    if d.pop("type", None) != "transfer-logistic":
        return None
    return Spec.from_dict(d)


def _groups(scores: np.ndarray, data: Dataset, by: str) -> dict[str, Optional[float]]:
    groups = data.family if by == "family" else data.source
    return {g: round4(auroc(scores[groups == g], data.y[groups == g])) for g in sorted(set(groups.tolist()))}


def transfer_report(
    *,
    data: Optional[str] = None,
    model: Optional[str | LocalModel] = None,
    params: RunParams = RunParams(),
    epsilon: float = 0.1,
    progress: Optional[TextIO] = sys.stderr,
) -> dict[str, Any]:
    """The transfer report (see the module docstring); answers come from the harness cache (generated where
    missing)."""
    from .api import _signals, open_model

    items = load_items(data)
    engine, owned = open_model(model, selfref=False)
    try:
        signals = _signals(engine)
        records, info = run_local(items, engine, params, progress=progress, need_hidden=True)
        records = rescore(records, items, signals)
        fingerprint = engine.fingerprint
        probe = ProbeSignal(**model_identity(engine))
    finally:
        if owned:
            engine.close()
    source = confidence_signal([s for s in signals if s.name != "selfref_blend"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cal = load_calibration(fingerprint, source.confidence_id if source else "")
    conf_by_id = {i["id"]: r["confidence"] for i, r in zip(items, records)}
    ds = build_dataset(items, records)
    conf = np.array([conf_by_id[i] if conf_by_id[i] is not None else 0.0 for i in ds.ids])
    pool_mask = ds.split == "train"
    pool = ds.subset(pool_mask)
    spec = shipped_spec(probe) if probe.available else None
    report: dict[str, Any] = {"model": fingerprint, "items": len(items), "rows": len(ds), "cache": info["cache"],
                              "confidence": source.provides_confidence if source else None,
                              "spec": spec.to_dict() if spec else None, "epsilon": epsilon,
                              "threshold": cal.threshold if cal else None,
                              "calibration": cal.describe() if cal else None,
                              "covers": cal.covers if cal else None}
    singles = single_signal_cv(pool, "loso")
    best_single = max(singles, key=lambda k: singles[k].mean or 0.0)
    sign = signal_sign(pool, best_single)
    single_scores = sign * ds.scalars[:, SCALAR_FEATURES.index(best_single)]
    report["best_training_free"] = {"name": best_single, "direction": "higher is more confident" if sign > 0
                                    else "lower is more confident", "loso": singles[best_single].summary()}
    if spec is not None:
        lofo, loso = cross_validate(spec, pool, "lofo"), cross_validate(spec, pool, "loso")
        report["lofo"], report["loso"] = lofo.summary(), loso.summary()
        report["best_training_free"]["lofo"] = single_signal_cv(pool, "lofo")[best_single].summary()
    splits: dict[str, Any] = {}
    for split in SPLIT_ORDER:
        m = ds.split == split
        if not m.any():
            continue
        y, c, s = ds.y[m], conf[m], single_scores[m]
        part = ds.subset(m)
        entry: dict[str, Any] = {"n": int(m.sum()), "local_accuracy": round4(y.mean()),
                                 "confidence_auroc": round4(auroc(c, y)),
                                 "best_training_free_auroc": round4(auroc(s, y)),
                                 "risk_coverage": {k: round4(v) if isinstance(v, float) else v
                                                   for k, v in risk_coverage(c, y, epsilon, best_single=s).items()}}
        if cal is not None:
            at = accepted_error(c, y, cal.threshold)
            oracle_at = risk_coverage(c, y, max(at["accepted_error"], 1e-9))["oracle"]
            entry["at_threshold"] = {**{k: round4(v) if isinstance(v, float) else v for k, v in at.items()},
                                     "oracle_coverage_at_that_error": round4(oracle_at),
                                     "share_of_oracle": round4(at["coverage"] / oracle_at) if oracle_at else None}
        if split == "heldout-families":
            entry["per_family"] = _groups(c, part, "family")
            entry["per_source"] = _groups(c, part, "source")
            entry["per_family_best_training_free"] = _groups(s, part, "family")
        splits[split] = entry
    report["splits"] = splits
    return report


def _f(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """The transfer report as Markdown tables ("-" where a figure is undefined, e.g. AUROC with one class)."""
    out = [f"# edgeroute bench transfer ({report['rows']} answers; confidence `{report['confidence']}`)", ""]
    bt = report["best_training_free"]
    if report.get("loso"):
        out += ["| estimate (train split, refitted per fold) | LOSO mean | LOSO pooled | LOFO mean | LOFO pooled |",
                "|---|---|---|---|---|",
                f"| the confidence | {_f(report['loso']['mean'])} | {_f(report['loso']['pooled'])} | "
                f"{_f(report['lofo']['mean'])} | {_f(report['lofo']['pooled'])} |",
                f"| best training-free signal (`{bt['name']}`) | {_f(bt['loso']['mean'])} | {_f(bt['loso']['pooled'])} | "
                f"{_f(bt['lofo']['mean'])} | {_f(bt['lofo']['pooled'])} |", ""]
    eps = report["epsilon"]
    out += [f"| split | n | local accuracy | AUROC | best training-free AUROC | threshold {report['threshold']}: "
            f"coverage / accepted error / share of oracle | coverage at error <= {eps:g}: confidence / oracle / "
            "best training-free / always-local |", "|---|---|---|---|---|---|---|"]
    for split, e in report["splits"].items():
        at = e.get("at_threshold") or {}
        rc = e["risk_coverage"]
        out.append(f"| {split} | {e['n']} | {_f(e['local_accuracy'])} | {_f(e['confidence_auroc'])} | "
                   f"{_f(e['best_training_free_auroc'])} | {_f(at.get('coverage'))} / {_f(at.get('accepted_error'))}"
                   f" / {_f(at.get('share_of_oracle'), 2)} | {_f(rc['confidence'])} / {_f(rc['oracle'])} / "
                   f"{_f(rc.get('best_training_free'))} / {_f(rc['always_local'], 0)} |")
    if report.get("loso"):
        out += ["", "| source (LOSO) | AUROC |", "|---|---|"]
        out += [f"| {g} | {a if a is not None else '-'} |" for g, a in report["loso"]["per_group"].items()]
        out += ["", "| family (LOFO) | AUROC |", "|---|---|"]
        out += [f"| {g} | {a if a is not None else '-'} |" for g, a in report["lofo"]["per_group"].items()]
    held = report["splits"].get("heldout-families")
    if held:
        out += ["", "| held-out family | confidence AUROC | best training-free AUROC |", "|---|---|---|"]
        out += [f"| {g} | {a if a is not None else '-'} | {held['per_family_best_training_free'].get(g) or '-'} |"
                for g, a in held["per_family"].items()]
    return "\n".join(out) + "\n"
