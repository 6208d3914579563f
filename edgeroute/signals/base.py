"""The signal seam: a signal reads one local generation and returns named floats."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ..local.base import Generation
from ..messages import Message


class Signal(abc.ABC):
    """Computes named evidence about a local answer. Values must be finite floats; omit what cannot be computed.

    A signal that yields a probability of "local answer correct" names it in ``provides_confidence``; the Router
    uses the last such signal that produced a value. ``confidence_id`` identifies that function (weights
    included), so thresholds calibrated on another one are not applied to it.
    """

    name: str = "signal"
    provides_confidence: Optional[str] = None
    confidence_id: str = ""

    @abc.abstractmethod
    def compute(self, generation: Generation, messages: Sequence[Message]) -> dict[str, float]:
        """Return this signal's named values for ``generation``."""

    def derive(self, values: Mapping[str, float]) -> dict[str, float]:
        """Values computed from other signals' (called once all of them have run, with every value so far);
        default: nothing. Blends of signals live here."""
        return {}

    def from_cache(self, record: Mapping[str, Any], messages: Sequence[Message]) -> dict[str, float]:
        """Recompute this signal from a benchmark cache record (``signals`` with the perplexity features and the
        base64 hidden states) instead of a live generation; default: nothing (the cached values stand)."""
        return {}
