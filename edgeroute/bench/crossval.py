"""Scoring estimators by transfer: leave-one-group-out cross-validation (LOFO, LOSO), selection of the best
candidate, and risk-coverage (the share answered locally at an accepted-error target, beside the oracle's).

The estimator itself (``Spec``, ``fit``) and the data are in ``transfer``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, TextIO

import numpy as np

from ..signals.probe import SCALAR_FEATURES
from .metrics import auroc
from .transfer import Dataset, Spec, fit, leave_one_group_out


# --- cross-validation --------------------------------------------------------------------------------------------
@dataclass
class CVResult:
    level: str  # "lofo" | "loso"
    oof: np.ndarray  # out-of-fold confidence per row
    per_group: dict[str, Optional[float]]
    mean: Optional[float]
    pooled: Optional[float]

    def summary(self) -> dict[str, Any]:
        return {"mean": self.mean, "pooled": self.pooled,
                "per_group": {g: (None if a is None else round(a, 4)) for g, a in self.per_group.items()}}


def summarize(level: str, scores: np.ndarray, y: np.ndarray, groups: np.ndarray) -> CVResult:
    per = {g: auroc(scores[groups == g], y[groups == g]) for g in sorted(set(groups.tolist()))}
    vals = [a for a in per.values() if a is not None]
    return CVResult(level, scores, per, float(np.mean(vals)) if vals else None, auroc(scores, y))


def cross_validate(spec: Spec, data: Dataset, level: str) -> CVResult:
    """Out-of-fold confidences of ``spec`` with one fold per family (``lofo``) or per source (``loso``)."""
    groups = data.family if level == "lofo" else data.source
    oof = np.zeros(len(data))
    for _, train, test in leave_one_group_out(groups):
        oof[test] = fit(spec, data, train).predict(data.subset(test))["combined"]
    return summarize(level, oof, data.y, groups)


def single_signal_cv(data: Dataset, level: str) -> dict[str, CVResult]:
    """Each scalar feature alone as a confidence, its sign chosen on the training side of each fold (a
    training-free signal still needs a direction)."""
    groups = data.family if level == "lofo" else data.source
    out = {}
    for j, name in enumerate(SCALAR_FEATURES):
        oof = np.zeros(len(data))
        for _, train, test in leave_one_group_out(groups):
            a = auroc(data.scalars[train, j], data.y[train])
            sign = -1.0 if a is not None and a < 0.5 else 1.0
            oof[test] = sign * data.scalars[test, j]
        out[name] = summarize(level, oof, data.y, groups)
    return out


def signal_sign(data: Dataset, name: str) -> float:
    """+1 when higher values of scalar ``name`` mean "more likely correct" on ``data``, else -1."""
    a = auroc(data.scalars[:, SCALAR_FEATURES.index(name)], data.y)
    return -1.0 if a is not None and a < 0.5 else 1.0


def select(candidates: Sequence[Spec], data: Dataset, *, progress: Optional[TextIO] = sys.stderr,
           level: str = "loso") -> tuple[Spec, list[dict[str, Any]]]:
    """The candidate with the best score on ``data`` by leave-one-source-out (``level="loso"``, the default) or
    leave-one-family-out (``"lofo"``): the average of the mean per-group AUROC (ranking within a group it never saw)
    and the pooled one (one threshold across all of them, as the Router uses it); ties go to the simpler candidate,
    listed first. Also every candidate's mean and pooled AUROC (keys ``<level>_mean``, ``<level>_pooled``)."""
    table = []
    for spec in candidates:
        r = cross_validate(spec, data, level)
        table.append({"spec": spec.to_dict(), "label": spec.label(), f"{level}_mean": r.mean,
                      f"{level}_pooled": r.pooled})
        if progress is not None:
            progress.write(f"  {level.upper()} mean {r.mean or 0:.4f} pooled {r.pooled or 0:.4f}  {spec.label()}\n")
            progress.flush()
    best = max(range(len(table)), key=lambda i: (selection_score(table[i], level), -i))
    return candidates[best], table


def selection_score(row: dict[str, Any], level: str = "loso") -> float:
    """What ``select`` maximises: (mean + pooled) / 2 at ``level``."""
    return ((row[f"{level}_mean"] or 0.0) + (row[f"{level}_pooled"] or 0.0)) / 2.0


# --- risk and coverage --------------------------------------------------------------------------------------------
def accepted_error(conf: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, Any]:
    """At ``threshold``: the share of queries answered locally (coverage) and the share of those that are wrong."""
    acc = conf >= threshold
    n_acc = int(acc.sum())
    return {"threshold": threshold, "coverage": n_acc / max(len(y), 1),
            "accepted_error": float(1.0 - y[acc].mean()) if n_acc else 0.0, "accepted": n_acc}


def coverage_at(conf: np.ndarray, y: np.ndarray, epsilon: float) -> float:
    """The largest share of queries a threshold on ``conf`` answers locally with accepted error <= ``epsilon``
    (accepting the highest scores first; ties accepted together)."""
    order = np.argsort(-conf, kind="mergesort")
    c, yy = conf[order], y[order]
    wrong = np.cumsum(1.0 - yy)
    n = np.arange(1, len(yy) + 1)
    last = np.r_[c[1:] != c[:-1], True]  # a threshold can only stop after a tie group
    ok = (wrong / n <= epsilon + 1e-12) & last
    return float(n[ok].max() / len(yy)) if ok.any() else 0.0


def oracle_coverage(y: np.ndarray, epsilon: float) -> float:
    """A perfect judge's coverage at accepted error <= ``epsilon``: every right answer plus as many wrong ones as
    the error budget allows."""
    n_right = float(y.sum())
    if len(y) == 0:
        return 0.0
    return min(1.0, n_right / (1.0 - epsilon) / len(y)) if epsilon < 1 else 1.0


def risk_coverage(conf: np.ndarray, y: np.ndarray, epsilon: float, *, best_single: Optional[np.ndarray] = None
                  ) -> dict[str, Any]:
    """Coverage at accepted error <= ``epsilon`` of the confidence, the oracle, always-local (1 when its error is
    within epsilon, else 0), always-cloud (0) and, given, the best training-free signal alone."""
    local_error = float(1.0 - y.mean()) if len(y) else 1.0
    out = {"epsilon": epsilon, "confidence": coverage_at(conf, y, epsilon), "oracle": oracle_coverage(y, epsilon),
           "always_local": 1.0 if local_error <= epsilon else 0.0, "always_cloud": 0.0}
    if best_single is not None:
        out["best_training_free"] = coverage_at(best_single, y, epsilon)
    return out
