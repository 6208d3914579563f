"""``edgeroute bench value``: what edgeroute is worth on desktop traffic, per family and in total.

For each policy: the share answered locally, the error among those local answers, quality (share of all answers
right), p50 / p95 latency, device joules and cloud dollars, and ``retention``: the accepted-and-right local answers
as a share of those the oracle judge keeps (every right local answer). Policies:

- ``always-local``, ``always-cloud``, ``oracle`` (keeps a local answer exactly when it is right, else escalates);
- ``router-shipped``: the Router as installed (its confidence and the threshold calibrated on short-answer QA);
- ``router-desktop``: the same confidence, threshold certified (``calibrate_selective``, epsilon / delta) on the
  *other* families: leave-one-family-out, so each family is scored by a threshold that never saw it;
- ``router-longform``: a logistic confidence over the Router's signals plus the long-answer ones
  (``signals.longform``), fitted and certified on the other families (nested leave-one-family-out).

Every policy escalates a defective local answer (cut off, looping, not the JSON asked for) as the Router does. The
cloud is a stated profile unless measured: right with probability ``accuracy`` (seeded), lognormal latency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..._errors import CalibrationError
from ...policy.calibration import calibrate_selective
from ...signals.longform import format_valid, span_stats
from ...signals.query import last_user_text
from ...signals.repetition import ends_in_loop
from .graders import grade

POLICIES = ("always-local", "always-cloud", "oracle", "router-shipped", "router-desktop", "router-longform")


@dataclass(frozen=True)
class CloudProfile:
    """The cloud as stated: accuracy in [0, 1], median latency s and lognormal sigma, US$ per 1,000 tokens,
    device joules while waiting."""

    accuracy: float = 0.9
    latency_s: float = 1.2
    sigma: float = 0.5
    price_per_1k_usd: float = 0.0006
    wait_j: float = 0.05


@dataclass
class Row:
    """One task with everything the policies need."""

    task: dict[str, Any]
    correct: bool
    defect: bool
    confidence: float
    features: list[float]
    local_s: float
    local_j: float
    cloud_right: bool
    cloud_s: float
    cloud_usd: float


def _features(rec: dict[str, Any], task: dict[str, Any]) -> tuple[list[float], bool, Optional[float]]:
    lp = rec.get("token_logprobs") or []
    spans = span_stats(lp)
    valid = format_valid(rec["text"], last_user_text(task["messages"]))
    sig = rec.get("signals") or {}
    conf = rec.get("confidence") if rec.get("confidence") is not None else 0.0
    x = [1.0, conf, min(sig.get("mean_nll", 0.0) / 5.0, 2.0), max(spans.get("min_span_lp", 0.0) / 10.0, -2.0),
         spans.get("low_span_share", 0.0), 0.5 if valid is None else valid, math.log1p(len(lp)) / 6.0,
         sig.get("probe_confidence", conf)]
    defect = bool(rec.get("truncated")) or ends_in_loop(rec.get("token_ids") or []) or valid == 0.0
    return x, defect, valid


def rows_of(tasks: Sequence[dict[str, Any]], answers: dict[str, dict[str, Any]], cloud: CloudProfile,
            seed: int = 0) -> list[Row]:
    rng = np.random.default_rng(seed)
    out = []
    for task in tasks:
        rec = answers.get(task["id"])
        if rec is None:
            continue
        x, defect, _ = _features(rec, task)
        tokens = rec.get("tokens") or {}
        n_tokens = int(tokens.get("prompt", 0)) + max(int(tokens.get("completion", 0)), 16)
        out.append(Row(task, grade(task, rec["text"]), defect, x[1], x, rec["latency_ms"]["total"] / 1000.0,
                       float(rec.get("joules") or 0.0), bool(rng.random() < cloud.accuracy),
                       float(cloud.latency_s * math.exp(cloud.sigma * rng.standard_normal())),
                       cloud.price_per_1k_usd * n_tokens / 1000.0))
    return out


def _logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> np.ndarray:
    """L2-regularised logistic regression by Newton's method (the bias is not penalised)."""
    w = np.zeros(x.shape[1])
    penalty = l2 * np.eye(x.shape[1])
    penalty[0, 0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (p - y) + penalty @ w
        hess = (x * (p * (1 - p))[:, None]).T @ x + penalty + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def _threshold(scores: np.ndarray, correct: np.ndarray, epsilon: float, delta: float) -> tuple[float, str]:
    try:
        cal = calibrate_selective(scores.tolist(), correct.tolist(), epsilon, delta)
        return float(cal.threshold), f"certified on {len(scores)}: bound {cal.risk_upper_bound:.3f}"
    except CalibrationError as exc:
        return 1.01, f"nothing certified ({exc}); every answer escalates"


def _lofo_scores(rows: list[Row], train: list[int], test: list[int]) -> np.ndarray:
    x = np.asarray([rows[i].features for i in train])
    y = np.asarray([rows[i].correct and not rows[i].defect for i in train], dtype=float)
    w = _logistic(x, y)
    return 1.0 / (1.0 + np.exp(-np.asarray([rows[i].features for i in test]) @ w))


def decide(rows: list[Row], shipped_threshold: float, epsilon: float, delta: float
           ) -> tuple[dict[str, list[bool]], dict[str, Any]]:
    """policy -> per row, whether the local answer is kept (before defects); and how each threshold was chosen."""
    families = sorted({r.task["family"] for r in rows})
    keep: dict[str, list[bool]] = {p: [False] * len(rows) for p in POLICIES}
    notes: dict[str, Any] = {"router-desktop": {}, "router-longform": {}}
    for i, r in enumerate(rows):
        keep["always-local"][i] = True
        keep["oracle"][i] = r.correct
        keep["router-shipped"][i] = r.confidence >= shipped_threshold
    for fam in families:
        test = [i for i, r in enumerate(rows) if r.task["family"] == fam]
        train = [i for i, r in enumerate(rows) if r.task["family"] != fam]
        ok = np.asarray([rows[i].correct and not rows[i].defect for i in train])
        conf = np.asarray([rows[i].confidence for i in train])
        t, how = _threshold(conf, ok, epsilon, delta)
        notes["router-desktop"][fam] = {"threshold": t, "how": how}
        for i in test:
            keep["router-desktop"][i] = rows[i].confidence >= t
        # nested: out-of-fold scores on the training families choose the threshold, then one fit on all of them
        oof = np.zeros(len(train))
        train_fams = sorted({rows[i].task["family"] for i in train})
        for inner in train_fams:
            a = [k for k, i in enumerate(train) if rows[i].task["family"] == inner]
            b = [k for k, i in enumerate(train) if rows[i].task["family"] != inner]
            oof[a] = _lofo_scores(rows, [train[k] for k in b], [train[k] for k in a])
        t2, how2 = _threshold(oof, ok, epsilon, delta)
        scores = _lofo_scores(rows, train, test)
        notes["router-longform"][fam] = {"threshold": t2, "how": how2}
        for i, s in zip(test, scores):
            keep["router-longform"][i] = bool(s >= t2)
    return keep, notes


def _summary(rows: list[Row], kept: list[bool], policy: str, cloud: CloudProfile) -> dict[str, Any]:
    lat, joules, usd, right, local, local_wrong = [], [], [], [], 0, 0
    oracle = sum(r.correct for r in rows)
    kept_right = 0
    for r, k in zip(rows, kept):
        if policy == "always-cloud":
            lat.append(r.cloud_s), joules.append(cloud.wait_j), usd.append(r.cloud_usd), right.append(r.cloud_right)
            continue
        if k and (policy in ("always-local", "oracle") or not r.defect):
            local += 1
            local_wrong += not r.correct
            kept_right += r.correct
            lat.append(r.local_s), joules.append(r.local_j), usd.append(0.0), right.append(r.correct)
        else:
            lat.append(r.local_s + r.cloud_s), joules.append(r.local_j + cloud.wait_j), usd.append(r.cloud_usd)
            right.append(r.cloud_right)
    n = len(rows)
    return {"n": n, "local_share": local / n if n else None,
            "accepted_error": local_wrong / local if local else None,
            "quality": float(np.mean(right)) if n else None,
            "latency_ms_p50": float(np.percentile(lat, 50) * 1000) if n else None,
            "latency_ms_p95": float(np.percentile(lat, 95) * 1000) if n else None,
            "device_j_per_query": float(np.mean(joules)) if n else None,
            "cloud_usd_per_1k_queries": float(np.sum(usd) / n * 1000) if n else None,
            "retention": kept_right / oracle if oracle else None}


def value_table(rows: list[Row], shipped_threshold: float, *, epsilon: float = 0.10, delta: float = 0.05,
                cloud: CloudProfile = CloudProfile()) -> dict[str, Any]:
    """Per policy, per family and ``all``: the summary above; plus how each threshold was chosen."""
    keep, notes = decide(rows, shipped_threshold, epsilon, delta)
    families = sorted({r.task["family"] for r in rows})
    table: dict[str, dict[str, Any]] = {}
    for policy in POLICIES:
        table[policy] = {"all": _summary(rows, keep[policy], policy, cloud)}
        for fam in families:
            idx = [i for i, r in enumerate(rows) if r.task["family"] == fam]
            table[policy][fam] = _summary([rows[i] for i in idx], [keep[policy][i] for i in idx], policy, cloud)
    return {"epsilon": epsilon, "delta": delta, "shipped_threshold": shipped_threshold, "families": families,
            "n": len(rows), "table": table, "thresholds": notes,
            "cloud": {"profile": "stated, not measured", **cloud.__dict__},
            "local_accuracy": {f: table["always-local"][f]["quality"] for f in families}}
