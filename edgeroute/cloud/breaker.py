"""Circuit breaker and offline detection: stop calling a cloud that keeps failing, and find out when it is back.

Closed: calls go through; a failure that says "the cloud is not there" (DNS or connection failure, timeout, 5xx,
429 after retries, a captive portal's HTML instead of JSON) counts, a success resets the count. After
``failures`` consecutive ones the circuit opens: calls fail at once (``CloudUnreachableError``, no request) so the
Router answers locally, flagged offline. After ``cooldown_s`` one caller sends a probe with its own short timeout
(half-open; everyone else still fails fast); success closes the circuit, failure re-opens it with the cooldown
doubled (up to ``max_cooldown_s``). One success is needed to come back and several failures to go away: the
hysteresis that keeps the route from flapping. Client errors (400/422) and auth failures do not count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Sequence
from typing import Any, Callable, Optional

from .._constants import BREAKER_COOLDOWN_S, BREAKER_FAILURES, BREAKER_MAX_COOLDOWN_S, BREAKER_PROBE_TIMEOUT_S
from .._errors import CloudAuthError, CloudError, CloudHTTPError, CloudUnreachableError, ConfigError
from ..messages import Message
from .base import CloudAnswer, CloudBackend


def means_offline(error: CloudError) -> bool:
    """True for failures that suggest the cloud (or the network) is not reachable, rather than a bad request."""
    if isinstance(error, CloudAuthError):
        return False
    if isinstance(error, CloudHTTPError):
        return error.status_code in (408, 429) or error.status_code >= 500
    return True  # unreachable, timeout, and malformed 2xx (captive portals answer 200 with HTML)


class CircuitBreaker(CloudBackend):
    """Wraps ``inner`` (usually a ``RetryingBackend``). ``clock`` is injectable for tests; ``state`` is ``closed``,
    ``open`` or ``half-open``."""

    def __init__(
        self,
        inner: CloudBackend,
        *,
        failures: int = BREAKER_FAILURES,
        cooldown_s: float = BREAKER_COOLDOWN_S,
        max_cooldown_s: float = BREAKER_MAX_COOLDOWN_S,
        probe_timeout_s: float = BREAKER_PROBE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1 or cooldown_s <= 0 or probe_timeout_s <= 0:
            raise ConfigError("breaker failures must be >= 1 and its times > 0 seconds")
        self.inner, self.name, self.model = inner, inner.name, inner.model
        self.retries, self.renews_credentials = inner.retries, inner.renews_credentials
        self.passes = inner.passes
        self.failures, self.base_cooldown_s, self.max_cooldown_s = failures, cooldown_s, max_cooldown_s
        self.probe_timeout_s, self._clock = probe_timeout_s, clock
        self._lock = threading.Lock()
        self._count = 0
        self._cooldown_s = cooldown_s
        self._opened_at: Optional[float] = None
        self._probing = False
        self.last_error = ""

    breaks = True

    @property
    def reachable(self) -> bool:
        """False while the circuit is open."""
        return self.state != "open" and self.inner.reachable

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half-open" if self._probing or self._clock() - self._opened_at >= self._cooldown_s else "open"

    def _admit(self) -> bool:
        """Raise while open; return True when this call is the half-open probe."""
        with self._lock:
            if self._opened_at is None:
                return False
            wait = self._opened_at + self._cooldown_s - self._clock()
            if wait > 0 or self._probing:
                why = "a probe is in flight" if self._probing else f"next probe in {wait:.0f} s"
                raise CloudUnreachableError(
                    f"cloud treated as offline after {self._count} failures ({self.last_error}); {why}"
                )
            self._probing = True
            return True

    def _record(self, probe: bool, exc: Optional[BaseException]) -> None:
        with self._lock:
            self._probing = False
            if exc is None:
                self._count, self._opened_at, self._cooldown_s = 0, None, self.base_cooldown_s
            elif not isinstance(exc, CloudError):
                return
            elif probe and means_offline(exc):  # still away: wait longer before the next probe
                self._opened_at = self._clock()
                self._cooldown_s = min(self._cooldown_s * 2, self.max_cooldown_s)
                self.last_error = type(exc).__name__
            elif probe:  # it answered (with a client error): it is reachable again
                self._count, self._opened_at, self._cooldown_s = 0, None, self.base_cooldown_s
            elif means_offline(exc):
                self._count += 1
                self.last_error = type(exc).__name__
                if self._count >= self.failures:
                    self._opened_at = self._clock()

    def complete(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0,
        timeout_s: Optional[float] = None, **extra: Any
    ) -> CloudAnswer:
        probe = self._admit()
        try:
            answer = self.inner.complete(messages, max_tokens=max_tokens, temperature=temperature,
                                         timeout_s=self.probe_timeout_s if probe else timeout_s, **extra)
        except BaseException as exc:
            self._record(probe, exc)
            raise
        self._record(probe, None)
        return answer

    def stream(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0,
        timeout_s: Optional[float] = None
    ) -> Generator[str, None, CloudAnswer]:
        probe = self._admit()
        try:
            answer = yield from self.inner.stream(messages, max_tokens=max_tokens, temperature=temperature,
                                                  timeout_s=self.probe_timeout_s if probe else timeout_s)
        except BaseException as exc:
            self._record(probe, exc)
            raise
        self._record(probe, None)
        return answer

    def close(self) -> None:
        self.inner.close()
