"""Energy readings and the one small base class every meter implements.

Units: joules (J), seconds (s), watts (W). A reading always says how it was obtained (``method``), what it covers
(``scope``) and from where (``source``); nothing is ever a silent zero.
"""

from __future__ import annotations

import abc
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Optional

from .._errors import EnergyError

#: Methods from most to least direct. ``counter``: a hardware/firmware energy counter (RAPL, EMI, NVML, battery
#: gauge). ``power_integrated``: power samples x time. ``os_model``: the OS's own energy model (Apple IOReport).
#: ``estimated``: CPU time x a per-core power figure from a table.
METHODS: tuple[str, ...] = ("counter", "power_integrated", "os_model", "estimated")
MEASURED_METHODS: frozenset[str] = frozenset(METHODS[:3])


@dataclass(frozen=True)
class EnergyReading:
    """Energy spent in one window, in joules.

    ``joules`` is None when nothing could be measured or estimated; ``method`` then is ``"unmeasured"`` and
    ``reason`` says why. Otherwise ``method`` is one of ``METHODS``. ``scope`` is what the figure covers
    (``package``, ``package+dram``, ``psys``, ``gpu``, ``soc``, ``battery``, ``process``, or several joined by
    ``+``); ``source`` names the meter(s). ``window_s`` is the window's length in seconds;
    ``relative_uncertainty`` a rough 1-sigma relative error. ``attribution`` says how a device-wide figure was
    narrowed to this query (e.g. ``cpu-share 0.93``).
    """

    joules: Optional[float]
    method: str
    source: str
    scope: str = ""
    window_s: Optional[float] = None
    relative_uncertainty: Optional[float] = None
    reason: str = ""
    attribution: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def unmeasured(cls, reason: str, window_s: Optional[float] = None) -> "EnergyReading":
        return cls(joules=None, method="unmeasured", source="none", window_s=window_s, reason=reason)

    @property
    def known(self) -> bool:
        """True when ``joules`` holds a number (measured or estimated)."""
        return self.joules is not None

    @property
    def measured(self) -> bool:
        """True when the figure comes from the device (``counter``, ``power_integrated`` or ``os_model``)."""
        return self.method in MEASURED_METHODS

    @property
    def kind(self) -> str:
        """``measured``, ``estimated`` or ``unmeasured``: the label a user interface should show."""
        return "measured" if self.measured else ("estimated" if self.known else "unmeasured")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["warnings"] = list(self.warnings)
        d["kind"] = self.kind
        return d


def combine(parts: list[EnergyReading]) -> EnergyReading:
    """Sum readings of disjoint windows or scopes.

    The method is the least direct of the parts', the sources and scopes are joined, the uncertainty is the
    joule-weighted mean (errors assumed correlated: conservative). Unknown if any part is unknown.
    """
    if not parts:
        return EnergyReading.unmeasured("no energy window")
    missing = [p for p in parts if p.joules is None]
    window = sum(p.window_s or 0.0 for p in parts)
    if missing:
        return EnergyReading.unmeasured("; ".join(dict.fromkeys(p.reason for p in missing)), window_s=window)
    if len(parts) == 1:
        return parts[0]
    total = sum(p.joules or 0.0 for p in parts)
    method = max((p.method for p in parts), key=METHODS.index)
    weighted = sum((p.relative_uncertainty or 0.0) * (p.joules or 0.0) for p in parts)
    return EnergyReading(
        joules=total,
        method=method,
        source="+".join(dict.fromkeys(p.source for p in parts)),
        scope="+".join(dict.fromkeys(p.scope for p in parts if p.scope)),
        window_s=window,
        relative_uncertainty=(weighted / total) if total > 0 else max(p.relative_uncertainty or 0.0 for p in parts),
        attribution="; ".join(dict.fromkeys(p.attribution for p in parts if p.attribution)),
        warnings=tuple(dict.fromkeys(w for p in parts for w in p.warnings)),
    )


@dataclass(frozen=True)
class QueryEnergy:
    """Energy of one query on both sides of the wire.

    The device's side: the local generation (prefill + decode, ``local``) and the wait for the cloud
    (``cloud_wait``), each with its own method; the top-level fields (``joules``, ``method``, ``source``, ...) are
    their total, this device's energy (``device``). The cloud's side: ``cloud``, the datacenter's energy for the
    cloud's answer (``energy.cloud``: always ``estimated``, from tokens; None when no cloud answered).
    ``joules_in("both")`` adds the two sides. ``joules_per_token`` is the local part divided by the local answer's
    tokens (None when no local token was produced or the energy is unknown).
    """

    local: EnergyReading
    cloud_wait: Optional[EnergyReading] = None
    local_tokens: int = 0
    cloud: Optional[EnergyReading] = None

    @cached_property
    def total(self) -> EnergyReading:
        """The parts combined (computed once: every top-level field reads it)."""
        return combine([self.local] + ([self.cloud_wait] if self.cloud_wait is not None else []))

    joules = property(lambda self: self.total.joules)
    method = property(lambda self: self.total.method)
    source = property(lambda self: self.total.source)
    scope = property(lambda self: self.total.scope)
    reason = property(lambda self: self.total.reason)
    measured = property(lambda self: self.total.measured)
    kind = property(lambda self: self.total.kind)

    @property
    def device(self) -> EnergyReading:
        """This device's energy: ``local`` and ``cloud_wait`` combined (the top-level figure)."""
        return self.total

    def joules_in(self, scope: str) -> Optional[float]:
        """Joules within ``scope``: ``"device"`` (this device) or ``"both"`` (plus the cloud's estimate; the device
        alone when no cloud answered). None when the device's energy is unknown."""
        device = self.total.joules
        if scope == "device" or device is None or self.cloud is None or self.cloud.joules is None:
            return device
        return device + self.cloud.joules

    @property
    def joules_per_token(self) -> Optional[float]:
        if self.local.joules is None or self.local_tokens <= 0:
            return None
        return self.local.joules / self.local_tokens

    def to_dict(self) -> dict[str, Any]:
        d = self.total.to_dict()
        d["joules_per_token"] = self.joules_per_token
        d["local"] = self.local.to_dict()
        d["cloud_wait"] = None if self.cloud_wait is None else self.cloud_wait.to_dict()
        d["cloud"] = None if self.cloud is None else self.cloud.to_dict()
        d["sides"] = {"device": {"joules": self.total.joules, "kind": self.total.kind},
                      "cloud": None if self.cloud is None else {"joules": self.cloud.joules, "kind": self.cloud.kind,
                                                                "source": self.cloud.source},
                      "both_joules": self.joules_in("both")}
        return d


@dataclass(frozen=True)
class Availability:
    """Whether a backend can be used here, and if not, why."""

    name: str
    available: bool
    reason: str
    method: str
    scope: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Sample:
    """A meter's cumulative state at one instant: ``t`` is ``time.perf_counter()`` seconds, ``values`` raw."""

    t: float
    values: Any


class EnergyMeter(abc.ABC):
    """One source of energy figures. Subclasses: one file each, under ``edgeroute.energy``.

    ``sample()`` reads the cumulative counters (cheap: called at the start and end of every query);
    ``delta(start, end)`` turns two samples into a reading of the meter's whole ``scope`` (not yet attributed to
    the query). Both raise ``EnergyError`` with a reason when the meter cannot give a valid figure.
    ``additive`` meters (discrete GPUs) add to the CPU-side meter instead of replacing it.
    """

    name: ClassVar[str]
    method: ClassVar[str]
    scope: str = ""
    additive: ClassVar[bool] = False

    @abc.abstractmethod
    def sample(self) -> Sample: ...

    @abc.abstractmethod
    def delta(self, start: Sample, end: Sample) -> EnergyReading: ...

    def availability(self) -> Availability:
        """Try one sample; report why it failed if it did."""
        try:
            self.sample()
        except EnergyError as exc:
            return Availability(self.name, False, str(exc), self.method, self.scope)
        return Availability(self.name, True, self.describe(), self.method, self.scope)

    def may_become_available(self) -> bool:
        """True when an unavailable meter may work later in this process (a battery on AC power): the monitor
        then keeps it and tries it at every window. Default: False."""
        return False

    def describe(self) -> str:
        """What this meter reads, for ``edgeroute energy``."""
        return f"{self.name}: {self.scope}"

    def close(self) -> None:
        """Release handles (NVML, device files). Idempotent."""

    @staticmethod
    def now() -> float:
        return time.perf_counter()


def window_seconds(start: Sample, end: Sample) -> float:
    """Length of the window between two samples; raises ``EnergyError`` for a zero or negative window."""

    window = end.t - start.t
    if not window > 0.0:
        raise EnergyError(f"invalid window of {window:.3g} s: the end sample is not after the start")
    return window
