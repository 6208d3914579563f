"""Turning graded runs into the benchmark report: metrics per signal, deferral curves, energy and latency along them.

The cloud side is either measured (a real run, graded like the local one) or a stated assumption; either way it is
in ``assumptions`` at the top of the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence

import numpy as np

from . import metrics as M
from .grading import grade

#: Signals where a higher value means "less likely correct": negated before AUROC / AUPRC.
RISK_SIGNALS = frozenset({"mean_nll", "max_nll", "mean_entropy", "log_answer_tokens", "answer_tokens", "sum_nll",
                          "max_entropy", "first_entropy", "span_mean_nll", "span_sum_nll", "span_mean_entropy",
                          "span_log_tokens", "loop_frac", "cut_by_length", "span_empty"})
#: Signals that are flags, not scores.
SKIP_SIGNALS = frozenset({"perplexity_calibrated", "pregen_confidence", "probe_novelty"})
CONFIDENCE_SIGNAL = "perplexity_confidence"
CPT_LEVELS = (0.5, 0.8, 0.95)


@dataclass(frozen=True)
class CloudAssumptions:
    """What the report assumes of the cloud when it is not measured. Accuracy in [0, 1], latency in ms, price in
    US dollars per 1,000 tokens (prompt + completion), device-side joules per cloud call (waiting)."""

    accuracy: float = 1.0
    latency_ms: float = 1500.0
    price_per_1k_tokens_usd: float = 0.0006
    wait_joules: float = 0.05
    source: str = "assumed"


def _oriented(name: str, values: np.ndarray) -> np.ndarray:
    return -values if name in RISK_SIGNALS else values


def build_report(
    items: Sequence[dict[str, Any]],
    local: Sequence[dict[str, Any]],
    cloud: CloudAssumptions = CloudAssumptions(),
    cloud_records: Optional[Sequence[dict[str, Any]]] = None,
    *,
    confidence_signal: str = CONFIDENCE_SIGNAL,
) -> dict[str, Any]:
    """The report for ``items`` given their local records (same order) and the cloud (assumed or measured)."""
    n = len(items)
    correct = np.array([grade(r["text"], it) for it, r in zip(items, local)], dtype=bool)
    if cloud_records is not None:
        cloud_ok = np.array([not r.get("error") and grade(r["text"], it) for it, r in zip(items, cloud_records)],
                            dtype=np.float64)
        cloud_lat = float(np.mean([r["latency_ms"] for r in cloud_records]))
        cloud = CloudAssumptions(float(cloud_ok.mean()), cloud_lat, cloud.price_per_1k_tokens_usd, cloud.wait_joules,
                                 cloud.source)
        cloud_target: Any = cloud_ok
    else:
        cloud_target = cloud.accuracy
    acc_cloud = cloud.accuracy
    conf = np.array([r["confidence"] if r["confidence"] is not None else 0.0 for r in local], dtype=np.float64)

    signals: dict[str, dict[str, Optional[float]]] = {}
    names = sorted({k for r in local for k in r["signals"]} - SKIP_SIGNALS)
    names = [n for n in names if not n.startswith("q_")]  # query features describe the question, not the answer
    for name in names:
        present = np.array([name in r["signals"] for r in local])
        if present.sum() < 2:
            continue
        v = np.array([r["signals"].get(name, 0.0) for r in local], dtype=np.float64)[present]
        y = correct[present]
        scores = _oriented(name, v)
        probability = name.endswith("confidence") or name == "selfref"
        signals[name] = {
            "auroc": M.auroc(scores, y),
            "auprc": M.auprc(scores, y),
            "ece": M.ece(v, y) if probability else None,
            "n": int(present.sum()),
        }

    curve = M.deferral_curve(conf, correct, cloud_target)
    oracle = M.oracle_curve(correct, cloud_target) if cloud_records is None else M.deferral_curve(
        correct.astype(np.float64) - np.asarray(cloud_target), correct, cloud_target)
    local_j = np.array([r["joules"] or 0.0 for r in local])
    local_ms = np.array([r["latency_ms"] for r in local])
    tokens = np.array([r.get("prompt_tokens", 0) + r.get("completion_tokens", 0) for r in local], dtype=np.float64)
    order = np.argsort(conf, kind="mergesort")
    along = []
    for f in np.linspace(0.0, 1.0, 11):
        k = int(round(f * n))
        deferred = order[:k]
        along.append({
            "cloud_fraction": round(float(f), 2),
            "accuracy": M.accuracy_at(curve, f),
            "threshold": float(conf[order[k]]) if k < n else None,
            "joules": float(local_j.sum() + k * cloud.wait_joules),
            "joules_per_query": float((local_j.sum() + k * cloud.wait_joules) / max(n, 1)),
            "latency_ms_per_query": float(local_ms.mean() + f * cloud.latency_ms) if n else 0.0,
            "cloud_calls": k,
            "cloud_cost_usd": float(tokens[deferred].sum() / 1000.0 * cloud.price_per_1k_tokens_usd),
        })
    methods = sorted({r["energy_method"] for r in local})
    families = sorted({it["family"] for it in items})
    per_family = {}
    for fam in families:
        mask = np.array([it["family"] == fam for it in items])
        per_family[fam] = {"n": int(mask.sum()), "local_accuracy": float(correct[mask].mean()),
                           "confidence_auroc": M.auroc(conf[mask], correct[mask])}
    return {
        "n": n,
        "local_accuracy": float(correct.mean()) if n else 0.0,
        "assumptions": asdict(cloud),
        "signals": signals,
        "confidence_signal": confidence_signal,
        "confidence_auroc": M.auroc(conf, correct),
        "confidence_auprc": M.auprc(conf, correct),
        "confidence_ece": M.ece(conf, correct),
        "apgr": M.apgr(curve, correct, acc_cloud),
        "cpt": {str(int(x * 100)): M.cpt(curve, correct, x, acc_cloud) for x in CPT_LEVELS},
        "oracle_apgr": M.apgr(oracle, correct, acc_cloud),
        "oracle_cpt": {str(int(x * 100)): M.cpt(oracle, correct, x, acc_cloud) for x in CPT_LEVELS},
        "random_apgr": 0.5,
        "curve": along,
        "energy": {
            "local_joules_total": float(local_j.sum()),
            "local_joules_per_query": float(local_j.mean()) if n else 0.0,
            "local_joules_per_token": float(local_j.sum() / max(sum(r["completion_tokens"] for r in local), 1)),
            "method": "+".join(methods),
        },
        "latency_ms": {"local_mean": float(local_ms.mean()) if n else 0.0,
                       "local_p95": float(np.percentile(local_ms, 95)) if n else 0.0},
        "per_family": per_family,
        "_curves": {"router": curve, "oracle": oracle, "random": M.random_curve(correct, acc_cloud),
                    "signals": {name: M.deferral_curve(_oriented(name, np.array([r["signals"].get(name, 0.0)
                                                                                    for r in local])),
                                                       correct, cloud_target) for name in signals}},
        "_correct": correct,
        "_confidence": conf,
    }


def public(report: dict[str, Any]) -> dict[str, Any]:
    """The report without its private arrays (what ``--json`` prints)."""
    return {k: v for k, v in report.items() if not k.startswith("_")}


def _fmt(x: Optional[float], digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def markdown(report: dict[str, Any], title: str) -> str:
    """A readable report: assumptions first, then the summary, signals, the curve and families."""
    a = report["assumptions"]
    lines = [
        f"# {title}", "",
        f"Cloud ({a['source']}): accuracy {a['accuracy']:.3f}, latency {a['latency_ms']:.0f} ms, "
        f"${a['price_per_1k_tokens_usd']:g} per 1k tokens, {a['wait_joules']:g} J on the device per call.", "",
        f"- items: {report['n']}; local accuracy {report['local_accuracy']:.3f}",
        f"- confidence ({report['confidence_signal']}): AUROC {_fmt(report['confidence_auroc'])}, "
        f"AUPRC {_fmt(report['confidence_auprc'])}, ECE {_fmt(report['confidence_ece'])}",
        f"- APGR {_fmt(report['apgr'])} (oracle {_fmt(report['oracle_apgr'])}, random 0.500)",
        "- CPT(50/80/95%): " + ", ".join(_fmt(report["cpt"][k], 2) for k in ("50", "80", "95"))
        + " (oracle " + ", ".join(_fmt(report["oracle_cpt"][k], 2) for k in ("50", "80", "95")) + ")",
        f"- local energy: {report['energy']['local_joules_per_query']:.3f} J per query, "
        f"{report['energy']['local_joules_per_token']:.3f} J per token ({report['energy']['method']})", "",
        "| signal | AUROC | AUPRC | ECE |", "|---|---|---|---|",
    ]
    for name, m in report["signals"].items():
        lines.append(f"| {name} | {_fmt(m['auroc'])} | {_fmt(m['auprc'])} | {_fmt(m['ece'])} |")
    lines += ["", "| cloud fraction | accuracy | threshold | J/query | ms/query | cloud $ |", "|---|---|---|---|---|---|"]
    for p in report["curve"]:
        lines.append(f"| {p['cloud_fraction']:.1f} | {p['accuracy']:.3f} | {_fmt(p['threshold'], 2)} | "
                     f"{p['joules_per_query']:.3f} | {p['latency_ms_per_query']:.0f} | {p['cloud_cost_usd']:.4f} |")
    if report.get("pregen"):
        g = report["pregen"]
        lines += ["", f"Pre-generation probe (threshold {g['threshold']:.3f}): skips {g['skip_rate']:.1%} of local "
                  f"generations, saving {g['local_time_saved_share']:.1%} of local time "
                  f"({g['local_joules_saved_per_query']:.3f} J per query); {g['share_of_correct_local_answers_skipped']:.1%} "
                  "of the answers the local model got right go to the cloud instead."]
    for name, c in report.get("calibrated", {}).items():
        lines += ["", f"At the calibrated threshold of {name}, {c['threshold']:.2f} ({c['calibration']}): risk "
                  f"{c['risk']:.3f} (answered locally and wrong), {c['cloud_rate']:.1%} to the cloud."]
    lines += ["", "| family | n | local accuracy | confidence AUROC |", "|---|---|---|---|"]
    for fam, f in report["per_family"].items():
        lines.append(f"| {fam} | {f['n']} | {f['local_accuracy']:.3f} | {_fmt(f['confidence_auroc'])} |")
    return "\n".join(lines) + "\n"
