"""Linux RAPL through the powercap tree: ``/sys/class/powercap/intel-rapl:*/energy_uj`` (Intel and AMD).

- ``psys`` (the whole platform, on recent laptops) is used alone when present: the packages are inside it.
- Otherwise the top-level ``package-N`` zones plus their ``dram`` zones are summed.
- The same zone is often exposed twice, through MSR (``intel-rapl``) and MMIO (``intel-rapl-mmio``): one is kept.
- A counter that went backwards wrapped at ``max_energy_range_uj``; without that file the window is invalid.
- Since Linux 5.10 ``energy_uj`` is readable by root only: that is reported as the reason, never read as zero.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional

from .._constants import COUNTER_UNCERTAINTY, POWERCAP_ROOT
from .._errors import EnergyError
from ._sysfs import Opener, list_dir, read_int, read_text
from .base import EnergyMeter, EnergyReading, Sample, window_seconds

_ZONE = re.compile(r"^(intel-rapl(?:-mmio)?):(\d+)(?::(\d+))?$")
_PERMISSION_HINT = (
    " (Linux >= 5.10 makes RAPL counters root-only; see the README's 'Energy' section to grant read access)"
)


@dataclass(frozen=True)
class RaplZone:
    """One powercap zone: its directory, its ``name`` file's value and its wrap range in microjoules."""

    path: str
    name: str
    max_uj: Optional[int]


def _discover(root: str, opener: Opener) -> list[RaplZone]:
    """The zones to sum: psys alone, else packages + dram, with MSR/MMIO duplicates removed."""
    found: dict[str, tuple[int, RaplZone]] = {}
    for entry in list_dir(root):
        m = _ZONE.match(entry)
        if not m:
            continue
        path = os.path.join(root, entry)
        name = read_text(os.path.join(path, "name"), opener)
        if not name:
            continue
        if m.group(3) is not None and not name.startswith("dram"):
            continue  # core / uncore subzones are inside their package
        if m.group(3) is not None:
            name = f"{name}-{m.group(2)}" if not name[-1].isdigit() else name  # dram under package N
        rank = 0 if m.group(1) == "intel-rapl" else 1  # prefer MSR over the MMIO copy of the same zone
        zone = RaplZone(path, name, read_int(os.path.join(path, "max_energy_range_uj"), opener))
        if name not in found or rank < found[name][0]:
            found[name] = (rank, zone)
    zones = [z for _, z in found.values()]
    psys = [z for z in zones if z.name.startswith("psys")]
    return psys or [z for z in zones if z.name.startswith(("package", "dram"))]


class RaplMeter(EnergyMeter):
    """Sums the selected RAPL zones' ``energy_uj``. ``root`` and ``opener`` are injectable for tests."""

    name = "rapl"
    method = "counter"

    def __init__(self, root: str = POWERCAP_ROOT, opener: Opener = open) -> None:
        self.root = root
        self.opener = opener
        self._zones: Optional[list[RaplZone]] = None

    @property
    def zones(self) -> list[RaplZone]:
        if self._zones is None:
            if not os.path.isdir(self.root):
                raise EnergyError(f"{self.root} does not exist (not Linux, or no powercap driver: VM or container)")
            try:
                zones = _discover(self.root, self.opener)
            except EnergyError as exc:
                raise EnergyError(f"{exc}{_PERMISSION_HINT}") from exc
            if not zones:
                raise EnergyError(f"no RAPL package or psys zone under {self.root}")
            self._zones = zones
        return self._zones

    @property
    def scope(self) -> str:  # type: ignore[override]
        names = [z.name for z in self._zones or []]
        if any(n.startswith("psys") for n in names):
            return "psys"
        return "package+dram" if any(n.startswith("dram") for n in names) else "package"

    def describe(self) -> str:
        return f"RAPL {', '.join(z.name for z in self.zones)} ({self.scope})"

    def sample(self) -> Sample:
        values = []
        for zone in self.zones:
            path = os.path.join(zone.path, "energy_uj")
            try:
                value = read_int(path, self.opener)
            except EnergyError as exc:
                hint = _PERMISSION_HINT if "permission" in str(exc) else ""
                raise EnergyError(f"{exc}{hint}") from exc
            if value is None:
                raise EnergyError(f"{path} is missing")
            values.append(value)
        return Sample(self.now(), tuple(values))

    def delta(self, start: Sample, end: Sample) -> EnergyReading:
        window = window_seconds(start, end)
        total_uj = 0
        warnings: list[str] = []
        for zone, a, b in zip(self.zones, start.values, end.values):
            d = b - a
            if d < 0:
                if zone.max_uj is None:
                    raise EnergyError(
                        f"RAPL {zone.name} went backwards ({a} -> {b} uJ) and {zone.path}/max_energy_range_uj "
                        "is unreadable: window invalid"
                    )
                d += zone.max_uj
                warnings.append(f"{zone.name} counter wrapped; corrected with max_energy_range_uj")
            total_uj += d
        return EnergyReading(
            joules=total_uj / 1e6,
            method=self.method,
            source=f"rapl:{'+'.join(z.name for z in self.zones)}",
            scope=self.scope,
            window_s=window,
            relative_uncertainty=COUNTER_UNCERTAINTY,
            warnings=tuple(warnings),
        )
