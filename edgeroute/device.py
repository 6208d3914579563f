"""The device state the online policy sees: on battery or not, cloud reachable, recent cloud latency."""

from __future__ import annotations

import threading
import time
from typing import Optional

from . import _constants as C
from .energy.battery import BatteryMeter
from .policy.context import DeviceState


class DeviceWatch:
    """Cheap, thread-safe device state. The power source is read at most every ``POWER_STATE_TTL_S`` seconds;
    the cloud latency is a running average (weight ``CLOUD_LATENCY_EWMA`` for the newest answer), in seconds."""

    def __init__(self, battery: Optional[BatteryMeter] = None) -> None:
        self.battery = battery or BatteryMeter()
        self._lock = threading.Lock()
        self._power: tuple[float, Optional[bool]] = (float("-inf"), None)
        self._latency_s: Optional[float] = None
        self._prefill_tps: Optional[float] = None

    def on_battery(self) -> Optional[bool]:
        now = time.monotonic()
        with self._lock:
            read_at, value = self._power
            if now - read_at < C.POWER_STATE_TTL_S:
                return value
        value = self.battery.on_battery()
        with self._lock:
            self._power = (now, value)
        return value

    def cloud_answered(self, seconds: float) -> None:
        """Fold one cloud answer's latency (seconds) into the running average."""
        with self._lock:
            old = self._latency_s
            self._latency_s = seconds if old is None else (1 - C.CLOUD_LATENCY_EWMA) * old + C.CLOUD_LATENCY_EWMA * seconds

    def prefill_done(self, tokens: int, seconds: float) -> None:
        """Fold one measured prefill (``tokens`` evaluated in ``seconds``) into the running prefill speed; prefills
        under ``PREFILL_MIN_MEASURED_TOKENS`` are too short to say much and are skipped."""
        if tokens < C.PREFILL_MIN_MEASURED_TOKENS or seconds <= 0:
            return
        with self._lock:
            old, new = self._prefill_tps, tokens / seconds
            self._prefill_tps = new if old is None else (1 - C.PREFILL_RATE_EWMA) * old + C.PREFILL_RATE_EWMA * new

    def prefill_estimate_s(self, tokens: int) -> tuple[float, str]:
        """Seconds a prefill of ``tokens`` should take here, and what that rests on."""
        with self._lock:
            tps = self._prefill_tps
        if tps is None:
            return tokens / C.DEFAULT_PREFILL_TOKENS_PER_S, f"{C.DEFAULT_PREFILL_TOKENS_PER_S:.0f} tokens/s assumed"
        return tokens / tps, f"{tps:.0f} tokens/s measured here"

    def state(self, cloud_reachable: bool) -> DeviceState:
        return DeviceState(self.on_battery(), cloud_reachable, self._latency_s)
