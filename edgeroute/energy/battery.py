"""A laptop battery's fuel gauge: ``/sys/class/power_supply/BAT*`` on Linux, only while it is discharging.

The gauge gives either ``energy_now`` (microwatt-hours) or ``charge_now`` (microampere-hours, times
``voltage_now`` in microvolts). It covers the whole machine (display included) and moves in coarse steps, often
only every few seconds: when it has not moved within a window, the average of ``power_now`` (or ``current_now`` x
``voltage_now``) at both ends times the window is used instead and labelled ``power_integrated``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from .._constants import BATTERY_UNCERTAINTY, POWER_INTEGRATED_UNCERTAINTY, POWER_SUPPLY_ROOT
from .._errors import EnergyError
from ._sysfs import Opener, list_dir, read_int, read_text
from .base import EnergyMeter, EnergyReading, Sample, window_seconds

_UWH_TO_J = 3.6e-3  # 1 microwatt-hour = 3600 / 1e6 J


@dataclass(frozen=True)
class _Gauge:
    """One battery at one instant. Energy in joules, power in watts (None where the files are absent)."""

    name: str
    status: str
    energy_j: Optional[float]
    power_w: Optional[float]


class BatteryMeter(EnergyMeter):
    """Sums every system battery (peripheral batteries, ``scope=Device``, are skipped)."""

    name = "battery"
    method = "counter"
    scope = "battery"

    def __init__(self, root: str = POWER_SUPPLY_ROOT, opener: Opener = open) -> None:
        self.root = root
        self.opener = opener

    def _batteries(self) -> list[str]:
        found = []
        for entry in list_dir(self.root):
            path = os.path.join(self.root, entry)
            if read_text(os.path.join(path, "type"), self.opener) != "Battery":
                continue
            if read_text(os.path.join(path, "scope"), self.opener) == "Device":
                continue
            found.append(path)
        return found

    def may_become_available(self) -> bool:
        return self.present()

    def present(self) -> bool:
        """True when a system battery exists, discharging or not (it may start discharging later)."""
        try:
            return bool(self._batteries())
        except EnergyError:
            return False

    def on_battery(self) -> Optional[bool]:
        """True while a system battery is discharging, False when there is one and none is, None without one.
        (Linux sysfs only; other systems report None.)"""
        try:
            paths = self._batteries()
        except EnergyError:
            return None
        if not paths:
            return None
        return any(read_text(os.path.join(p, "status"), self.opener) == "Discharging" for p in paths)

    def _read(self, path: str) -> _Gauge:
        def num(name: str) -> Optional[int]:
            return read_int(os.path.join(path, name), self.opener)

        status = read_text(os.path.join(path, "status"), self.opener) or "Unknown"
        voltage = num("voltage_now")
        energy_j: Optional[float] = None
        if (energy := num("energy_now")) is not None:
            energy_j = energy * _UWH_TO_J
        elif (charge := num("charge_now")) is not None and voltage is not None:
            energy_j = charge * voltage / 1e6 * _UWH_TO_J
        power_w: Optional[float] = None
        if (power := num("power_now")) is not None:
            power_w = abs(power) / 1e6
        elif (current := num("current_now")) is not None and voltage is not None:
            power_w = abs(current) * voltage / 1e12
        return _Gauge(os.path.basename(path), status, energy_j, power_w)

    def sample(self) -> Sample:
        paths = self._batteries()
        if not paths:
            raise EnergyError(f"no system battery under {self.root}")
        gauges = tuple(self._read(p) for p in paths)
        if not any(g.status == "Discharging" for g in gauges):
            states = ", ".join(f"{g.name} {g.status}" for g in gauges)
            raise EnergyError(f"battery not discharging ({states}): on AC power the gauge does not see the load")
        if all(g.energy_j is None and g.power_w is None for g in gauges):
            raise EnergyError(f"battery under {self.root} exposes neither energy/charge nor power/current")
        return Sample(self.now(), gauges)

    def describe(self) -> str:
        return f"battery fuel gauge ({', '.join(os.path.basename(p) for p in self._batteries())}; whole machine)"

    def delta(self, start: Sample, end: Sample) -> EnergyReading:
        window = window_seconds(start, end)
        by_name = {g.name: g for g in start.values}
        gauges = [(by_name.get(g.name), g) for g in end.values]
        if any(a is None or a.status != "Discharging" or b.status != "Discharging" for a, b in gauges):
            raise EnergyError("the battery stopped discharging during the window (plugged in?): window invalid")
        drained = [a.energy_j - b.energy_j for a, b in gauges if a and a.energy_j is not None and b.energy_j is not None]
        if drained and sum(drained) > 0:
            return EnergyReading(
                joules=sum(drained),
                method="counter",
                source=f"battery:{'+'.join(g.name for _, g in gauges)}",
                scope=self.scope,
                window_s=window,
                relative_uncertainty=BATTERY_UNCERTAINTY,
            )
        powers = [(a.power_w + b.power_w) / 2 for a, b in gauges if a and a.power_w is not None and b.power_w is not None]
        if not powers:
            raise EnergyError("battery gauge did not move within the window and no power reading exists")
        return EnergyReading(
            joules=sum(powers) * window,
            method="power_integrated",
            source=f"battery-power:{'+'.join(g.name for _, g in gauges)}",
            scope=self.scope,
            window_s=window,
            relative_uncertainty=POWER_INTEGRATED_UNCERTAINTY,
            warnings=("battery gauge did not move within the window; power x time used",),
        )
