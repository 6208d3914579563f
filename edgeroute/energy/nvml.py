"""NVIDIA GPUs through NVML's total-energy counter (``pip install 'edgeroute[nvidia]'``, i.e. ``nvidia-ml-py``).

``nvmlDeviceGetTotalEnergyConsumption`` counts millijoules since the driver loaded (Volta and newer). The counter
is refreshed about every ``NVML_MIN_WINDOW_S``; a shorter window integrates the two power samples
(``nvmlDeviceGetPowerUsage``, milliwatts) over the window instead and is labelled ``power_integrated``.
This meter is additive: its energy is added to the CPU-side meter's.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any, Optional, Sequence

from .._constants import COUNTER_UNCERTAINTY, NVML_MIN_WINDOW_S, POWER_INTEGRATED_UNCERTAINTY
from .._errors import EnergyError
from .base import EnergyMeter, EnergyReading, Sample, window_seconds


class NvmlMeter(EnergyMeter):
    """Sums the selected GPUs (all by default). ``nvml`` replaces the ``pynvml`` module (tests pass a fake)."""

    name = "nvml"
    method = "counter"
    scope = "gpu"
    additive = True

    def __init__(self, devices: Optional[Sequence[int]] = None, *, nvml: Optional[ModuleType | Any] = None) -> None:
        self._nvml = nvml
        self._wanted = list(devices) if devices is not None else None
        self._handles: Optional[list[Any]] = None
        self._lock = threading.Lock()

    def _init(self) -> tuple[Any, list[Any]]:
        with self._lock:
            if self._handles is not None:
                return self._nvml, self._handles
            if self._nvml is None:
                try:
                    self._nvml = importlib.import_module("pynvml")
                except ImportError:
                    raise EnergyError("nvidia-ml-py is not installed (pip install 'edgeroute[nvidia]')") from None
            nv = self._nvml
            try:
                nv.nvmlInit()
                count = nv.nvmlDeviceGetCount()
                indices = self._wanted if self._wanted is not None else list(range(count))
                handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in indices if 0 <= i < count]
                if not handles:
                    raise EnergyError(f"no NVIDIA GPU found (NVML reports {count} device(s))")
                for h in handles:
                    nv.nvmlDeviceGetTotalEnergyConsumption(h)  # NOT_SUPPORTED before Volta
            except EnergyError:
                raise
            except Exception as exc:  # pynvml raises NVMLError subclasses; any failure means unavailable
                raise EnergyError(f"NVML unavailable: {exc}") from exc
            self._handles = handles
            return nv, handles

    def sample(self) -> Sample:
        nv, handles = self._init()
        try:
            values = tuple(
                (int(nv.nvmlDeviceGetTotalEnergyConsumption(h)), int(nv.nvmlDeviceGetPowerUsage(h))) for h in handles
            )
        except Exception as exc:
            raise EnergyError(f"NVML read failed: {exc}") from exc
        return Sample(self.now(), values)

    def describe(self) -> str:
        _, handles = self._init()
        return f"NVML total energy of {len(handles)} GPU(s)"

    def delta(self, start: Sample, end: Sample) -> EnergyReading:
        window = window_seconds(start, end)
        energy_mj = [b[0] - a[0] for a, b in zip(start.values, end.values)]
        if any(d < 0 for d in energy_mj):
            raise EnergyError("NVML energy counter went backwards (driver reloaded?): window invalid")
        if window >= NVML_MIN_WINDOW_S:
            return EnergyReading(
                joules=sum(energy_mj) / 1000.0,
                method="counter",
                source="nvml",
                scope=self.scope,
                window_s=window,
                relative_uncertainty=COUNTER_UNCERTAINTY,
            )
        mean_w = sum((a[1] + b[1]) / 2.0 for a, b in zip(start.values, end.values)) / 1000.0
        return EnergyReading(
            joules=mean_w * window,
            method="power_integrated",
            source="nvml-power",
            scope=self.scope,
            window_s=window,
            relative_uncertainty=POWER_INTEGRATED_UNCERTAINTY,
            warnings=(f"window {window * 1000:.0f} ms is shorter than NVML's counter period; power x time used",),
        )

    def close(self) -> None:
        with self._lock:
            if self._handles is not None and self._nvml is not None:
                try:
                    self._nvml.nvmlShutdown()
                except Exception:  # shutting down a library that is going away: nothing useful to report
                    pass
            self._handles = None
