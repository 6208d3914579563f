"""The energy reading every Answer carries."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class EnergyReading:
    """Energy spent in one window.

    ``joules`` is None when nothing was measured or estimated; ``method`` then is ``"unmeasured"`` and ``reason``
    says why. Otherwise ``method`` is one of ``counter``, ``os_model``, ``power_integrated``, ``estimated``.
    ``window_s`` is the window's length in seconds.
    """

    joules: Optional[float]
    method: str
    source: str
    scope: str = ""
    window_s: Optional[float] = None
    relative_uncertainty: Optional[float] = None
    reason: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def unmeasured(cls, reason: str, window_s: Optional[float] = None) -> "EnergyReading":
        return cls(joules=None, method="unmeasured", source="none", window_s=window_s, reason=reason)

    @property
    def measured(self) -> bool:
        return self.joules is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["warnings"] = list(self.warnings)
        return d
