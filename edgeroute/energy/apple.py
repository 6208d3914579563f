"""Apple Silicon through IOReport, read by ``zeus-apple-silicon`` (``pip install 'edgeroute[apple]'``).

IOReport's energy figures come from macOS's own power model of the SoC, so readings are labelled ``os_model``.
Scope ``soc``: CPU clusters, GPU (Metal, where llama.cpp runs by default), DRAM and the Neural Engine. No
privileges are needed; edgeroute never runs ``sudo powermetrics``.
"""

from __future__ import annotations

import importlib
import platform
import sys
import threading
from types import ModuleType
from typing import Any, Optional

from .._constants import COUNTER_UNCERTAINTY
from .._errors import EnergyError
from .base import EnergyMeter, EnergyReading, Sample, window_seconds

#: Fields of ``AppleEnergyMetrics`` summed into the SoC figure, millijoules (None where a chip lacks one).
FIELDS = ("cpu_total_mj", "gpu_mj", "gpu_sram_mj", "dram_mj", "ane_mj")


class AppleMeter(EnergyMeter):
    """Cumulative SoC energy from ``AppleEnergyMonitor.get_cumulative_energy()``. ``module`` replaces the import."""

    name = "apple"
    method = "os_model"
    scope = "soc"

    def __init__(self, *, module: Optional[ModuleType | Any] = None) -> None:
        self._module = module
        self._monitor: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._monitor is not None:
                return self._monitor
            if self._module is None:
                if sys.platform != "darwin" or platform.machine() != "arm64":
                    raise EnergyError("not an Apple Silicon Mac")
                try:
                    self._module = importlib.import_module("zeus_apple_silicon")
                except ImportError:
                    raise EnergyError("zeus-apple-silicon is not installed (pip install 'edgeroute[apple]')") from None
            try:
                self._monitor = self._module.AppleEnergyMonitor()
            except Exception as exc:  # the extension raises RuntimeError when IOReport is unavailable
                raise EnergyError(f"IOReport unavailable: {exc}") from exc
            return self._monitor

    def sample(self) -> Sample:
        monitor = self._get()
        try:
            metrics = monitor.get_cumulative_energy()
        except Exception as exc:
            raise EnergyError(f"IOReport read failed: {exc}") from exc
        values = {f: getattr(metrics, f, None) for f in FIELDS}
        if all(v is None for v in values.values()):
            raise EnergyError("IOReport reported no energy channel")
        return Sample(self.now(), values)

    def delta(self, start: Sample, end: Sample) -> EnergyReading:
        window = window_seconds(start, end)
        total_mj = 0.0
        parts = []
        for name in FIELDS:
            a, b = start.values.get(name), end.values.get(name)
            if a is None or b is None:
                continue
            if b < a:
                raise EnergyError(f"IOReport {name} went backwards: window invalid")
            total_mj += b - a
            parts.append(name.removesuffix("_mj"))
        return EnergyReading(
            joules=total_mj / 1000.0,
            method=self.method,
            source=f"ioreport:{'+'.join(parts)}",
            scope=self.scope,
            window_s=window,
            relative_uncertainty=COUNTER_UNCERTAINTY * 2,
        )
