"""The one retry loop: a wrapper around any ``CloudBackend`` (providers never retry on their own).

- Retried: connection failures, timeouts, HTTP 408 / 409 / 429 / 5xx; with exponential backoff and full jitter, or
  the server's Retry-After (seconds, milliseconds or an HTTP date; garbage is ignored) when it fits the deadline.
- Not retried: 400 / 401 / 403 / 422 and other 4xx, and a 2xx whose body is not a chat completion.
- 401 / 403 disable the backend: later calls fail at once, without a request, until a new backend (a new
  configuration) replaces it.
- At most ``1 + max_retries`` requests per call, all within ``deadline_s``.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Generator, Mapping, Sequence
from typing import Any, Callable, Optional

from .._constants import BASE_BACKOFF_S, DEFAULT_CLOUD_DEADLINE_S, DEFAULT_CLOUD_MAX_RETRIES, MAX_BACKOFF_S
from .._errors import CloudAuthError, CloudError, CloudHTTPError, CloudResponseError, ConfigError
from ..messages import Message
from .base import CloudAnswer, CloudBackend

RETRY_STATUS = frozenset({408, 409, 429})


def parse_retry_after(headers: Mapping[str, str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date); None if absent or
    unusable. Negative waits become 0."""
    lower = {k.lower(): v for k, v in headers.items()}
    ms = lower.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
            if value == value and value != float("inf"):
                return max(value, 0.0)
        except ValueError:
            pass
    raw = lower.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
        return max(value, 0.0) if value == value and value != float("inf") else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(when.timestamp() - (now if now is not None else time.time()), 0.0)


def should_retry(error: CloudError) -> bool:
    """True for failures a second attempt may fix: transport errors, timeouts, 408 / 409 / 429 / 5xx."""
    if isinstance(error, (CloudAuthError, CloudResponseError)):
        return False
    if isinstance(error, CloudHTTPError):
        return error.status_code in RETRY_STATUS or 500 <= error.status_code < 600
    return True  # CloudUnreachableError, CloudTimeoutError


def backoff_s(attempt: int, rng: random.Random, base: float = BASE_BACKOFF_S, cap: float = MAX_BACKOFF_S) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)] seconds."""
    return rng.uniform(0.0, min(cap, base * (2.0**attempt)))


class RetryingBackend(CloudBackend):
    """Retries ``inner`` within a deadline. ``sleep``, ``clock`` and ``rng`` are injectable for tests."""

    def __init__(
        self,
        inner: CloudBackend,
        *,
        max_retries: int = DEFAULT_CLOUD_MAX_RETRIES,
        deadline_s: float = DEFAULT_CLOUD_DEADLINE_S,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Optional[random.Random] = None,
    ) -> None:
        if max_retries < 0 or deadline_s <= 0:
            raise ConfigError("max_retries must be >= 0 and deadline_s > 0 seconds")
        self.inner, self.max_retries, self.deadline_s = inner, max_retries, deadline_s
        self.retries, self.breaks = True, inner.breaks
        self.renews_credentials = inner.renews_credentials
        self.passes = inner.passes
        self.name, self.model = inner.name, inner.model
        self._sleep, self._clock, self._rng = sleep, clock, rng or random.Random()
        self._lock = threading.Lock()
        #: Why the backend is disabled (an auth failure), or None.
        self.disabled: Optional[str] = None

    def complete(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0, timeout_s: Optional[float] = None,
        **extra: Any
    ) -> CloudAnswer:
        if self.disabled is not None:
            raise CloudAuthError(f"cloud disabled until its configuration changes: {self.disabled}", status_code=401)
        start = self._clock()
        attempt = 0
        while True:
            try:
                return self.inner.complete(messages, max_tokens=max_tokens, temperature=temperature,
                                           timeout_s=self._left(start, timeout_s), **extra)
            except CloudAuthError as exc:
                if not self.inner.renews_credentials:  # a fixed key stays wrong; a token provider may recover
                    with self._lock:
                        self.disabled = str(exc)
                raise
            except CloudError as exc:
                if not should_retry(exc) or attempt >= self.max_retries:
                    raise
                hinted = getattr(exc, "retry_after_s", None)
                wait = hinted if hinted is not None else backoff_s(attempt, self._rng)
                if self._clock() - start + wait > self.deadline_s:
                    raise _with_message(exc, f"{exc} (not retried: waiting {wait:.1f} s would pass the "
                                             f"{self.deadline_s:g} s deadline)") from exc
                self._sleep(wait)
                attempt += 1

    def stream(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0,
        timeout_s: Optional[float] = None
    ) -> Generator[str, None, CloudAnswer]:
        """Like ``complete``, but once a piece has reached the caller nothing is retried: the error propagates."""
        if self.disabled is not None:
            raise CloudAuthError(f"cloud disabled until its configuration changes: {self.disabled}", status_code=401)
        start = self._clock()
        attempt = 0
        while True:
            sent = 0
            inner = self.inner.stream(messages, max_tokens=max_tokens, temperature=temperature,
                                      timeout_s=self._left(start, timeout_s))
            try:
                while True:
                    try:
                        piece = next(inner)
                    except StopIteration as stop:
                        answer: CloudAnswer = stop.value
                        return answer
                    sent += 1
                    yield piece
            except CloudAuthError as exc:
                if not self.inner.renews_credentials:  # a fixed key stays wrong; a token provider may recover
                    with self._lock:
                        self.disabled = str(exc)
                raise
            except CloudError as exc:
                if sent or not should_retry(exc) or attempt >= self.max_retries:
                    raise
                hinted = getattr(exc, "retry_after_s", None)
                wait = hinted if hinted is not None else backoff_s(attempt, self._rng)
                if self._clock() - start + wait > self.deadline_s:
                    raise
                self._sleep(wait)
                attempt += 1
            finally:
                inner.close()

    def _left(self, start: float, timeout_s: Optional[float]) -> float:
        """What remains of the deadline for the next attempt (seconds), capped by the caller's ``timeout_s``: the
        deadline bounds the whole call, a trickling stream included, not only the waits between attempts."""
        left = max(self.deadline_s - (self._clock() - start), 0.001)
        return left if timeout_s is None else min(left, timeout_s)

    @property
    def reachable(self) -> bool:
        return self.inner.reachable

    def close(self) -> None:
        self.inner.close()


def _with_message(exc: CloudError, message: str) -> CloudError:
    """The same kind of error with a longer message."""
    if isinstance(exc, CloudHTTPError):
        return type(exc)(message, status_code=exc.status_code, retry_after_s=exc.retry_after_s)
    return type(exc)(message)
