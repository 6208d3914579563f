"""The fallback that always works: CPU time x per-core power from a small table keyed by the CPU model.

The figures are a busy core's share of the chip's rated power (TDP / cores, rounded up for turbo) and a rough
relative uncertainty. They exclude idle power, memory, display and radios, and are labelled ``estimated``.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Optional

from .._constants import DEFAULT_WATTS_PER_CORE_UNCERTAINTY, DEFAULT_WATTS_PER_CORE_W, PROC_ROOT
from ._sysfs import Opener
from .base import EnergyMeter, EnergyReading, Sample, window_seconds


@dataclass(frozen=True)
class CorePower:
    """Watts drawn by one busy core of a CPU family, with its relative uncertainty and where it comes from."""

    pattern: str
    watts: float
    uncertainty: float
    note: str


#: First match wins. Patterns are matched case-insensitively against the CPU's brand string.
CORE_POWER_TABLE: tuple[CorePower, ...] = (
    CorePower(r"apple m\d", 4.0, 0.5, "Apple M-series, performance core under load"),
    CorePower(r"core\(tm\) ultra \d+ \d+[uv]\b", 3.5, 0.5, "Intel Core Ultra U/V (15-17 W, 8-12 cores)"),
    CorePower(r"core\(tm\) ultra", 5.0, 0.5, "Intel Core Ultra H/HX (28-55 W)"),
    CorePower(r"core\(tm\) i[3579]-\d{4,5}(g\d|u)\b", 3.5, 0.5, "Intel Core U-series laptop (15 W, 4 cores)"),
    CorePower(r"core\(tm\) i[3579]-\d{4,5}h", 6.0, 0.5, "Intel Core H-series laptop (45 W, 6-8 cores)"),
    CorePower(r"core\(tm\) i[3579]-\d{4,5}k", 10.0, 0.5, "Intel Core K-series desktop (125 W+)"),
    CorePower(r"core\(tm\) i[3579]", 7.0, 0.5, "Intel Core desktop (65 W, 6-8 cores)"),
    CorePower(r"xeon", 6.0, 0.5, "Intel Xeon server (250-350 W, 40-60 cores)"),
    CorePower(r"ryzen .*\d+u\b", 3.5, 0.5, "AMD Ryzen U-series laptop (15-28 W, 8 cores)"),
    CorePower(r"ryzen .*\d+(hs|hx|h)\b", 5.5, 0.5, "AMD Ryzen H-series laptop (35-55 W, 8 cores)"),
    CorePower(r"threadripper", 8.0, 0.5, "AMD Threadripper (280-350 W, 24-64 cores)"),
    CorePower(r"epyc", 4.5, 0.5, "AMD EPYC server (200-400 W, 32-128 cores)"),
    CorePower(r"ryzen", 9.0, 0.5, "AMD Ryzen desktop (65-170 W, 6-16 cores)"),
    CorePower(r"snapdragon|qualcomm|oryon", 3.0, 0.5, "Qualcomm Snapdragon X laptop"),
    CorePower(r"cortex-a7\d|raspberry|bcm27|bcm28", 1.0, 0.6, "ARM Cortex-A7x single-board computer"),
)


def cpu_brand(proc_root: str = PROC_ROOT, opener: Opener = open) -> str:
    """The CPU's brand string ("" if it cannot be found): procfs on Linux, sysctl on macOS, the registry on Windows."""
    if sys.platform.startswith("linux"):
        try:
            with opener(os.path.join(proc_root, "cpuinfo")) as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                        return value.strip()
        except OSError:
            pass
    elif sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=2, check=False
            )
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    elif sys.platform == "win32":
        try:
            import winreg

            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"HARDWARE\DESCRIPTION\System\CentralProcessor\0") as key:
                return str(winreg.QueryValueEx(key, "ProcessorNameString")[0]).strip()
        except OSError:
            pass
    return platform.processor() or ""


def core_power(brand: str) -> CorePower:
    """The table entry for ``brand``, or the stated default."""
    for entry in CORE_POWER_TABLE:
        if re.search(entry.pattern, brand, re.IGNORECASE):
            return entry
    return CorePower(
        "", DEFAULT_WATTS_PER_CORE_W, DEFAULT_WATTS_PER_CORE_UNCERTAINTY, "default: CPU model not in the table"
    )


class EstimateMeter(EnergyMeter):
    """Energy = CPU seconds x watts per busy core. Always available; ``scope`` is the process (or thread).

    ``watts_per_core`` overrides the table (e.g. a figure measured once on the user's machine).
    """

    name = "estimate"
    method = "estimated"
    scope = "process"

    def __init__(
        self,
        brand: Optional[str] = None,
        *,
        watts_per_core: Optional[float] = None,
        proc_root: str = PROC_ROOT,
        opener: Opener = open,
    ) -> None:
        self.brand = brand if brand is not None else cpu_brand(proc_root, opener)
        entry = core_power(self.brand)
        if watts_per_core is not None:
            entry = CorePower("", float(watts_per_core), 0.3, "configured watts_per_core")
        self.entry = entry

    @property
    def source(self) -> str:
        return f"estimate:{self.entry.watts:g}W/core"

    def describe(self) -> str:
        return f"CPU time x {self.entry.watts:g} W per busy core ({self.entry.note}; CPU {self.brand or 'unknown'!r})"

    def sample(self) -> Sample:
        return Sample(self.now(), time.process_time())

    def delta(self, start: Sample, end: Sample) -> EnergyReading:
        return self.for_cpu_seconds(max(end.values - start.values, 0.0), window_seconds(start, end))

    def for_cpu_seconds(self, cpu_s: float, window_s: float, scope: str = "process") -> EnergyReading:
        """The estimate for ``cpu_s`` seconds of CPU time spent in a window of ``window_s`` seconds."""
        return EnergyReading(
            joules=cpu_s * self.entry.watts,
            method=self.method,
            source=self.source,
            scope=scope,
            window_s=window_s,
            relative_uncertainty=self.entry.uncertainty,
            attribution=f"{cpu_s:.3f} CPU-s",
        )
