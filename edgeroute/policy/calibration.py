"""Choosing the escalation threshold from labelled data, with a statistical guarantee.

Risk of a threshold t: the fraction of all queries that get a *wrong local answer*, i.e. P(confidence >= t and
local answer wrong) (escalated queries are the cloud's to answer). It only grows as t is lowered, so thresholds are
tested in a fixed sequence from strict (1.0) to lenient (0.0): each is certified when the one-sided Clopper-Pearson
upper bound of its risk, at level 1 - delta, is <= epsilon, and the sequence stops at the first failure. The most
lenient certified threshold is chosen. Fixed-sequence testing needs no multiplicity correction, so::

    P(risk(chosen threshold) <= epsilon) >= 1 - delta      (over the draw of the calibration data)

provided future queries come from the same distribution as the calibration data. The alternative mode picks the
threshold that sends a target share of the calibration queries to the cloud (no guarantee).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .. import paths
from .._arrays import paired
from .._errors import CalibrationError, ConfigError

#: Thresholds tested, strict to lenient.
DEFAULT_GRID: tuple[float, ...] = tuple(round(1.0 - i / 100, 2) for i in range(101))


@lru_cache(maxsize=64)
def _log_factorials(n: int) -> np.ndarray:
    return np.r_[0.0, np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))]


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k >= n:
        return 1.0
    if k < 0:
        return 0.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lf = _log_factorials(n)
    i = np.arange(k + 1)
    logs = lf[n] - lf[i] - lf[n - i] + i * math.log(p) + (n - i) * math.log1p(-p)
    m = float(logs.max())
    return min(1.0, math.exp(m) * float(np.exp(logs - m).sum()))


def clopper_pearson_upper(k: int, n: int, delta: float) -> float:
    """One-sided upper confidence bound at level 1 - delta for a binomial proportion with k events in n trials."""
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    if n <= 0:
        return 1.0
    if k >= n:
        return 1.0
    lo, hi = k / n, 1.0
    for _ in range(40):  # bisection to ~1e-12: binom_cdf(k; n, p) decreases in p
        mid = (lo + hi) / 2
        if binom_cdf(k, n, mid) > delta:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(frozen=True)
class Calibration:
    """A chosen threshold and how it was chosen. Probabilities in [0, 1]; ``n`` calibration items."""

    threshold: float
    mode: str  # "guarantee" (wrong and accepted <= epsilon of queries) | "selective" (wrong <= epsilon of the
    # accepted answers) | "target-rate"
    n: int
    expected_cloud_rate: float
    empirical_risk: float
    epsilon: Optional[float] = None
    delta: Optional[float] = None
    risk_upper_bound: Optional[float] = None
    model: str = ""
    confidence_id: str = ""
    source: str = ""
    #: The distribution the guarantee covers (which families and sources the calibration answers came from).
    covers: str = ""
    #: Share of the calibration queries answered locally at the threshold (selective mode).
    coverage: Optional[float] = None
    created: float = field(default_factory=time.time)
    #: The engine record of the answers it was calibrated on (``local.golden``), or None.
    engine: Optional[dict[str, Any]] = None
    #: The mid-stream handoff rule chosen on the same split (``signals.prefix.HandoffRule.to_dict``), or None.
    handoff: Optional[dict[str, Any]] = None

    def describe(self) -> str:
        if self.mode == "selective":
            return (f"calibrated: wrong answers <= {self.epsilon:g} of the accepted ones with probability >= "
                    f"{1 - (self.delta or 0):g} (n={self.n})")
        if self.mode == "guarantee":
            return (f"calibrated: wrong local answers <= {self.epsilon:g} of queries with probability >= "
                    f"{1 - (self.delta or 0):g} (n={self.n})")
        return f"calibrated: target cloud rate {self.expected_cloud_rate:.2f} (n={self.n})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Calibration":
        known = {f for f in cls.__dataclass_fields__}
        cal = cls(**{k: v for k, v in d.items() if k in known})
        if not (isinstance(cal.threshold, (int, float)) and 0.0 <= cal.threshold <= 1.0):
            raise ValueError(f"threshold {cal.threshold!r} is not in [0, 1]")
        return cal


def _arrays(confidence: Sequence[float], correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    return paired(confidence, correct, ConfigError)


def calibrate_guarantee(
    confidence: Sequence[float],
    correct: Sequence[bool],
    epsilon: float,
    delta: float,
    grid: Sequence[float] = DEFAULT_GRID,
) -> Calibration:
    """The most lenient threshold whose risk is certified <= ``epsilon`` with probability >= 1 - ``delta``.

    Raises ``CalibrationError`` when not even the strictest threshold can be certified (too few items)."""
    if not 0 < epsilon < 1:
        raise ConfigError(f"epsilon must be in (0, 1), got {epsilon}")
    c, y = _arrays(confidence, correct)
    n = len(c)
    chosen: Optional[tuple[float, int, float]] = None
    bounds: dict[int, float] = {}
    for t in sorted(grid, reverse=True):
        k = int(np.sum((c >= t) & ~y))
        if k not in bounds:
            bounds[k] = clopper_pearson_upper(k, n, delta)
        bound = bounds[k]
        if bound > epsilon:
            break
        chosen = (t, k, bound)
    if chosen is None:
        need = math.ceil(math.log(1 / delta) / epsilon)
        raise CalibrationError(
            f"cannot certify epsilon={epsilon:g} at delta={delta:g} with {n} items: even accepting nothing needs "
            f"about {need} items; add labelled data or relax epsilon/delta"
        )
    t, k, bound = chosen
    return Calibration(
        threshold=t, mode="guarantee", n=n, expected_cloud_rate=float(np.mean(c < t)), empirical_risk=k / n,
        epsilon=epsilon, delta=delta, risk_upper_bound=bound,
    )


def calibrate_selective(
    confidence: Sequence[float],
    correct: Sequence[bool],
    epsilon: float,
    delta: float,
    grid: Sequence[float] = DEFAULT_GRID,
) -> Calibration:
    """The most lenient threshold whose error among accepted answers is certified <= ``epsilon`` with probability
    >= 1 - ``delta``: thresholds are tested from the strictest down (fixed-sequence testing, so each test may spend
    all of ``delta``), each with the Clopper-Pearson upper bound of k wrong among the m answers it accepts, and the
    search stops at the first that fails. Thresholds that accept too few answers to ever pass are skipped (a rule
    on the confidences alone). Raises ``CalibrationError`` when even the strictest fails."""
    if not 0 < epsilon < 1:
        raise ConfigError(f"epsilon must be in (0, 1), got {epsilon}")
    c, y = _arrays(confidence, correct)
    n = len(c)
    # a threshold accepting fewer answers than this cannot pass even with no error; skipping those depends on the
    # confidences alone (not the labels), so the fixed sequence stays fixed given them
    m_min = math.ceil(math.log(delta) / math.log(1.0 - epsilon))
    chosen: Optional[tuple[float, int, int, float]] = None
    for t in sorted(grid, reverse=True):
        accepted = c >= t
        m = int(accepted.sum())
        if m < m_min:
            continue
        k = int(np.sum(accepted & ~y))
        bound = clopper_pearson_upper(k, m, delta)
        if bound > epsilon:
            break
        chosen = (t, k, m, bound)
    if chosen is None:
        raise CalibrationError(
            f"cannot certify an accepted-answer error <= {epsilon:g} at delta={delta:g} with {n} items: the most "
            "confident answers are already too often wrong; add labelled data or relax epsilon/delta"
        )
    t, k, m, bound = chosen
    return Calibration(
        threshold=t, mode="selective", n=n, expected_cloud_rate=float(np.mean(c < t)), empirical_risk=k / m,
        epsilon=epsilon, delta=delta, risk_upper_bound=bound, coverage=m / n,
    )


def calibrate_target_rate(confidence: Sequence[float], correct: Sequence[bool], rate: float) -> Calibration:
    """The threshold that sends about ``rate`` of these queries to the cloud (confidence below it). No guarantee."""
    if not 0 <= rate <= 1:
        raise ConfigError(f"target cloud rate must be in [0, 1], got {rate}")
    c, y = _arrays(confidence, correct)
    if len(c) == 0:
        raise CalibrationError("no calibration items")
    candidates = np.unique(np.r_[c, 1.0 + 1e-9])
    rates = np.array([np.mean(c < t) for t in candidates])
    t = float(candidates[int(np.argmin(np.abs(rates - rate)))])
    t = min(t, 1.0)
    return Calibration(
        threshold=t, mode="target-rate", n=len(c), expected_cloud_rate=float(np.mean(c < t)),
        empirical_risk=float(np.mean((c >= t) & ~y)),
    )


def calibration_path(model_fingerprint: str, confidence_id: str = "") -> Path:
    """Where the calibration of this model (and this confidence map, when named) is saved: one file each, so the
    probe's confidence and the Self-REF blend keep their own thresholds."""
    stem = model_fingerprint[:32] or "unknown"
    return paths.calibration_dir() / (f"{stem}-{confidence_id}.json" if confidence_id else f"{stem}.json")


def save_calibration(cal: Calibration, path: Optional[Path] = None) -> Path:
    """Write atomically (temp file + rename): a crash leaves the old file or the new one, never half of one."""
    target = path or calibration_path(cal.model, cal.confidence_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cal.to_dict(), indent=2), encoding="utf-8")
    os.replace(tmp, target)
    return target



def _read(path: Path, model_fingerprint: str, confidence_id: str, quiet_mismatch: bool) -> Optional[Calibration]:
    try:
        cal = Calibration.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        warnings.warn(f"edgeroute: ignoring unreadable calibration {path}: {exc}", RuntimeWarning, stacklevel=4)
        return None
    if cal.model != model_fingerprint or (confidence_id and cal.confidence_id and cal.confidence_id != confidence_id):
        if not quiet_mismatch:
            warnings.warn(f"edgeroute: ignoring {path}: made for another model or confidence map", RuntimeWarning,
                          stacklevel=4)
        return None
    return cal


def load_calibration(model_fingerprint: str, confidence_id: str = "") -> Optional[Calibration]:
    """The calibration for this model: the user's (saved by ``edgeroute calibrate``), else the one ``edgeroute fit``
    saved for it, else the one shipped in the wheel for the default model, else None. A corrupt file, or one made for another model or confidence map, is
    ignored with a warning (the shipped one silently, since it only fits the default model)."""
    mine = calibration_path(model_fingerprint, confidence_id)
    legacy = calibration_path(model_fingerprint)
    candidates = [mine] + ([legacy] if legacy != mine else [])
    for path in candidates:
        if path.exists():
            cal = _read(path, model_fingerprint, confidence_id, quiet_mismatch=path == mine)
            if cal is not None:
                return cal
    # saved by edgeroute fit: calibration.json for the Router's confidence, calibration-map.json for the map's
    for fitted in sorted(paths.fitted_dir(model_fingerprint).glob("calibration*.json"), key=lambda p: p.name != "calibration.json"):
        cal = _read(fitted, model_fingerprint, confidence_id, quiet_mismatch=True)
        if cal is not None and (not confidence_id or cal.confidence_id == confidence_id):
            return cal
    others = sorted(p for p in paths.calibration_dir().glob(f"{model_fingerprint[:32]}-*.json") if p not in candidates)
    if others:
        warnings.warn(f"edgeroute: ignoring {', '.join(p.name for p in others)}: made for another model or "
                      f"confidence map", RuntimeWarning, stacklevel=2)
    from importlib import resources

    for shipped in sorted(resources.files("edgeroute._models").iterdir(), key=lambda r: r.name):
        if shipped.name.startswith("calibration") and shipped.name.endswith(".json") and shipped.is_file():
            cal = _read(Path(str(shipped)), model_fingerprint, confidence_id, quiet_mismatch=True)
            if cal is not None and (cal.confidence_id == confidence_id or not confidence_id):
                return cal
    return None
