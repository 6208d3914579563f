"""Validation shared by the metrics and the calibration: paired 1-D score and label arrays."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def paired(scores: ArrayLike, labels: ArrayLike, error: type[Exception] = ValueError) -> tuple[np.ndarray, np.ndarray]:
    """(float64 scores, bool labels), both 1-D and the same length, scores finite; ``error`` otherwise."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape or s.ndim != 1:
        raise error("scores and labels must be 1-D and the same length")
    if not np.all(np.isfinite(s)):
        raise error("scores must be finite")
    return s, y
