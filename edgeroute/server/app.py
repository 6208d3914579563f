"""The ASGI application (Starlette): routes, auth, the body limits, the request cap, and both stream modes.

Every response is JSON (errors in OpenAI's shape), including 404, 405, 408, 413 and 429. A client that goes away
cancels its local generation (at the next token) and its cloud call (at the next piece).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, Optional

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import _constants as C
from .._errors import ConfigError, EdgeRouteError, InputError, UnknownAnswerError
from ..answer import Answer, StreamEvent
from ..router import Router, events_in_thread
from ..policy.sticky import ConversationState, ConversationTable
from ..scrub import scrub
from .limits import ServerLimits
from .render import (
    choice_chunks,
    chunk,
    completion,
    completion_id,
    error_body,
    headers_of,
    routing_metadata,
    usage_of,
)
from .request import ChatRequest, RequestError, parse_chat_request, parse_json

log = logging.getLogger("edgeroute.serve")


def _error(status: int, message: str, kind: str = "invalid_request_error", param: Optional[str] = None, *,
           close: bool = False, headers: Optional[dict[str, str]] = None) -> JSONResponse:
    extra = dict(headers or {})
    # A body left unread (401, 404, 405, 413) is discarded by h11 as it arrives, never parsed as the next request;
    # the connection stays open for it (closing now would reset it under the client, which then never reads this
    # response), and the head timeout bounds how long it may take. A body that stalled (408) closes the connection.
    if close:
        extra["Connection"] = "close"
    return JSONResponse(error_body(message, kind, param), status_code=status, headers=extra)


def _router_error(exc: EdgeRouteError, secrets: tuple[str, ...]) -> JSONResponse:
    """A typed Router error: 400 for bad input (naming the field), 502 for a cloud that failed a cloud-only
    request, 500 for the rest; the message is scrubbed of secrets."""
    message = scrub(f"{type(exc).__name__}: {exc}", secrets)
    if isinstance(exc, InputError):
        return _error(400, message, param=exc.field)
    from .._errors import CloudError

    if isinstance(exc, CloudError):
        return _error(502, message, "cloud_error")
    return _error(500, message, "server_error")


class Gate:
    """At most ``limits.max_concurrent`` requests answered at once and ``limits.max_queued`` waiting."""

    def __init__(self, limits: ServerLimits) -> None:
        self._sem = asyncio.Semaphore(limits.max_concurrent)
        self._room = limits.max_concurrent + limits.max_queued
        self.inside = 0

    def try_enter(self) -> bool:
        if self.inside >= self._room:
            return False
        self.inside += 1
        return True

    async def acquire(self) -> None:
        await self._sem.acquire()

    def leave(self, acquired: bool) -> None:
        self.inside -= 1
        if acquired:
            self._sem.release()


def build_app(router: Router, *, token: Optional[str], model_name: str, limits: ServerLimits) -> Starlette:
    """The endpoint's ASGI app over ``router``."""
    started = time.time()
    gate: dict[str, Gate] = {}  # made on the server's event loop, at the first request
    conversations = ConversationTable(C.SERVE_CONVERSATIONS)  # stickiness by conversation id
    secrets = (token,) if token else ()

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        got = request.headers.get("authorization", "")
        return hmac.compare_digest(got.encode(), f"Bearer {token}".encode())

    async def read_json(request: Request) -> Any:
        """The body as JSON within the size and time limits (``RequestError`` with its status otherwise)."""
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise RequestError("Content-Length is not a number", status=400)
            if int(declared) > limits.max_body_bytes:
                raise RequestError(f"the body is over {limits.max_body_bytes} bytes", status=413)

        async def collect() -> bytes:
            parts, size = [], 0
            async for piece in request.stream():
                size += len(piece)
                if size > limits.max_body_bytes:
                    raise RequestError(f"the body is over {limits.max_body_bytes} bytes", status=413)
                parts.append(piece)
            return b"".join(parts)

        try:
            raw = await asyncio.wait_for(collect(), limits.body_timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(f"the body did not arrive within {limits.body_timeout_s:g} s", status=408) from None
        if not raw:
            raise RequestError("a JSON body is required")
        return parse_json(raw)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": model_name})

    async def models(request: Request) -> Response:
        if not authorized(request):
            return _error(401, "missing or wrong bearer token", "authentication_error")
        data = [{"id": model_name, "object": "model", "created": int(started), "owned_by": "edgeroute",
                 "edgeroute": {"role": "router"}},
                {"id": router.local.name, "object": "model", "created": int(started), "owned_by": "edgeroute",
                 "edgeroute": {"role": "local"}}]
        cloud = router.cloud
        if cloud is not None and cloud.model:
            data.append({"id": cloud.model, "object": "model", "created": int(started), "owned_by": cloud.name,
                         "edgeroute": {"role": "cloud"}})
        return JSONResponse({"object": "list", "data": data})

    async def feedback(request: Request) -> Response:
        if not authorized(request):
            return _error(401, "missing or wrong bearer token", "authentication_error")
        try:
            body = await read_json(request)
        except RequestError as exc:
            return _error(exc.status, str(exc), param=exc.param, close=exc.status == 408)
        answer_id = body.get("id") if isinstance(body, dict) else None
        correct = body.get("correct") if isinstance(body, dict) else None
        note = body.get("note") if isinstance(body, dict) else None
        if not isinstance(answer_id, str) or correct not in (True, False, None) or not isinstance(note, (str, type(None))):
            return _error(400, "feedback needs 'id' (a string), 'correct' (true, false or null) and optionally "
                               "'note' (a string)")
        try:
            learned = await asyncio.to_thread(router.feedback, answer_id.removeprefix("chatcmpl-"), correct, note=note)
        except UnknownAnswerError as exc:
            return _error(404, str(exc), "not_found_error", "id")
        except ConfigError as exc:
            return _error(409, str(exc), "conflict_error")
        except EdgeRouteError as exc:
            return _router_error(exc, secrets)
        return JSONResponse({"id": answer_id, "stored": True, "policy_learned": learned})

    async def chat(request: Request) -> Response:
        if not authorized(request):
            return _error(401, "missing or wrong bearer token", "authentication_error")
        try:
            req = parse_chat_request(await read_json(request), request.headers.get(C.CONVERSATION_HEADER))
        except RequestError as exc:
            return _error(exc.status, str(exc), param=exc.param, close=exc.status == 408)
        g = gate.setdefault("gate", Gate(limits))
        if not g.try_enter():
            return _error(429, "too many requests in flight; retry shortly", "rate_limit_error",
                          headers={"Retry-After": "1"})
        acquired = False
        try:
            await g.acquire()
            acquired = True
            if req.stream:
                return await _stream(router, req, model_name, limits, secrets, lambda: g.leave(True),
                                     conversations.get(req.conversation))
            return await _answer(router, req, request, model_name, secrets, conversations.get(req.conversation))
        finally:
            if not (req.stream and acquired):
                g.leave(acquired)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        if status == 405:
            return _error(405, f"{request.method} is not allowed on {request.url.path}",
                          headers={"Allow": (getattr(exc, "headers", None) or {}).get("Allow", "GET, POST")})
        return _error(status, f"no route {request.method} {request.url.path}", "not_found_error")

    async def crashed(request: Request, exc: Exception) -> Response:
        log.error("edgeroute serve: %s on %s", type(exc).__name__, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__})", "server_error")

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/edgeroute/feedback", feedback, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: not_found, Exception: crashed})


async def _watch_disconnect(request: Request, cancel: threading.Event) -> None:
    """Set ``cancel`` when the client goes away (the body has been read: the next message is the disconnect)."""
    while not cancel.is_set():
        message = await request.receive()
        if message["type"] == "http.disconnect":
            cancel.set()
            return


async def _answer(router: Router, req: ChatRequest, request: Request, model_name: str,
                  secrets: tuple[str, ...], conversation: Optional[ConversationState]) -> Response:
    cancel = threading.Event()
    watcher = asyncio.create_task(_watch_disconnect(request, cancel))
    try:
        answer = await asyncio.to_thread(router.ask, req.messages, max_tokens=req.max_tokens, private=req.private,
                                         cancel=cancel, sampling=req.sampling, cloud_extra=req.extra or None,
                                         conversation=conversation)
    except EdgeRouteError as exc:
        return _router_error(exc, secrets)
    finally:
        watcher.cancel()
    body = completion(answer, model_name)
    body["edgeroute"]["reason"] = scrub(answer.reason, secrets)
    return JSONResponse(body, headers=headers_of(answer))


async def _events(router: Router, req: ChatRequest, cancel: threading.Event,
                  conversation: Optional[ConversationState]) -> AsyncIterator[Any]:
    """The answer's id, then the Router's stream events on the event loop (generation in a worker thread)."""
    stream = router.stream(req.messages, max_tokens=req.max_tokens, private=req.private, cancel=cancel,
                           sampling=req.sampling, cloud_extra=req.extra or None, conversation=conversation)
    yield stream.id
    async for event in events_in_thread(stream, cancel):
        yield event


async def _stream(router: Router, req: ChatRequest, model_name: str, limits: ServerLimits,
                  secrets: tuple[str, ...], done: Any, conversation: Optional[ConversationState]) -> Response:
    """Server-sent events. ``hold`` (default): local text is sent only once the local answer is accepted, and an
    escalation streams the cloud's answer alone. ``live``: local tokens as decoded, then an ``edgeroute`` escalate
    chunk and the cloud's answer (the local text so far is superseded)."""
    cancel = threading.Event()
    events = _events(router, req, cancel, conversation)
    try:
        answer_id = await events.__anext__()
        first = await events.__anext__()  # errors before any output are a plain JSON error
    except EdgeRouteError as exc:
        await events.aclose()
        done()
        return _router_error(exc, secrets)
    except BaseException:
        await events.aclose()
        done()
        raise
    cid, created, live = completion_id(answer_id), int(time.time()), req.stream_mode == "live"

    def data(payload: dict[str, Any]) -> str:
        return json.dumps(payload, ensure_ascii=False, allow_nan=False)

    async def body() -> AsyncIterator[str]:
        held: list[str] = []
        try:
            yield data(chunk(cid, created, model_name, {"role": "assistant", "content": ""}))
            event: Optional[StreamEvent] = first
            while event is not None:
                if event.type == "token" and (live or event.source == "cloud") and not req.extra:
                    yield data(chunk(cid, created, model_name, {"content": event.text}))
                elif event.type == "token":  # held: a local answer until accepted, a pass-through one for good
                    held.append(event.text)
                elif event.type == "escalate":
                    held.clear()  # hold mode: the local text never reaches the client
                    if live:
                        yield data(chunk(cid, created, model_name, {},
                                         extra={"event": "escalate", "reason": scrub(event.text, secrets)}))
                elif event.type == "done" and event.answer is not None:
                    answer: Answer = event.answer
                    if held and answer.route != "cloud":
                        yield data(chunk(cid, created, model_name, {"content": "".join(held)}))
                    for payload in choice_chunks(cid, created, model_name, answer.cloud_choices):
                        yield data(payload)
                    meta = routing_metadata(answer)
                    meta["reason"] = scrub(answer.reason, secrets)
                    finish = (answer.cloud_choices[0].get("finish_reason") if answer.cloud_choices else None) \
                        or answer.finish_reason
                    yield data(chunk(cid, created, model_name, {}, finish, extra=meta,
                                     logprobs=answer.logprobs))
                    if req.include_usage:
                        payload = chunk(cid, created, model_name, {})
                        payload["choices"], payload["usage"] = [], usage_of(answer)
                        yield data(payload)
                    break
                event = await events.__anext__()
            yield "[DONE]"
        except EdgeRouteError as exc:
            yield data(error_body(scrub(f"{type(exc).__name__}: {exc}", secrets), "server_error"))
        finally:
            cancel.set()
            await events.aclose()
            done()

    return EventSourceResponse(body(), ping=limits.ping_s, headers={"Cache-Control": "no-cache"},
                               sep="\n")
