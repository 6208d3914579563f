"""Policy v0: escalate when confidence is below a threshold."""

from __future__ import annotations

from typing import Any, Optional

from .._errors import ConfigError
from .base import Decision, Policy


class ThresholdPolicy(Policy):
    """Accept the local answer when ``confidence >= threshold``.

    A truncated answer always escalates. An unknown confidence (no token generated) follows ``on_unknown``:
    ``"escalate"`` (default) or ``"accept"``.
    """

    @classmethod
    def from_config(cls, threshold: float, config: Any, *, store: Any = None, model_key: str = "") -> "ThresholdPolicy":
        """The policy registry's factory."""
        return cls(threshold, config.on_unknown)

    def __init__(self, threshold: float, on_unknown: str = "escalate") -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {threshold}")
        if on_unknown not in ("escalate", "accept"):
            raise ConfigError(f"on_unknown must be 'escalate' or 'accept', got {on_unknown!r}")
        self.threshold: float = float(threshold)
        self.on_unknown = on_unknown

    def decide(self, confidence: Optional[float], *, truncated: bool = False) -> Decision:
        if truncated:
            return Decision(True, "the local answer was cut off by the context window")
        if confidence is None:
            return Decision(self.on_unknown == "escalate", "confidence unknown (no scored tokens)")
        if confidence < self.threshold:
            return Decision(True, f"confidence {confidence:.3f} < threshold {self.threshold:.3f}")
        return Decision(False, f"confidence {confidence:.3f} >= threshold {self.threshold:.3f}")
