"""Metrics of an escalation score against "local answer correct" (pure numpy; units: fractions in [0, 1]).

- ``auroc``: probability that a random correct answer scores above a random wrong one (ties count one half).
- ``auprc``: average precision of the score for the "correct" class.
- ``ece``: expected calibration error of a probability, equal-width bins.
- ``deferral_curve``: accuracy of the routed system vs the fraction of queries sent to the cloud, deferring the
  lowest scores first; ties are split evenly (the curve is linear across a tie group: the expectation under random
  tie-breaking). ``oracle_curve`` defers exactly the wrong answers first; ``random_curve`` is the straight line.
- ``apgr``: average performance-gap recovered, (AUC_router - acc_local) / (acc_cloud - acc_local).
- ``cpt``: the cloud fraction at which accuracy first reaches acc_local + x (acc_cloud - acc_local), interpolated.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from numpy.typing import ArrayLike

from .._arrays import paired

Curve = tuple[np.ndarray, np.ndarray]  # (fraction sent to the cloud, accuracy), both ascending in fraction


def _arrays(scores: ArrayLike, correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    return paired(scores, correct)


def _average_ranks(s: np.ndarray) -> np.ndarray:
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def auroc(scores: ArrayLike, correct: ArrayLike) -> Optional[float]:
    """Mann-Whitney AUROC with ties; None when one class is absent."""
    s, y = _arrays(scores, correct)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auprc(scores: ArrayLike, correct: ArrayLike) -> Optional[float]:
    """Average precision (step-wise, thresholds at distinct scores); None without positives."""
    s, y = _arrays(scores, correct)
    if not y.any():
        return None
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    last_of_group = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp_g = tp[last_of_group]
    n_g = np.nonzero(last_of_group)[0] + 1
    precision = tp_g / n_g
    recall = tp_g / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def ece(probs: ArrayLike, correct: ArrayLike, bins: int = 10) -> Optional[float]:
    """Expected calibration error with ``bins`` equal-width bins over [0, 1]; None if a value is outside [0, 1]."""
    p, y = _arrays(probs, correct)
    if len(p) == 0 or p.min() < 0.0 or p.max() > 1.0:
        return None
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += mask.sum() / len(p) * abs(y[mask].mean() - p[mask].mean())
    return float(total)


def deferral_curve(scores: ArrayLike, correct: ArrayLike, cloud_accuracy: ArrayLike = 1.0) -> Curve:
    """Points (fraction deferred, accuracy) at every tie-group boundary, lowest scores deferred first.

    ``cloud_accuracy`` is one number (assumed) or, per item, whether the cloud answered it right (measured)."""
    s, y = _arrays(scores, correct)
    n = len(s)
    order = np.argsort(s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order].astype(np.float64)
    cloud = np.asarray(cloud_accuracy, dtype=np.float64)
    cloud_sorted = cloud[order] if cloud.ndim else cloud
    gain = cloud_sorted - y_sorted  # change in correct answers when that item goes to the cloud
    boundaries = np.r_[0, np.nonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])[0] + 1]
    cum = np.r_[0.0, np.cumsum(gain)]
    frac = boundaries / n
    acc = (y.sum() + cum[boundaries]) / n
    return frac, acc


def oracle_curve(correct: ArrayLike, cloud_accuracy: ArrayLike = 1.0) -> Curve:
    y = np.asarray(correct, dtype=bool)
    return deferral_curve(y.astype(np.float64), y, cloud_accuracy) if len(y) else (np.zeros(1), np.zeros(1))


def random_curve(correct: ArrayLike, cloud_accuracy: float = 1.0) -> Curve:
    acc_local = float(np.mean(np.asarray(correct, dtype=np.float64)))
    return np.array([0.0, 1.0]), np.array([acc_local, cloud_accuracy])


def area(curve: Curve) -> float:
    frac, acc = curve
    return float(np.sum((frac[1:] - frac[:-1]) * (acc[1:] + acc[:-1]) / 2.0))


def apgr(curve: Curve, correct: ArrayLike, cloud_accuracy: float = 1.0) -> Optional[float]:
    """(AUC_router - acc_local) / (acc_cloud - acc_local); None when the cloud is no better than local."""
    acc_local = float(np.mean(np.asarray(correct, dtype=np.float64)))
    gap = cloud_accuracy - acc_local
    if gap <= 0:
        return None
    return (area(curve) - acc_local) / gap


def accuracy_at(curve: Curve, fraction: float) -> float:
    frac, acc = curve
    return float(np.interp(fraction, frac, acc))


def cpt(curve: Curve, correct: ArrayLike, x: float, cloud_accuracy: float = 1.0) -> Optional[float]:
    """Smallest cloud fraction whose accuracy reaches acc_local + x (acc_cloud - acc_local), interpolated linearly
    between curve points; None when the curve never gets there (or the cloud is no better)."""
    acc_local = float(np.mean(np.asarray(correct, dtype=np.float64)))
    if cloud_accuracy <= acc_local:
        return None
    target = acc_local + x * (cloud_accuracy - acc_local)
    frac, acc = curve
    for i in range(len(frac)):
        if acc[i] >= target - 1e-12:
            if i == 0:
                return float(frac[0])
            f0, f1, a0, a1 = frac[i - 1], frac[i], acc[i - 1], acc[i]
            return float(f0 + (target - a0) / (a1 - a0) * (f1 - f0)) if a1 != a0 else float(f1)
    return None


def round4(value: Optional[float]) -> Optional[float]:
    """A figure for a report: four decimals (None stays None)."""
    return None if value is None else round(float(value), 4)


#: Bootstrap resamples behind ``mean_interval`` and ``auroc_interval``.
BOOTSTRAP = 1000


def mean_interval(values: list[float], seed: int = 0) -> Optional[list[float]]:
    """A 95 % bootstrap interval of the mean of ``values`` (e.g. per-family AUROCs), or None for fewer than two."""
    if len(values) < 2:
        return None
    rng = np.random.default_rng(seed)
    v = np.asarray(values)
    means = [float(rng.choice(v, len(v)).mean()) for _ in range(BOOTSTRAP)]
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def auroc_interval(scores: np.ndarray, y: np.ndarray, seed: int = 0) -> Optional[list[float]]:
    """A 95 % bootstrap interval (over items) of the AUROC, or None when most resamples have one class only."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(BOOTSTRAP):
        idx = rng.integers(0, len(y), len(y))
        a = auroc(scores[idx], y[idx])
        if a is not None:
            vals.append(a)
    if len(vals) < BOOTSTRAP // 2:
        return None
    return [round(float(np.percentile(vals, 2.5)), 4), round(float(np.percentile(vals, 97.5)), 4)]
