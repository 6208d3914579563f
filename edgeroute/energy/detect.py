"""Which energy backends exist here, why the others do not, and the monitor built from them. The backends are
the ``edgeroute.registry.METERS`` registry: a new meter is one file plus one line there (or a plugin)."""

from __future__ import annotations

from typing import Optional, Sequence

from ..registry import METERS
from .base import Availability, EnergyMeter
from .estimate import EstimateMeter
from .monitor import EnergyMonitor


def probe_backends(meters: Optional[Sequence[EnergyMeter]] = None) -> list[Availability]:
    """Availability of each backend (every registered meter by default), with the reason for each one rejected."""
    made = list(meters) if meters is not None else [METERS.get(name)() for name in METERS.names()]
    try:
        return [m.availability() for m in made]
    finally:
        for m in made:
            m.close()


def _usable(meter: EnergyMeter) -> tuple[bool, str]:
    status = meter.availability()
    if status.available:
        return True, ""
    if meter.may_become_available():
        return True, ""  # e.g. a battery on AC now, which may discharge later: the monitor tries it at every window
    return False, status.reason


def build_monitor(
    names: Optional[Sequence[str]] = None,
    *,
    gpu: bool = False,
    idle_w: Optional[float] = None,
    watts_per_core: Optional[float] = None,
) -> EnergyMonitor:
    """A monitor over the usable backends.

    ``names`` restricts the backends (e.g. ``["rapl"]`` or ``["estimate"]``); a named backend that is unusable is
    reported on every reading. By default every CPU-side backend is tried, and NVML only when ``gpu`` (the local
    model runs on an NVIDIA GPU). The estimate is always the fallback.
    """
    for name in names or ():
        METERS.check(name, "energy_meters")
    wanted = list(names) if names is not None else [n for n in METERS.names() if n != "nvml" or gpu]
    meters: list[EnergyMeter] = []
    notes: list[str] = []
    for name in wanted:
        if name == "estimate":
            continue
        meter = METERS.get(name)()
        ok, reason = _usable(meter)
        if ok:
            meters.append(meter)
        else:
            meter.close()
            if names is not None:
                notes.append(f"{name} requested but unavailable: {reason}")
    return EnergyMonitor(meters, estimate=EstimateMeter(watts_per_core=watts_per_core), idle_w=idle_w, notes=notes)
