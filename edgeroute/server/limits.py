"""The endpoint's limits (``ServerLimits``) and the HTTP protocol that enforces the connection-level ones.

uvicorn's h11 protocol times out a connection only between requests, and any byte restarts that clock; a client
that connects and sends nothing, or sends its request head one byte at a time, would hold the connection forever.
``protocol_with`` adds a deadline for the request head that runs from the connection (or the previous response)
and is not reset by trickled bytes.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Optional

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .. import _constants as C
from .._errors import ConfigError


@dataclass(frozen=True)
class ServerLimits:
    """Limits of ``edgeroute serve`` (seconds, bytes, requests).

    ``header_timeout_s``: a connection must deliver a complete request head within this long of opening (or of the
    previous response); ``keep_alive_s``: an idle kept-open connection is closed after this long;
    ``body_timeout_s``: the whole body must arrive within this long (408 otherwise); ``max_body_bytes``: larger
    bodies get 413; ``max_concurrent``: requests answered at once; ``max_queued``: requests waiting beyond those
    (429 with Retry-After past it); ``ping_s``: a keep-alive comment on an event stream that has been quiet this
    long.
    """

    header_timeout_s: float = C.SERVE_HEADER_TIMEOUT_S
    keep_alive_s: float = C.SERVE_KEEP_ALIVE_S
    body_timeout_s: float = C.SERVE_BODY_TIMEOUT_S
    max_body_bytes: int = C.SERVE_MAX_BODY_BYTES
    max_concurrent: int = C.SERVE_MAX_CONCURRENT
    max_queued: int = C.SERVE_MAX_QUEUED
    ping_s: float = C.SERVE_PING_S

    def __post_init__(self) -> None:
        for name in ("header_timeout_s", "keep_alive_s", "body_timeout_s", "ping_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"ServerLimits.{name} must be positive seconds, got {value!r}")
        for name in ("max_body_bytes", "max_concurrent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ServerLimits.{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.max_queued, bool) or not isinstance(self.max_queued, int) or self.max_queued < 0:
            raise ConfigError(f"ServerLimits.max_queued must be an integer >= 0, got {self.max_queued!r}")


def protocol_with(header_timeout_s: float) -> type:
    """An h11 protocol class whose connections must send a complete request head within ``header_timeout_s``."""

    class HeadDeadlineProtocol(H11Protocol):
        _head_timer: Optional[asyncio.TimerHandle] = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(header_timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _expire(self) -> None:
            self._head_timer = None
            busy = self.cycle is not None and not self.cycle.response_complete
            if not busy and not self.transport.is_closing():
                self.transport.close()  # no complete request head in time: drop the connection silently

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            before = self.cycle
            super().handle_events()
            if self.cycle is not before:  # a request head arrived
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self._arm()

        def send_400_response(self, msg: str) -> None:
            """A request h11 cannot parse (a negative Content-Length, a malformed head): JSON like every other
            error, then the connection closes."""
            body = json.dumps({"error": {"message": f"malformed HTTP request: {msg}", "type": "invalid_request_error",
                                         "param": None, "code": None}}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]
            try:
                for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                              h11.Data(data=body), h11.EndOfMessage()):
                    self.transport.write(self.conn.send(event))
            except h11.LocalProtocolError:  # a response had begun: nothing more can be said on this connection
                pass
            self.transport.close()

        def connection_lost(self, exc: Optional[Exception]) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeadDeadlineProtocol
