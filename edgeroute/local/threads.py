"""How many threads the local engine decodes with, chosen from the machine as it is now.

llama.cpp's threads spin at barriers between the layers of every token: one thread more than there are free
cores means every token waits for a thread the scheduler has parked behind another program (measured on 2 cores
with one busy: 2 threads 25 tok/s, 1 thread 54). So the count is the number of cores free of other programs'
work, counted on the performance cores where the OS names them, refined by the rates this engine measured:

- ``topology()``: logical and physical cores, and the performance cores of a hybrid CPU (Linux: the ``cpu_core``
  PMU's CPU list, else the cores whose maximum frequency is the highest when frequencies differ);
- ``LoadMeter``: other programs' CPU use in busy cores, from ``/proc/stat`` (elsewhere psutil's CPU times, with
  the ``[load]`` extra; without it the machine is taken as idle) minus this process's own CPU time, over the
  windows between two samples (a decode window included: what others ran while we decoded);
- ``choose_threads``: a pure function of those and of the measured tokens/s per thread count.

The engine re-chooses between answers, never during one, and sets the count on its context without reloading
(``llama_set_n_threads``). ``n_threads`` given explicitly always wins.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from .._constants import PROC_ROOT
from .._errors import ConfigError
from ..energy.cputime import system_busy_s

SYS_CPU = "/sys/devices/system/cpu"
#: Weight of the newest window in the running estimate of others' load.
LOAD_EWMA = 0.7
#: A measured rate at one thread fewer must beat the chosen count's by this factor to be preferred.
RATE_MARGIN = 1.05


@dataclass(frozen=True)
class Topology:
    """``logical`` CPUs, ``physical`` cores, the logical ids of the performance cores (empty: not a hybrid CPU, or
    the OS does not say) and how many physical cores they are."""

    logical: int
    physical: int
    performance: tuple[int, ...] = ()
    performance_cores: int = 0

    @property
    def usable(self) -> int:
        """Cores worth decoding on (one thread per physical core): a hybrid CPU's performance cores, else all."""
        if self.performance:
            return max(1, self.performance_cores or len(self.performance))
        return max(1, self.physical)


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """``0-3,8,10-11`` -> (0, 1, 2, 3, 8, 10, 11)."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(out)


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _psutil() -> Any:
    """psutil when installed (``pip install "edgeroute[load]"``): cores and load on macOS and Windows too."""
    try:
        import psutil

        return psutil
    except ImportError:
        return None


def topology(sys_cpu: str = SYS_CPU) -> Topology:
    """This machine's cores: Linux sysfs; elsewhere psutil's physical count when installed, else
    ``os.cpu_count()`` logical CPUs taken as physical (no hyper-thread guess: Apple Silicon has none)."""
    root = Path(sys_cpu)
    logical = os.cpu_count() or 1
    if not root.is_dir():
        ps = _psutil()
        physical = (ps.cpu_count(logical=False) if ps is not None else None) or logical
        return Topology(logical, physical)
    online = _read(root / "online")
    cpus = parse_cpu_list(online) if online else tuple(range(logical))
    core_of: dict[int, tuple[str, str]] = {}
    freqs: dict[int, int] = {}
    for cpu in cpus:
        topo = root / f"cpu{cpu}" / "topology"
        core, package = _read(topo / "core_id"), _read(topo / "physical_package_id")
        if core is not None:
            core_of[cpu] = (package or "0", core)
        freq = _read(root / f"cpu{cpu}" / "cpufreq" / "cpuinfo_max_freq")
        if freq and freq.isdigit():
            freqs[cpu] = int(freq)
    cores = set(core_of.values())
    physical = len(cores) if cores else max(1, logical // 2) if logical > 1 else 1
    hybrid = _read(root.parent.parent / "cpu_core" / "cpus")  # Intel hybrid: /sys/devices/cpu_core/cpus
    performance: tuple[int, ...] = ()
    if hybrid:
        performance = parse_cpu_list(hybrid)
    elif len(set(freqs.values())) > 1:
        top = max(freqs.values())
        performance = tuple(sorted(c for c, f in freqs.items() if f == top))
    if performance and len(performance) >= len(cpus):
        performance = ()
    p_cores = len({core_of[c] for c in performance if c in core_of}) or len(performance)
    return Topology(len(cpus) or logical, physical, performance, p_cores if performance else 0)


def choose_threads(topo: Topology, others_busy: float, rates: Mapping[int, float] = {},
                   joules: Mapping[int, float] = {}, energy_weight: float = 0.0) -> tuple[int, str]:
    """(thread count, why). ``others_busy``: other programs' CPU use in cores; ``rates``: measured tokens/s by
    thread count under a load like this one; ``joules``: *measured* (counter) J/token by count. The count is the
    usable cores left free by others (at least 1); one fewer is taken when it was measured faster, or, with
    ``energy_weight`` > 0 (energy's weight against latency, from the preset), when its measured
    ``s/token + energy_weight x J/token`` (each relative to the free-core count's) is lower."""
    usable = topo.usable
    free = usable - max(0.0, others_busy)
    n = max(1, min(usable, int(free + 0.5)))
    kind = "performance cores" if topo.performance else "physical cores"
    why = f"{usable} {kind}, others using {max(0.0, others_busy):.1f}: {n} free"
    if n > 1 and rates.get(n - 1, 0.0) > RATE_MARGIN * rates.get(n, float("inf")):
        why += f"; {n - 1} measured faster ({rates[n - 1]:.0f} vs {rates[n]:.0f} tok/s)"
        n -= 1
    elif n > 1 and energy_weight > 0 and all(k in rates and k in joules for k in (n, n - 1)):
        cost = {k: rates[n] / rates[k] + energy_weight * joules[k] / joules[n] for k in (n, n - 1)}
        if cost[n - 1] < cost[n]:
            why += (f"; {n - 1} costs less at energy weight {energy_weight:g} ({joules[n - 1]:.3f} vs "
                    f"{joules[n]:.3f} J/token measured, {rates[n - 1]:.0f} vs {rates[n]:.0f} tok/s)")
            n -= 1
    return n, why


class LoadMeter:
    """Other programs' CPU use, in busy cores, from ``/proc/stat`` minus this process's CPU time. ``sample()``
    returns the running estimate updated with the window since the previous sample (None where ``/proc/stat``
    is unreadable: the caller then assumes an idle machine)."""

    def __init__(self, proc_root: str = PROC_ROOT) -> None:
        self._proc_root = proc_root
        self._lock = threading.Lock()
        self._last = self._read()
        #: The running estimate, and the last window's own figure (busy cores).
        self.estimate: Optional[float] = None
        self.last_window: Optional[float] = None

    def _read(self) -> Optional[tuple[float, float, float]]:
        """(wall s, system busy CPU s, this process's CPU s)."""
        busy = system_busy_s(self._proc_root)  # the energy attribution's reader of /proc/stat
        if busy is None:
            ps = _psutil()  # macOS, Windows: psutil's system-wide CPU times, when installed
            if ps is None:
                return None
            t = ps.cpu_times()
            busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
        return time.monotonic(), busy, time.process_time()

    def sample(self) -> Optional[float]:
        with self._lock:
            now = self._read()
            if now is None or self._last is None:
                self._last = now
                return self.estimate
            wall, busy, own = (a - b for a, b in zip(now, self._last))
            if wall < 0.05:  # too short for /proc/stat's 10 ms ticks: keep the estimate
                return self.estimate
            self._last = now
            others = self.last_window = max(0.0, (busy - own) / wall)
            self.estimate = others if self.estimate is None else (
                LOAD_EWMA * others + (1 - LOAD_EWMA) * self.estimate)
            return self.estimate


class ThreadPolicy:
    """One engine's thread count: ``n_threads`` an int (always that) or "auto"/None (chosen before each answer
    from the load, refined by the tokens/s measured at each count under a similar load)."""

    def __init__(self, n_threads: Union[int, str, None] = "auto") -> None:
        if n_threads not in (None, "auto") and not (isinstance(n_threads, int) and n_threads >= 1):
            raise ConfigError(f"n_threads must be a count >= 1 or 'auto', got {n_threads!r}")
        self.explicit: Optional[int] = n_threads if isinstance(n_threads, int) else None
        self.topology = topology()
        self.load = LoadMeter() if self.explicit is None else None
        self.rates: dict[tuple[int, int], float] = {}
        #: Measured (counter) J/token by (count, others' load): used only with ``energy_weight`` > 0.
        self.joules: dict[tuple[int, int], float] = {}
        #: Energy's weight against latency in the choice (the preset's lambda_energy / lambda_latency).
        self.energy_weight = 0.0
        self._bucket = 0
        self._last_key: Optional[tuple[int, int]] = None
        if self.explicit is not None:
            self.current, self.why = self.explicit, "n_threads set explicitly"
        else:
            # until the first answer measures the load: every usable core (the first ``before`` corrects it)
            self.current, self.why = choose_threads(self.topology, 0.0)

    def before(self) -> int:
        """The count for the next answer (between answers only)."""
        if self.load is None:
            return self.current
        others = self.load.sample()
        others = 0.0 if others is None else others
        self._bucket = int(others + 0.5)
        rates = {n: r for (n, b), r in self.rates.items() if b == self._bucket}
        joules = {n: j for (n, b), j in self.joules.items() if b == self._bucket}
        self.current, self.why = choose_threads(self.topology, others, rates, joules, self.energy_weight)
        return self.current

    def after(self, n: int, tokens: int, decode_s: float) -> None:
        """Record one answer's decode rate at ``n`` threads, filed under the load measured during it (not the
        load guessed before it, which lags a change by an answer)."""
        if self.load is None:
            return
        self.load.sample()
        during = self.load.last_window  # others' load while this answer decoded: the rate's true condition
        if tokens >= 8 and decode_s > 0 and during is not None:
            key, rate = (n, int(during + 0.5)), tokens / decode_s
            self.rates[key] = rate if key not in self.rates else 0.5 * rate + 0.5 * self.rates[key]
            self._last_key = key

    def record_energy(self, n: int, joules: float, tokens: int) -> None:
        """A *measured* energy reading (J) of the last answer, decoded with ``n`` threads over ``tokens`` tokens."""
        key = self._last_key
        if self.load is None or key is None or key[0] != n or tokens < 8 or joules <= 0:
            return
        jpt = joules / tokens
        self.joules[key] = jpt if key not in self.joules else 0.5 * jpt + 0.5 * self.joules[key]

    def describe(self) -> dict[str, object]:
        t = self.topology
        return {"n_threads": self.current, "why": self.why, "mode": "explicit" if self.explicit else "auto",
                "logical_cpus": t.logical, "physical_cores": t.physical, "performance_cpus": list(t.performance),
                "others_busy_cores": None if self.load is None else self.load.estimate,
                "energy_weight": self.energy_weight,
                "measured_tok_s": {f"{n} threads, {b} busy": round(r, 1) for (n, b), r in sorted(self.rates.items())},
                "measured_j_per_token": {f"{n} threads, {b} busy": round(j, 4)
                                         for (n, b), j in sorted(self.joules.items())}}


__all__ = ["LoadMeter", "ThreadPolicy", "Topology", "choose_threads", "parse_cpu_list", "topology"]
