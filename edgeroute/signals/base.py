"""The signal seam, in two stages: ``features`` reads one local generation, ``score`` turns features into values.

Stage 1, ``features(generation, messages)``, runs on the live decode and returns named evidence: floats, or
vectors (``numpy`` arrays, e.g. hidden states). Stage 2, ``score(values, messages)``, sees every signal's features
and the scores of the signals before it, and returns named floats (confidences, blends). The Router runs both; the
benchmark rebuilds each cached ``Generation`` and replays them, so a refitted map or probe never needs a re-run.

Which value is the Router's confidence is decided in one place: ``confidence_signal`` / ``confidence_of``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np

from ..local.base import Generation, LocalModel
from ..messages import Message

#: Stage-1 output: named floats and vectors.
Features = dict[str, Union[float, np.ndarray]]


class Signal(abc.ABC):
    """Computes named evidence about a local answer. Values must be finite floats (vectors only as features); omit
    what cannot be computed.

    A signal that yields a probability of "local answer correct" names it in ``provides_confidence``; the Router
    uses the last such signal that produced a value. ``confidence_id`` identifies that function (weights
    included), so thresholds calibrated on another one are not applied to it.
    """

    name: str = "signal"
    provides_confidence: Optional[str] = None
    confidence_id: str = ""

    @property
    def engine(self) -> Optional[dict[str, Any]]:
        """The engine record of the fitted artifact behind this signal (``local.golden``), or None (nothing
        fitted, or fitted before engine records): the Router refuses the signal on an engine that differs."""
        return None

    @classmethod
    def from_model(cls, model: LocalModel, config: Any) -> Union["Signal", list["Signal"], None]:
        """The signal registry's factory: this signal for ``model`` under a ``RouterConfig``, a list of signals,
        or None when it does not apply to the model. Default: ``cls()``."""
        return cls()

    def features(self, generation: Generation, messages: Sequence[Message]) -> Features:
        """Stage 1: this signal's evidence from ``generation`` (floats and vectors); default: nothing."""
        return {}

    @abc.abstractmethod
    def score(self, values: Mapping[str, Any], messages: Sequence[Message]) -> dict[str, float]:
        """Stage 2: this signal's values from ``values`` (every signal's features, and the earlier signals'
        scores)."""

    def compute(self, generation: Generation, messages: Sequence[Message]) -> dict[str, float]:
        """Both stages for this signal alone (its own features only): the floats it contributes."""
        values: dict[str, Any] = dict(self.features(generation, messages))
        values.update(self.score(values, messages))
        return {k: float(v) for k, v in values.items() if isinstance(v, (float, int))}


def evaluate(signals: Sequence[Signal], generation: Generation, messages: Sequence[Message]) -> dict[str, Any]:
    """Both stages for ``signals`` on one generation: every feature (floats and vectors) and every score."""
    values: dict[str, Any] = {}
    for signal in signals:
        values.update(signal.features(generation, messages))
    return rescore(signals, values, messages)


def rescore(signals: Sequence[Signal], values: Mapping[str, Any], messages: Sequence[Message]) -> dict[str, Any]:
    """Stage 2 alone, over features computed earlier (``values`` is not modified)."""
    out = dict(values)
    for signal in signals:
        out.update(signal.score(out, messages))
    return out


def floats(values: Mapping[str, Any]) -> dict[str, float]:
    """The float values of ``values`` (what ``Answer.signals`` and the trace keep; vectors are dropped)."""
    return {k: float(v) for k, v in values.items() if isinstance(v, (float, int)) and not isinstance(v, bool)}


def confidence_signal(signals: Sequence[Signal], values: Optional[Mapping[str, Any]] = None) -> Optional[Signal]:
    """The signal whose value is the confidence: the last one that provides a confidence (and, given ``values``,
    produced it). The one rule; the Router, the benchmark and calibration all use it."""
    for signal in reversed(signals):
        key = signal.provides_confidence
        if key is not None and (values is None or key in values):
            return signal
    return None


def confidence_of(signals: Sequence[Signal], values: Mapping[str, Any]) -> Optional[float]:
    """The confidence ``signals`` give for ``values`` (None when no signal produced one)."""
    signal = confidence_signal(signals, values)
    return None if signal is None else float(values[signal.provides_confidence])  # type: ignore[index]
