"""Streaming escalation (RELIABILITY row 23): cloud tokens reach the caller as they arrive; a stream that breaks
after tokens were sent is never retried silently; before any token, the usual retry and fallback apply."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from edgeroute import CloudResponseError, CloudStreamError, CloudUnreachableError, OpenAICompatBackend, Router
from edgeroute.cloud.retry import RetryingBackend
from edgeroute.testing import MockCloud, MockLocalModel

MSGS = [{"role": "user", "content": "hi"}]
UNSURE = [-3.0, -3.0, -3.0]


def sse(*chunks: object, done: bool = True) -> bytes:
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks] + (["data: [DONE]\n\n"] if done else [])
    return "".join(lines).encode()


def delta(text: str, finish=None) -> dict:
    return {"model": "m", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


class Broken(httpx.SyncByteStream):
    """Sends ``head`` then drops the connection."""

    def __init__(self, head: bytes) -> None:
        self.head = head

    def __iter__(self):
        yield self.head
        raise httpx.ReadError("connection reset by peer")


def scripted(*responses):
    sent, queue = [], list(responses)

    def handler(request):
        sent.append(json.loads(request.content))
        return queue.pop(0) if len(queue) > 1 else queue[0]

    inner = OpenAICompatBackend("http://cloud.test/v1", "m", transport=httpx.MockTransport(handler))
    return RetryingBackend(inner, sleep=lambda s: None, rng=random.Random(0)), sent


EVENT_STREAM = {"content-type": "text/event-stream"}


def drain(gen):
    pieces = []
    while True:
        try:
            pieces.append(next(gen))
        except StopIteration as stop:
            return pieces, stop.value


def test_sse_pieces_arrive_in_order_in_one_request():
    cloud, sent = scripted(httpx.Response(200, headers=EVENT_STREAM,
                                          content=sse(delta("Par"), delta("is"), delta(".", "stop"))))
    pieces, answer = drain(cloud.stream(MSGS, max_tokens=8))
    assert pieces == ["Par", "is", "."] and answer.text == "Paris." and answer.finish_reason == "stop"
    assert len(sent) == 1 and sent[0]["stream"] is True


def test_a_dropped_connection_after_tokens_is_not_retried():
    cloud, sent = scripted(httpx.Response(200, headers=EVENT_STREAM, stream=Broken(sse(delta("Par"), done=False))),
                           httpx.Response(200, headers=EVENT_STREAM, content=sse(delta("Paris."))))
    gen = cloud.stream(MSGS, max_tokens=8)
    assert next(gen) == "Par"
    with pytest.raises(CloudStreamError, match="broke after 1 pieces"):
        next(gen)
    assert len(sent) == 1


def test_an_sse_error_event_is_a_stream_error():
    cloud, sent = scripted(httpx.Response(200, headers=EVENT_STREAM,
                                          content=sse(delta("Pa"), {"error": {"message": "overloaded"}})))
    with pytest.raises(CloudStreamError, match="overloaded"):
        drain(cloud.stream(MSGS, max_tokens=8))
    assert len(sent) == 1


def test_failures_before_the_first_token_are_retried_as_usual():
    cloud, sent = scripted(httpx.Response(503), httpx.Response(200, headers=EVENT_STREAM, content=sse(delta("ok"))))
    assert drain(cloud.stream(MSGS, max_tokens=8))[1].text == "ok" and len(sent) == 2


def test_a_server_that_ignores_stream_and_a_captive_portal():
    body = {"model": "m", "choices": [{"message": {"content": "hello"}, "finish_reason": "stop"}]}
    cloud, _ = scripted(httpx.Response(200, json=body))
    pieces, answer = drain(cloud.stream(MSGS, max_tokens=8))
    assert pieces == ["hello"] and answer.text == "hello" and answer.finish_reason == "stop"
    portal, sent = scripted(httpx.Response(200, text="<html>log in to the hotel wifi</html>",
                                           headers={"content-type": "text/html"}))
    with pytest.raises(CloudResponseError, match="neither an event stream nor JSON"):
        drain(portal.stream(MSGS, max_tokens=8))
    assert len(sent) == 1


def test_router_streams_the_escalation_token_by_token():
    local, cloud = MockLocalModel(), MockCloud()
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    cloud.enqueue_stream(["The ", "capital ", "is ", "Paris."])
    events = list(Router(local_model=local, cloud=cloud, trace=False).stream("Capital of France?"))
    kinds = [(e.type, e.source) for e in events]
    assert kinds == [("token", "local")] * 3 + [("escalate", "cloud")] + [("token", "cloud")] * 4 + [("done", "")]
    assert events[-1].answer.text == "The capital is Paris." and events[-1].answer.route == "cloud"


def test_router_flags_a_partial_cloud_answer_and_never_retries_it():
    local, cloud = MockLocalModel(), MockCloud()
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    cloud.enqueue_stream(["The ", "capital "], CloudStreamError("connection reset"))
    a = Router(local_model=local, cloud=cloud, trace=False).ask("Capital of France?")
    assert a.route == "cloud" and a.text == "The capital " and "partial" in a.flags
    assert "stream broke" in a.reason and len(cloud.requests) == 1


def test_router_keeps_the_local_answer_when_the_cloud_fails_before_any_token():
    local, cloud = MockLocalModel(), MockCloud()
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    cloud.enqueue_stream([], CloudUnreachableError("refused"))
    events = list(Router(local_model=local, cloud=cloud, trace=False).stream("Capital of France?"))
    assert "escalate" not in [e.type for e in events]
    answer = events[-1].answer
    assert answer.route == "local-offline" and answer.text == "Lyon maybe perhaps" and "partial" not in answer.flags
