"""``edgeroute serve``: an OpenAI-compatible endpoint backed by a Router (standard library HTTP server).

Routes: ``POST /v1/chat/completions`` (``"stream": true`` gives server-sent events), ``GET /v1/models``,
``GET /health``, and ``POST /v1/edgeroute/feedback`` (``{"id": <edgeroute.id of a completion>, "correct": true}``:
stored in the trace, and the online policy learns from it). It binds 127.0.0.1 unless told otherwise; with ``token`` set, every request needs
``Authorization: Bearer <token>``. Each connection runs in its own thread: local generations are serialised by the
Router, cloud calls run concurrently. Every completion carries the routing decision in an ``edgeroute`` field and
in ``X-Edgeroute-*`` headers (route, confidence, energy).
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

from ._errors import ConfigError, EdgeRouteError, InputError, UnknownAnswerError
from .answer import Answer
from .router import Router

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_BODY_BYTES = 4 * 1024 * 1024


def routing_metadata(answer: Answer) -> dict[str, Any]:
    """The ``edgeroute`` field of a completion: where it ran, why, how sure, and what it cost the device."""
    return {
        "id": answer.id,
        "route": answer.route,
        "reason": answer.reason,
        "confidence": answer.confidence,
        "threshold": answer.threshold,
        "flags": list(answer.flags),
        "latency_ms": dict(answer.latency_ms),
        "energy": {"joules": answer.energy.joules, "method": answer.energy.method, "source": answer.energy.source},
    }


def _headers(answer: Answer) -> dict[str, str]:
    e = answer.energy
    return {
        "X-Edgeroute-Route": answer.route,
        "X-Edgeroute-Confidence": "" if answer.confidence is None else f"{answer.confidence:.4f}",
        "X-Edgeroute-Energy-J": "" if e.joules is None else f"{e.joules:.4f}",
        "X-Edgeroute-Energy-Method": e.method,
    }


def completion(answer: Answer, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{answer.id}",
        "object": "chat.completion",
        "created": int(answer.created),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": answer.tokens.get("prompt", 0),
            "completion_tokens": answer.tokens.get("completion", 0) or answer.tokens.get("cloud_completion", 0),
            "total_tokens": answer.tokens.get("prompt", 0)
            + (answer.tokens.get("completion", 0) or answer.tokens.get("cloud_completion", 0)),
        },
        "edgeroute": routing_metadata(answer),
    }


class _Handler(BaseHTTPRequestHandler):
    server: "EdgerouteServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: prompts must not reach logs
        pass

    # --- plumbing ---------------------------------------------------------------------------------------------
    def _send_json(self, status: int, body: dict[str, Any], headers: Optional[dict[str, str]] = None) -> None:
        data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send_json(status, {"error": {"message": message, "type": kind}})

    def _router_error(self, exc: EdgeRouteError) -> None:
        """A typed Router error as an OpenAI-style error: 400 for bad input, 500 for the rest."""
        if isinstance(exc, InputError):
            self._error(HTTPStatus.BAD_REQUEST, f"{type(exc).__name__}: {exc}")
        else:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}", "server_error")

    def _authorized(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        got = self.headers.get("Authorization", "")
        if hmac.compare_digest(got.encode(), f"Bearer {token}".encode()):
            return True
        self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token", "authentication_error")
        return False

    # --- routes -----------------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if self.path == "/health":
            self._send_json(HTTPStatus.OK, {"status": "ok", "model": self.server.model_name})
        elif self.path == "/v1/models":
            if self._authorized():
                self._send_json(HTTPStatus.OK, {"object": "list", "data": [
                    {"id": self.server.model_name, "object": "model", "created": int(self.server.started),
                     "owned_by": "edgeroute"}]})
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}")

    def _body(self) -> Optional[dict[str, Any]]:
        """The request's JSON object, or None after answering 400 / 413."""
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY_BYTES:
            self._error(HTTPStatus.BAD_REQUEST if length <= 0 else HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"a JSON body of 1 to {MAX_BODY_BYTES} bytes is required")
            return None
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._error(HTTPStatus.BAD_REQUEST, "body must be a JSON object (a completion request has a 'messages' list)")
            return None
        return body

    def do_POST(self) -> None:
        if self.path not in ("/v1/chat/completions", "/v1/edgeroute/feedback"):
            self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}")
            return
        if not self._authorized():
            return
        body = self._body()
        if body is None:
            return
        if self.path == "/v1/edgeroute/feedback":
            self._feedback(body)
            return
        messages = body.get("messages")
        if not isinstance(messages, list):
            self._error(HTTPStatus.BAD_REQUEST, "body must be JSON with a 'messages' list")
            return
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        private = bool((body.get("edgeroute") or {}).get("private", False)) if isinstance(body, dict) else False
        if body.get("stream"):
            self._stream(messages, max_tokens, private)
            return
        try:
            answer = self.server.router.ask(messages, max_tokens=max_tokens, private=private)
        except EdgeRouteError as exc:
            self._router_error(exc)
            return
        self._send_json(HTTPStatus.OK, completion(answer, self.server.model_name), _headers(answer))

    def _feedback(self, body: dict[str, Any]) -> None:
        answer_id, correct, note = body.get("id"), body.get("correct"), body.get("note")
        if not isinstance(answer_id, str) or correct not in (True, False, None) or not isinstance(note, (str, type(None))):
            self._error(HTTPStatus.BAD_REQUEST, "feedback needs 'id' (a string), 'correct' (true, false or null) and "
                                                "optionally 'note' (a string)")
            return
        try:
            learned = self.server.router.feedback(answer_id.removeprefix("chatcmpl-"), correct, note=note)
        except UnknownAnswerError as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc))
        except ConfigError as exc:
            self._error(HTTPStatus.CONFLICT, str(exc))
        except EdgeRouteError as exc:
            self._router_error(exc)
        else:
            self._send_json(HTTPStatus.OK, {"id": answer_id, "stored": True, "policy_learned": learned})

    def _stream(self, messages: Any, max_tokens: Optional[int], private: bool) -> None:
        """Server-sent events in OpenAI's chunk format; an escalation sends the cloud's answer after a chunk whose
        ``edgeroute.event`` is ``escalate`` (the local text so far is superseded)."""
        try:
            events = self.server.router.stream(messages, max_tokens=max_tokens, private=private)
            first = next(events)
        except EdgeRouteError as exc:
            self._router_error(exc)
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        cid, created, model = f"chatcmpl-{int(time.time() * 1000)}", int(time.time()), self.server.model_name

        def chunk(delta: dict[str, Any], finish: Optional[str] = None, extra: Optional[dict[str, Any]] = None) -> None:
            payload: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created,
                                       "model": model, "choices": [{"index": 0, "delta": delta,
                                                                    "finish_reason": finish}]}
            if extra:
                payload["edgeroute"] = extra
            self.wfile.write(b"data: " + json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n\n")
            self.wfile.flush()

        try:
            chunk({"role": "assistant", "content": ""})
            event = first
            while True:
                if event.type == "token":
                    chunk({"content": event.text})
                elif event.type == "escalate":
                    chunk({}, extra={"event": "escalate", "reason": event.text})
                elif event.type == "done" and event.answer is not None:
                    chunk({}, "stop", routing_metadata(event.answer))
                    break
                event = next(events)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away: closing the stream stops local generation at the next token
        except EdgeRouteError as exc:
            chunk({}, "error", {"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        finally:
            events.close()


class EdgerouteServer(ThreadingHTTPServer):
    """The HTTP server; ``router`` answers, ``token`` (optional) guards it. ``port=0`` picks a free port."""

    daemon_threads = True

    def __init__(self, router: Router, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 token: Optional[str] = None, model_name: str = "edgeroute") -> None:
        self.router, self.token, self.model_name, self.started = router, token, model_name, time.time()
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{name}:{port}"

    def start_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="edgeroute-serve", daemon=True)
        thread.start()
        return thread
