"""CPU time, for attributing a device-wide energy figure to one query and for the estimate.

A counter such as RAPL measures the whole package, every process included. A query's share of it is the CPU time
its work used divided by the CPU time the whole system was busy in the same window (``/proc/stat`` on Linux).
Where the system's busy time is not available the whole window is attributed, and the reading says so.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Literal, Optional

from .._constants import PROC_ROOT
from ._sysfs import Opener

#: ``process``: all threads of this process (local generation, whose compute threads are llama.cpp's own).
#: ``thread``: the calling thread only (waiting for the cloud while another query may be generating).
CpuScope = Literal["process", "thread"]

_TICKS_PER_S = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (idle and iowait excluded)


def system_busy_s(proc_root: str = PROC_ROOT, opener: Opener = open) -> Optional[float]:
    """Seconds of CPU time all CPUs have spent busy since boot, or None where ``/proc/stat`` is unavailable."""
    try:
        with opener(os.path.join(proc_root, "stat")) as f:
            first = f.readline().split()
        if not first or first[0] != "cpu":
            return None
        values = [int(v) for v in first[1:]]
        return sum(values[i] for i in _BUSY_FIELDS if i < len(values)) / _TICKS_PER_S
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU clocks at one instant, seconds: ``own`` is this process's or this thread's CPU time."""

    own_s: float
    system_busy_s: Optional[float]


class CpuClock:
    """Takes ``CpuSnapshot``s; ``proc_root`` and ``opener`` are injectable for tests."""

    def __init__(self, proc_root: str = PROC_ROOT, opener: Opener = open) -> None:
        self.proc_root = proc_root
        self.opener = opener
        self.has_system = system_busy_s(proc_root, opener) is not None

    def snapshot(self, scope: CpuScope = "process") -> CpuSnapshot:
        own = time.thread_time() if scope == "thread" else time.process_time()
        busy = system_busy_s(self.proc_root, self.opener) if self.has_system else None
        return CpuSnapshot(own, busy)


def cpu_share(start: CpuSnapshot, end: CpuSnapshot) -> tuple[float, str]:
    """This process's (or thread's) share of the system's busy CPU time in the window, in [0, 1], with a note.

    ``/proc/stat`` counts in ticks (10 ms) while our own clock is exact, so short windows can give a ratio above 1:
    it is clamped.
    """
    own = max(end.own_s - start.own_s, 0.0)
    if start.system_busy_s is None or end.system_busy_s is None:
        return 1.0, "system CPU time unavailable: whole window attributed"
    busy = end.system_busy_s - start.system_busy_s
    if busy <= 0.0:
        share = 1.0 if own > 0.0 else 0.0
    else:
        share = min(own / busy, 1.0)
    return share, f"cpu-share {share:.2f}"
