"""Which energy backends exist here, why the others do not, and the monitor built from them."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from .._errors import ConfigError
from .apple import AppleMeter
from .base import Availability, EnergyMeter
from .battery import BatteryMeter
from .emi import EmiMeter
from .estimate import EstimateMeter
from .monitor import EnergyMonitor
from .nvml import NvmlMeter
from .rapl import RaplMeter

#: Every backend, in detection order. A new meter is one file plus one line here.
BACKENDS: dict[str, Callable[[], EnergyMeter]] = {
    "rapl": RaplMeter,
    "nvml": NvmlMeter,
    "apple": AppleMeter,
    "emi": EmiMeter,
    "battery": BatteryMeter,
    "estimate": EstimateMeter,
}


def probe_backends(meters: Optional[Sequence[EnergyMeter]] = None) -> list[Availability]:
    """Availability of each backend (all of ``BACKENDS`` by default), with the reason for each one rejected."""
    made = list(meters) if meters is not None else [factory() for factory in BACKENDS.values()]
    try:
        return [m.availability() for m in made]
    finally:
        for m in made:
            m.close()


def _usable(meter: EnergyMeter) -> tuple[bool, str]:
    status = meter.availability()
    if status.available:
        return True, ""
    if isinstance(meter, BatteryMeter) and meter.present():
        return True, ""  # on AC now, may discharge later: the monitor tries it at every window
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
    if names is not None:
        unknown = sorted(set(names) - set(BACKENDS))
        if unknown:
            raise ConfigError(f"unknown energy backend(s) {unknown}; known: {list(BACKENDS)}")
    wanted = list(names) if names is not None else [n for n in BACKENDS if n != "nvml" or gpu]
    meters: list[EnergyMeter] = []
    notes: list[str] = []
    for name in wanted:
        if name == "estimate":
            continue
        meter = BACKENDS[name]()
        ok, reason = _usable(meter)
        if ok:
            meters.append(meter)
        else:
            meter.close()
            if names is not None:
                notes.append(f"{name} requested but unavailable: {reason}")
    return EnergyMonitor(meters, estimate=EstimateMeter(watts_per_core=watts_per_core), idle_w=idle_w, notes=notes)
