"""The monitor: one CPU-side meter (the first that works), additive GPU meters, the estimate as the fallback,
and attribution of device-wide figures to the query.

``begin()`` / ``end(window)`` bracket a piece of work and return an ``EnergyReading`` for it. Windows are
independent values, so concurrent queries each hold their own. Attribution: a device-wide figure (package, psys,
battery, SoC) minus idle power x window where idle power is known, times the work's share of the system's busy CPU
time (``cputime.cpu_share``). GPU figures are added whole.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from dataclasses import replace as _with
from typing import Optional, Sequence

from .._errors import EnergyError
from .base import EnergyMeter, EnergyReading, Sample, combine
from .cputime import CpuClock, CpuScope, CpuSnapshot, cpu_share
from .estimate import EstimateMeter


@dataclass
class EnergyWindow:
    """An open measurement window: start times and each meter's start sample (or why it had none)."""

    t0: float
    cpu_scope: CpuScope
    cpu0: CpuSnapshot
    primary: Optional[EnergyMeter] = None
    samples: dict[str, Sample] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # "name: reason" of CPU-side meters that could not sample


class EnergyMonitor:
    """Measures windows of work. ``meters`` are tried in order for the CPU side (``additive`` ones, e.g. NVML, are
    added on top); ``estimate`` is used whenever none of them gives a valid figure. ``idle_w`` (watts, the
    CPU-side meter's scope at rest) turns device-wide figures into marginal ones.
    """

    def __init__(
        self,
        meters: Sequence[EnergyMeter] = (),
        *,
        estimate: Optional[EstimateMeter] = None,
        idle_w: Optional[float] = None,
        clock: Optional[CpuClock] = None,
        notes: Sequence[str] = (),
    ) -> None:
        if idle_w is not None and not idle_w >= 0.0:
            raise EnergyError(f"idle_w must be >= 0 watts, got {idle_w}")
        self.cpu_meters = [m for m in meters if not m.additive]
        self.additive = [m for m in meters if m.additive]
        self.estimate = estimate or EstimateMeter()
        self.idle_w = idle_w
        self.clock = clock or CpuClock()
        #: Reasons from detection worth repeating on every reading (e.g. a requested meter that is unavailable).
        self.notes = tuple(notes)

    @property
    def meters(self) -> list[EnergyMeter]:
        return self.cpu_meters + self.additive

    def describe(self) -> str:
        names = [m.name for m in self.meters] + ["estimate (fallback)"]
        return ", ".join(names)

    def begin(self, cpu: CpuScope = "process") -> EnergyWindow:
        """Open a window. ``cpu="thread"`` attributes by the calling thread's CPU time (e.g. waiting on the cloud
        while another thread generates); ``"process"`` by the whole process's (local generation)."""
        window = EnergyWindow(t0=time.perf_counter(), cpu_scope=cpu, cpu0=self.clock.snapshot(cpu))
        for meter in self.cpu_meters:
            try:
                window.samples[meter.name] = meter.sample()
            except EnergyError as exc:
                window.skipped.append(f"{meter.name}: {exc}")
                continue
            window.primary = meter
            break
        for meter in self.additive:
            try:
                window.samples[meter.name] = meter.sample()
            except EnergyError as exc:
                window.skipped.append(f"{meter.name}: {exc}")
        return window

    def end(self, window: EnergyWindow) -> EnergyReading:
        """Close ``window`` and return the energy attributed to the work done in it. Never raises for a meter
        failure: the estimate takes over and the reading says why."""
        cpu1 = self.clock.snapshot(window.cpu_scope)
        seconds = max(time.perf_counter() - window.t0, 1e-9)
        own_cpu_s = max(cpu1.own_s - window.cpu0.own_s, 0.0)
        share, share_note = cpu_share(window.cpu0, cpu1)
        warnings = list(self.notes)
        reasons = list(window.skipped)

        cpu_part: Optional[EnergyReading] = None
        if window.primary is not None:
            meter = window.primary
            try:
                raw = meter.delta(window.samples[meter.name], meter.sample())
                cpu_part = self._attribute(raw, share, share_note)
            except EnergyError as exc:
                reasons.append(f"{meter.name}: {exc}")
                warnings.append(f"{meter.name} reading invalid ({exc}); estimated instead")
        if cpu_part is None:
            cpu_part = self.estimate.for_cpu_seconds(own_cpu_s, seconds, scope=window.cpu_scope)
        parts = [cpu_part]
        for meter in self.additive:
            if meter.name not in window.samples:
                continue
            try:
                raw = meter.delta(window.samples[meter.name], meter.sample())
            except EnergyError as exc:
                warnings.append(f"{meter.name} reading invalid ({exc}); not included")
                continue
            parts.append(_with(raw, attribution="whole device (not split between processes)"))
        total = combine(parts)
        reason = "; ".join(reasons) if total.method == "estimated" and reasons else total.reason
        return _with(total, reason=reason, warnings=tuple(dict.fromkeys(list(total.warnings) + warnings)))

    def _attribute(self, raw: EnergyReading, share: float, share_note: str) -> EnergyReading:
        joules = raw.joules or 0.0
        seconds = raw.window_s or 0.0
        notes = [share_note]
        warnings = list(raw.warnings)
        if self.idle_w is not None:
            joules = max(joules - self.idle_w * seconds, 0.0)
            notes.append(f"idle {self.idle_w:g} W subtracted")
        else:
            warnings.append("idle power unknown: includes this work's share of idle power")
        return _with(raw, joules=joules * share, attribution=", ".join(notes), warnings=tuple(warnings))

    def measure_idle(self, seconds: float) -> EnergyReading:
        """Read the CPU-side meter over ``seconds`` of this process sleeping: the device's idle power x seconds.

        Raises ``EnergyError`` when no meter measures (the estimate has no notion of idle power)."""
        start = None
        for meter in self.cpu_meters:
            try:
                start = (meter, meter.sample())
                break
            except EnergyError:
                continue
        if start is None:
            raise EnergyError("no measuring meter is available here; idle power cannot be measured")
        time.sleep(seconds)
        meter, s0 = start
        return meter.delta(s0, meter.sample())

    def close(self) -> None:
        for meter in self.meters:
            meter.close()

