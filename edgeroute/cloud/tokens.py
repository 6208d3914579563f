"""Short-lived bearer tokens from a provider instead of a shipped API key.

A desktop app cannot ship its vendor's API key; its own backend mints short-lived tokens instead. A *token provider*
is a callable returning the token (a string), ``(token, expires_in_s)``, or ``{"token": ..., "expires_in": ...}``;
``command_provider`` makes one from a command (``cloud_token_command``) that prints either form. ``BearerTokens``
caches the token until shortly before it expires and fetches a new one after a 401.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import threading
import time
from typing import Any, Callable, Optional, Union

from .._errors import CloudAuthError, ConfigError
from ..scrub import scrub

TokenProvider = Callable[[], Union[str, tuple[str, float], dict[str, Any]]]
#: A token is renewed this long before it expires (seconds), or a tenth of its life when that is shorter.
RENEW_MARGIN_S = 5.0
COMMAND_TIMEOUT_S = 15.0


def _parse(value: Any) -> tuple[str, Optional[float]]:
    """(token, expires_in seconds or None) from what a provider returned."""
    if isinstance(value, tuple) and len(value) == 2:
        token, ttl = value
    elif isinstance(value, dict):
        token, ttl = value.get("token") or value.get("access_token"), value.get("expires_in")
    else:
        token, ttl = value, None
    if not isinstance(token, str) or not token.strip() or any(c in token for c in "\r\n"):
        raise CloudAuthError("the token provider returned no usable token", status_code=401)
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0):
        raise CloudAuthError(f"the token provider returned an unusable expires_in {ttl!r}", status_code=401)
    return token.strip(), None if ttl is None else float(ttl)


def command_provider(command: str) -> TokenProvider:
    """A provider that runs ``command`` (no shell) and reads its standard output: a token, or JSON with
    ``token`` (or ``access_token``) and ``expires_in`` (seconds)."""
    argv = shlex.split(command)
    if not argv:
        raise ConfigError("cloud_token_command is empty")

    def run() -> Union[str, dict[str, Any]]:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CloudAuthError(f"cloud_token_command failed: {type(exc).__name__}: {exc}", status_code=401) from None
        out = done.stdout.strip()
        if done.returncode != 0:
            raise CloudAuthError(f"cloud_token_command exited {done.returncode}: "
                                 f"{scrub(done.stderr.strip()[:200], (out,))}", status_code=401)
        if out.startswith("{"):
            try:
                return json.loads(out)  # type: ignore[no-any-return]
            except ValueError:
                raise CloudAuthError("cloud_token_command printed JSON that does not parse", status_code=401) from None
        return out

    return run


class BearerTokens:
    """The current token from ``provider``, fetched when missing, near expiry, or after ``invalidate``.
    ``clock`` is injectable (monotonic seconds)."""

    def __init__(self, provider: TokenProvider, clock: Callable[[], float] = time.monotonic) -> None:
        self._provider, self._clock = provider, clock
        self._lock = threading.Lock()
        self._token: Optional[str] = None
        self._expires: Optional[float] = None
        #: Every token handed out (for scrubbing error texts), most recent last.
        self.seen: list[str] = []
        self.fetches = 0

    def get(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or (self._expires is not None and now >= self._expires):
                try:
                    value = self._provider()
                except CloudAuthError:
                    raise
                except Exception as exc:  # the app's callable: its failure is an auth failure, typed
                    raise CloudAuthError(f"the token provider failed: {type(exc).__name__}: "
                                         f"{scrub(str(exc)[:200])}", status_code=401) from None
                token, ttl = _parse(value)
                self._token = token
                self._expires = None if ttl is None else now + ttl - min(RENEW_MARGIN_S, 0.1 * ttl)
                self.fetches += 1
                self.seen = (self.seen + [token])[-8:]
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None


__all__ = ["BearerTokens", "TokenProvider", "command_provider"]
