"""``edgeroute serve``: an OpenAI-compatible endpoint backed by a Router, on Starlette + uvicorn + sse-starlette.

Routes: ``POST /v1/chat/completions`` (``"stream": true`` gives server-sent events), ``GET /v1/models`` (the
router, the local model and the cloud model), ``GET /health`` (no token needed), and
``POST /v1/edgeroute/feedback`` (``{"id": <a completion's id>, "correct": true}``: stored in the trace, and the
online policy learns from it). It binds 127.0.0.1 unless told otherwise; with ``token`` set, every other request
needs ``Authorization: Bearer <token>``. Limits: ``ServerLimits``. Every completion carries the routing decision in
an ``edgeroute`` field and in ``X-Edgeroute-*`` headers. A request may add ``"edgeroute": {"private": true}``
(never leaves the device) and ``"edgeroute": {"stream": "live"}`` (local tokens as decoded, see ``app``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Optional

import uvicorn

from ..router import Router
from .app import build_app
from .limits import ServerLimits, protocol_with
from .render import completion, routing_metadata

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


class EdgerouteServer:
    """The endpoint over ``router``; ``token`` (optional) guards it; ``port=0`` picks a free port. The socket is
    bound on construction (``url`` is known at once); ``serve_forever`` runs in the calling thread,
    ``start_background`` in a daemon thread; ``shutdown`` then ``server_close`` stop it."""

    def __init__(self, router: Router, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 token: Optional[str] = None, model_name: str = "edgeroute",
                 limits: Optional[ServerLimits] = None) -> None:
        self.router, self.token, self.model_name = router, token, model_name
        self.limits = limits or ServerLimits()
        self.started = time.time()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self._socket.listen(1024)
        self.server_address = self._socket.getsockname()
        app = build_app(router, token=token, model_name=model_name, limits=self.limits)
        config = uvicorn.Config(app, http=protocol_with(self.limits.header_timeout_s), lifespan="off",
                                access_log=False, log_level="warning", timeout_keep_alive=int(max(1, self.limits.keep_alive_s)),
                                timeout_graceful_shutdown=2, h11_max_incomplete_event_size=64 * 1024)
        self._server = uvicorn.Server(config)
        self._thread: Optional[threading.Thread] = None
        for name, level in (("uvicorn.error", logging.ERROR), ("sse_starlette", logging.WARNING)):
            logging.getLogger(name).setLevel(level)  # sse-starlette logs every chunk (answers) at DEBUG

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    @property
    def connections(self) -> int:
        """Open client connections now."""
        state = getattr(self._server, "server_state", None)
        return len(state.connections) if state is not None else 0

    def serve_forever(self) -> None:
        """Serve in this thread until ``shutdown`` (or Ctrl-C, when this is the main thread)."""
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def start_background(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.serve_forever, name="edgeroute-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._thread

    def shutdown(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10.0)

    def server_close(self) -> None:
        self._socket.close()


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "EdgerouteServer", "ServerLimits", "completion", "routing_metadata"]
