"""The signal seam: a signal reads one local generation and returns named floats."""

from __future__ import annotations

import abc
from collections.abc import Sequence

from ..local.base import Generation
from ..messages import Message


class Signal(abc.ABC):
    """Computes named evidence about a local answer. Values must be finite floats; omit what cannot be computed."""

    name: str = "signal"

    @abc.abstractmethod
    def compute(self, generation: Generation, messages: Sequence[Message]) -> dict[str, float]:
        """Return this signal's named values for ``generation``."""
