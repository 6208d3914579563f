"""`edgeroute serve` at its edges: every bad request gets a JSON error (and the server keeps answering), request
smuggling, idle / slow / oversized connections, the request cap, client disconnects, and OpenAI semantics
(finish_reason, ids, hold and live streaming, logprobs, stop, sampling)."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import openai
import pytest

from edgeroute import Router
from edgeroute.server import EdgerouteServer, ServerLimits
from edgeroute.testing import MockCloud, MockLocalModel

SURE, UNSURE = [-0.01] * 3, [-3.0] * 3
URL = "/v1/chat/completions"
MSG = [{"role": "user", "content": "Capital of France?"}]


def serve(router, **kw):
    server = EdgerouteServer(router, port=0, **kw)
    server.start_background()
    return server


@pytest.fixture
def served():
    local, cloud = MockLocalModel(token_delay_s=0.001), MockCloud()
    router = Router(local_model=local, cloud=cloud, trace=False)
    server = serve(router, limits=ServerLimits(header_timeout_s=1.0, body_timeout_s=1.0, keep_alive_s=1.0))
    yield server, local, cloud
    server.shutdown()
    server.server_close()


def client(server, **kw):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, **kw)


BAD = [
    ({"messages": MSG, "max_tokens": "abc"}, "max_tokens"),
    ({"messages": MSG, "max_tokens": [1]}, "max_tokens"),
    ({"messages": MSG, "max_tokens": -5}, "max_tokens"),
    ({"messages": MSG, "max_tokens": 0}, "max_tokens"),
    ({"messages": MSG, "max_completion_tokens": 1.5}, "max_completion_tokens"),
    ({"messages": MSG, "max_tokens": True}, "max_tokens"),
    ({"messages": MSG, "edgeroute": 5}, "edgeroute"),
    ({"messages": MSG, "stream": "false"}, "stream"),
    ({"messages": MSG, "edgeroute": "private"}, "edgeroute"),
    ({"messages": MSG, "edgeroute": {"stream": "sometimes"}}, "edgeroute.stream"),
    ({"messages": MSG, "temperature": "hot"}, "temperature"),
    ({"messages": MSG, "temperature": 3}, "temperature"),
    ({"messages": MSG, "top_p": 0}, "top_p"),
    ({"messages": MSG, "stop": 5}, "stop"),
    ({"messages": MSG, "seed": "x"}, "seed"),
    ({"messages": MSG, "logprobs": "yes"}, "logprobs"),
    ({"messages": MSG, "top_logprobs": 3}, "top_logprobs"),
    ({"messages": MSG, "response_format": {"type": "xml"}}, "response_format"),
    ({"messages": "hello"}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
    ({"model": 7, "messages": MSG}, "model"),
]


@pytest.mark.parametrize("body,param", BAD, ids=[p for _, p in BAD])
def test_every_bad_field_is_a_400_naming_it_and_the_server_keeps_answering(served, body, param, capfd):
    server, _, _ = served
    r = httpx.post(server.url + URL, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and param.split("[")[0] in error["message"]
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    assert "Traceback" not in capfd.readouterr().err


def test_nan_and_deep_nesting_and_non_json_are_400s(served, capfd):
    server, _, _ = served
    for raw in (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": NaN}',
                b"[" * 100_000 + b"]" * 100_000, b"{not json", b"\xff\xfe", b"[1]"):
        r = httpx.post(server.url + URL, content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["message"], raw[:20]
    assert httpx.get(server.url + "/health").status_code == 200
    assert "Traceback" not in capfd.readouterr().err


def test_methods_and_routes_answer_json(served):
    server, _, _ = served
    for method in ("PUT", "DELETE", "PATCH"):
        r = httpx.request(method, server.url + URL, json={})
        assert r.status_code == 405 and r.headers["content-type"] == "application/json" and "POST" in r.headers["allow"]
        assert r.json()["error"]["message"]
    r = httpx.get(server.url + "/nope")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    assert httpx.get(server.url + "/health?x=1").status_code == 200
    r = httpx.post(server.url + URL, content=b"x" * (4 * 1024 * 1024 + 1))
    assert r.status_code == 413 and r.json()["error"]["message"]
    for head in (b"Content-Length: -1\r\n", b"Content-Length: abc\r\n", b""):  # bad, bad, missing
        out = _raw(server, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n", wait_s=1.5)
        assert out.startswith(b"HTTP/1.1 400") and b"application/json" in out and b'"error"' in out, out[:200]
    assert httpx.get(server.url + "/health").status_code == 200


def test_finish_reason_ids_and_feedback_by_a_streamed_id(tmp_path):
    local, cloud = MockLocalModel(), MockCloud()
    router = Router(local_model=local, cloud=cloud, trace_path=str(tmp_path / "t.db"), energy=False)
    server = serve(router)
    try:
        c = client(server)
        local.enqueue("one two three four five", logprobs=[-0.01] * 5)
        reply = c.chat.completions.create(model="edgeroute", messages=MSG, max_tokens=2)
        assert reply.choices[0].finish_reason == "length" and reply.choices[0].message.content == "one two"
        local.enqueue("one two", logprobs=SURE[:2])
        assert c.chat.completions.create(model="edgeroute", messages=MSG).choices[0].finish_reason == "stop"
        local.enqueue("alpha beta gamma", logprobs=SURE)
        chunks = list(c.chat.completions.create(model="edgeroute", messages=MSG, stream=True))
        assert len({ch.id for ch in chunks}) == 1
        answer_id = chunks[-1].model_extra["edgeroute"]["id"]
        assert chunks[0].id == f"chatcmpl-{answer_id}"
        r = httpx.post(server.url + "/v1/edgeroute/feedback", json={"id": chunks[0].id, "correct": True})
        assert r.status_code == 200 and router.store.get(answer_id)["feedback"][0]["correct"] == 1
    finally:
        server.shutdown()
        server.server_close()
        router.close()


def test_escalated_stream_in_hold_mode_is_the_cloud_answer_alone_and_live_mode_marks_the_switch(served):
    server, local, cloud = served
    c = client(server)
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    cloud.enqueue("Paris is the capital.")
    chunks = list(c.chat.completions.create(model="edgeroute", messages=MSG, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == "Paris is the capital."
    assert chunks[-1].model_extra["edgeroute"]["route"] == "cloud"
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    cloud.enqueue("Paris.")
    chunks = list(c.chat.completions.create(model="edgeroute", messages=MSG, stream=True,
                                            extra_body={"edgeroute": {"stream": "live"}}))
    events = [(ch.model_extra.get("edgeroute") or {}).get("event") for ch in chunks]
    k = events.index("escalate")
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks[:k]) == "Lyon maybe perhaps"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks[k:]) == "Paris."


def test_logprobs_stop_and_sampling_are_honoured(served):
    server, local, _ = served
    c = client(server)
    local.enqueue("red green blue", logprobs=[-0.04, -0.02, -0.01])
    reply = c.chat.completions.create(model="edgeroute", messages=MSG, logprobs=True, top_logprobs=2)
    content = reply.choices[0].logprobs.content
    assert [t.logprob for t in content] == [-0.04, -0.02, -0.01] and len(content[0].top_logprobs) == 2
    local.enqueue("red green, blue", logprobs=SURE)
    reply = c.chat.completions.create(model="edgeroute", messages=MSG, stop=[","])
    assert reply.choices[0].message.content == "red green" and reply.choices[0].finish_reason == "stop"
    local.enqueue("red green blue", logprobs=SURE)
    reply = c.chat.completions.create(model="edgeroute", messages=MSG, temperature=0.8, seed=3)
    assert "uncalibrated" in reply.model_extra["edgeroute"]["flags"]
    risk = reply.model_extra["edgeroute"]["risk"]  # what the confidence rests on travels with the completion
    assert risk["threshold"] == reply.model_extra["edgeroute"]["threshold"] and risk["status"] in ("unknown", "collecting")
    local.enqueue("red green, blue", logprobs=SURE)
    chunks = list(c.chat.completions.create(model="edgeroute", messages=MSG, stop=",", stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "red green"
    assert chunks[-1].usage.completion_tokens == 2


def _raw(server, data: bytes, wait_s: float = 1.5) -> bytes:
    host, port = server.server_address[:2]
    with socket.create_connection((host, port)) as s:
        s.sendall(data)
        s.settimeout(wait_s)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return out


@pytest.mark.parametrize("first", ["POST /nope HTTP/1.1", "POST /v1/chat/completions HTTP/1.1", "PUT /health HTTP/1.1",
                                   "413 POST /v1/chat/completions HTTP/1.1"])
def test_the_body_of_a_rejected_request_is_never_read_as_the_next_request(first):
    router = Router(local_model=MockLocalModel(), local_only=True, trace=False)
    too_big = first.startswith("413 ")
    first = first.removeprefix("413 ")
    server = serve(router, token="s3cret" if "completions" in first and not too_big else None,
                   limits=ServerLimits(header_timeout_s=1.0, keep_alive_s=1.0, max_body_bytes=16))
    try:
        inner = (b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        head = f"{first}\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(inner)}\r\n\r\n"
        out = _raw(server, head.encode() + inner)
        assert out.count(b"HTTP/1.1 ") == 1, out
    finally:
        server.shutdown()
        server.server_close()


def test_idle_and_slow_connections_are_closed_and_nothing_is_left_behind(served):
    server, _, _ = served
    baseline_threads = threading.active_count()
    host, port = server.server_address[:2]
    idle = [socket.create_connection((host, port)) for _ in range(300)]
    slow = socket.create_connection((host, port))
    slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n")  # the rest of the head never comes
    time.sleep(0.2)
    assert server.connections >= 250
    deadline = time.monotonic() + 10
    while server.connections and time.monotonic() < deadline:
        slow.sendall(b"X")  # a byte at a time does not keep a head alive
        time.sleep(0.2)
    assert server.connections == 0
    for s in idle[:20] + [slow]:
        s.settimeout(2)
        try:
            assert s.recv(10) == b""  # closed by the server
        except ConnectionResetError:
            pass
    for s in idle + [slow]:
        s.close()
    assert threading.active_count() <= baseline_threads
    # a body shorter than its Content-Length: 408 once the body timeout passes
    out = _raw(server, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}", wait_s=4)
    assert out.startswith(b"HTTP/1.1 408") and b'"error"' in out
    assert httpx.get(server.url + "/health").status_code == 200


def test_requests_past_the_queue_get_429_with_retry_after():
    local = MockLocalModel(token_delay_s=0.05)
    router = Router(local_model=local, local_only=True, trace=False)
    server = serve(router, limits=ServerLimits(max_concurrent=1, max_queued=0))
    try:
        slow = threading.Thread(target=httpx.post, args=(server.url + URL,),
                                kwargs={"json": {"messages": [{"role": "user", "content": "a " * 40}]}, "timeout": 30})
        slow.start()
        time.sleep(0.3)
        r = httpx.post(server.url + URL, json={"messages": MSG})
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and r.json()["error"]["type"] == "rate_limit_error"
        slow.join()
        assert httpx.post(server.url + URL, json={"messages": MSG}).status_code == 200
    finally:
        server.shutdown()
        server.server_close()


class CountingLocal(MockLocalModel):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.pieces = 0

    def stream(self, *args, **kw):
        gen = super().stream(*args, **kw)
        try:
            while True:
                piece = next(gen)
                self.pieces += 1
                yield piece
        except StopIteration as stop:
            return stop.value


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_goes_away_stops_the_local_generation(stream):
    local = CountingLocal(token_delay_s=0.02)
    router = Router(local_model=local, local_only=True, trace=False)
    server = serve(router)
    try:
        body = json.dumps({"messages": [{"role": "user", "content": "w " * 200}], "stream": stream,
                           "max_tokens": 500}).encode()
        host, port = server.server_address[:2]
        s = socket.create_connection((host, port))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(0.5)
        s.close()
        time.sleep(0.5)
        seen = local.pieces
        time.sleep(0.5)
        assert local.pieces == seen < 100  # stopped long before the 200 words
        assert local.lock.acquire(timeout=2)
        local.lock.release()
    finally:
        server.shutdown()
        server.server_close()


def test_a_quiet_stream_gets_keep_alive_comments():
    local = MockLocalModel(token_delay_s=0.15)
    router = Router(local_model=local, local_only=True, trace=False)
    server = serve(router, limits=ServerLimits(ping_s=0.2))
    try:
        body = {"messages": [{"role": "user", "content": "w " * 12}], "stream": True}  # hold mode: quiet ~2 s
        with httpx.stream("POST", server.url + URL, json=body, timeout=30) as r:
            lines = list(r.iter_lines())
        assert any(line.startswith(":") for line in lines) and lines[-1] in ("data: [DONE]", "")
        assert "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                       for line in lines if line.startswith("data: {")) == ("w " * 12).strip()
    finally:
        server.shutdown()
        server.server_close()
