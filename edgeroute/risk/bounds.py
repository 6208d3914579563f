"""Anytime-valid confidence sequences for a bounded mean, by betting (Waudby-Smith & Ramdas, JRSS-B 2024).

Samples arrive one at a time: ``x`` in ``[0, b]`` with ``b`` known before ``x`` is seen (``b = 1 / p`` for an
inverse-probability-weighted label drawn with probability ``p``). For each candidate mean ``m`` on a grid two
capital processes are kept::

    K+_n(m) = prod (1 + l_i (m - x_i))      l_i in [0, c / (b_i - m)]   (grows when the mean is below m)
    K-_n(m) = prod (1 + l_i (x_i - m))      l_i in [0, c / m]           (grows when the mean is above m)

with bets ``l_i`` chosen from the samples before ``i`` only (the paper's aGRAPA: ``(mean - m) / (var + (mean -
m)^2)`` from the running mean and variance, clipped, which grows the capital near the optimal rate when ``m`` is
wrong, so a broken promise is detected in as few samples as the data allow). If every
sample's conditional mean is ``m``, each is a nonnegative martingale with mean 1, so by Ville's inequality
``P(sup_n K_n(m) >= 1/alpha) <= alpha``: the set of ``m`` never rejected is a confidence sequence, valid at every
``n`` at once, so it can be read after every answer, at any data-dependent time, and stopped whenever
(optional stopping). The upper bound is the smallest rejected ``m`` of ``K+``; the lower bound the largest
rejected ``m`` of ``K-``. ``Sequences`` keeps one pair per row (e.g. per threshold), updated together.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

#: Candidate means, [0, 1] in steps of 0.005 (the bounds are reported to this resolution, rounded outwards).
MEAN_GRID = np.round(np.linspace(0.0, 1.0, 201), 3)
#: Largest share of the remaining room a bet may take (the paper's c = 1/2).
BET_CAP = 0.5


class Sequences:
    """``rows`` independent confidence sequences at level ``alpha`` each (upper and lower, each one-sided)."""

    def __init__(self, rows: int, alpha: float) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.alpha = alpha
        self._log_level = math.log(1.0 / alpha)
        m = MEAN_GRID[None, :]
        self._m = m
        self.n = np.zeros(rows, dtype=np.int64)
        self.total = np.zeros(rows)
        self._sq = np.zeros(rows)  # sum of (x - running mean)^2, for the plug-in variance
        self._up = np.zeros((rows, m.shape[1]))
        self._lo = np.zeros((rows, m.shape[1]))
        self._up_rejected = np.zeros((rows, m.shape[1]), dtype=bool)
        self._lo_rejected = np.zeros((rows, m.shape[1]), dtype=bool)

    def add(self, x: float, b: float, rows: np.ndarray) -> None:
        """One sample ``x`` in ``[0, b]`` for the rows where ``rows`` (a bool mask) is True."""
        if not 0.0 <= x <= b or b < 1.0:
            raise ValueError(f"sample {x!r} is not in [0, {b!r}] (b >= 1)")
        idx = np.flatnonzero(rows)
        if idx.size == 0:
            return
        n = self.n[idx]
        mean = ((0.5 + self.total[idx]) / (n + 1.0))[:, None]
        var = ((0.25 + self._sq[idx]) / (n + 1.0))[:, None]
        m = self._m
        gap = mean - m
        grapa = gap / (var + gap ** 2)
        up_bet = np.clip(-grapa, 0.0, BET_CAP / (b - m + 1e-12))
        lo_bet = np.clip(grapa, 0.0, BET_CAP / np.maximum(m, 1e-12))
        self._up[idx] += np.log1p(up_bet * (m - x))
        self._lo[idx] += np.log1p(lo_bet * (x - m))
        self._up_rejected[idx] |= self._up[idx] >= self._log_level
        self._lo_rejected[idx] |= self._lo[idx] >= self._log_level
        self._sq[idx] += (x - mean[:, 0]) ** 2
        self.total[idx] += x
        self.n[idx] += 1

    def estimate(self, row: int) -> Optional[float]:
        """The running mean of row ``row`` (None before its first sample)."""
        return float(self.total[row] / self.n[row]) if self.n[row] else None

    def upper(self, row: int) -> float:
        """The smallest rejected mean of row ``row`` (1.0 while none is): the true mean is below it."""
        hit = np.flatnonzero(self._up_rejected[row])
        return float(MEAN_GRID[hit[0]]) if hit.size else 1.0

    def lower(self, row: int) -> float:
        """The largest rejected mean of row ``row`` (0.0 while none is): the true mean is above it."""
        hit = np.flatnonzero(self._lo_rejected[row])
        return float(MEAN_GRID[hit[-1]]) if hit.size else 0.0


def epoch_delta(delta: float, epoch: int) -> float:
    """The error probability spent on epoch ``epoch`` (1, 2, ...): delta * 6 / (pi^2 k^2), summing to delta."""
    return delta * 6.0 / (math.pi ** 2 * epoch ** 2)
