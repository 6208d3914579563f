"""The cloud edge against a real loopback HTTP server that misbehaves: it echoes the API key in its errors, sends
malformed stream chunks, or trickles its answer past the deadline. The key appears nowhere; malformed answers
become typed errors with the local fallback; the deadline bounds the whole call."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from edgeroute import CloudResponseError, CloudStreamError, CloudTimeoutError, OpenAICompatBackend, Router
from edgeroute.server import EdgerouteServer
from edgeroute.testing import MockLocalModel

KEY = "sk-live-0123456789abcdefSECRET"
UNSURE = [-3.0] * 3


class Misbehaving(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    dropped: list = []  # when a trickled stream's reader went away

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        auth = self.headers.get("Authorization", "")
        mode = self.path.split("/")[1]
        if mode == "echo":
            msg = f"invalid request; you sent Authorization: {auth} (key {auth.removeprefix('Bearer ')})"
            self._send(400, json.dumps({"error": {"message": msg}}).encode())
        elif mode == "echo401":
            self._send(401, json.dumps({"error": {"message": f"bad key {auth}"}}).encode())
        elif mode in ("content42", "choices5", "delta", "stringchoice"):
            bad = {"content42": {"choices": [{"delta": {"content": 42}}]}, "choices5": {"choices": 5},
                   "delta": {"choices": [{"delta": "x"}]}, "stringchoice": {"choices": ["x"]}}[mode]
            good = {"choices": [{"delta": {"content": "Paris"}}]}
            first = self.path.split("/")[2] == "late"
            events = ([good, bad] if first else [bad])
            body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
            self._send(200, body, "text/event-stream")
        elif mode == "trickle":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            try:
                for i in range(60):
                    self.wfile.write(b"data: " + json.dumps({"choices": [{"delta": {"content": f"w{i} "}}]}).encode()
                                     + b"\n\n")
                    self.wfile.flush()
                    time.sleep(0.25)
            except (BrokenPipeError, ConnectionResetError):
                Misbehaving.dropped.append(time.monotonic())
            self.close_connection = True
        elif mode == "tricklejson":
            body = json.dumps({"choices": [{"message": {"content": "Paris"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for b in body:
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                pass


@pytest.fixture(scope="module")
def bad_cloud():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("mode", ["echo", "echo401"])
def test_an_echoed_key_appears_in_no_answer_response_trace_or_log(bad_cloud, mode, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("EDGEROUTE_TEST_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    local = MockLocalModel()
    router = Router(local_model=local, cloud_url=f"{bad_cloud}/{mode}/v1", cloud_api_key_env="EDGEROUTE_TEST_KEY",
                    trace_path=str(tmp_path / "t.db"), energy=False)
    server = EdgerouteServer(router, port=0)
    server.start_background()
    try:
        local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
        answer = router.ask("Capital of France?")
        assert answer.route == "local-offline" and "cloud failed" in answer.reason  # it did reach the cloud
        local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
        served = httpx.post(server.url + "/v1/chat/completions",
                            json={"messages": [{"role": "user", "content": "Capital of Spain?"}]})
        local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
        streamed = httpx.post(server.url + "/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "Capital of Italy?"}], "stream": True,
            "edgeroute": {"stream": "live"}})
        router.close()
        rows = sqlite3.connect(tmp_path / "t.db").execute("SELECT * FROM decisions").fetchall()
        assert rows and any("redacted" in str(row) for row in rows)
        for text in (answer.to_json(), served.text, streamed.text, str(rows), caplog.text):
            assert KEY not in text and "0123456789abcdef" not in text
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("mode", ["content42", "choices5", "delta", "stringchoice"])
@pytest.mark.parametrize("when", ["early", "late"])
def test_malformed_chunks_are_typed_errors_and_the_router_falls_back(bad_cloud, mode, when):
    backend = OpenAICompatBackend(f"{bad_cloud}/{mode}/{when}/v1", "m")
    expected = CloudStreamError if when == "late" else CloudResponseError
    with pytest.raises(expected):
        list(backend.stream([{"role": "user", "content": "hi"}], max_tokens=8))
    local = MockLocalModel()
    router = Router(local_model=local, cloud=backend, trace=False, energy=False)
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    answer = router.ask("Capital of France?")
    if when == "early":
        assert answer.route == "local-offline" and answer.text == "Lyon maybe perhaps"
    else:  # a piece of the cloud's answer was already out: kept, and flagged partial
        assert answer.route == "cloud" and "partial" in answer.flags
    events = list(router.stream("Capital of France?"))
    assert events[-1].type == "done"


def test_the_deadline_bounds_a_trickling_stream_and_a_trickling_body(bad_cloud):
    local = MockLocalModel()
    router = Router(local_model=local, cloud_url=f"{bad_cloud}/trickle/v1", cloud_deadline_s=2.0, trace=False,
                    energy=False)
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    t = time.monotonic()
    answer = router.ask("Capital of France?")
    took = time.monotonic() - t
    assert took < 4.0 and "partial" in answer.flags and "within 2 s" in answer.reason
    backend = OpenAICompatBackend(f"{bad_cloud}/tricklejson/v1", "m")
    t = time.monotonic()
    with pytest.raises(CloudTimeoutError):
        backend.complete([{"role": "user", "content": "hi"}], max_tokens=8, timeout_s=1.0)
    assert time.monotonic() - t < 2.5
    router.close()


def test_a_client_that_goes_away_cancels_the_cloud_call(bad_cloud):
    local = MockLocalModel()
    router = Router(local_model=local, cloud_url=f"{bad_cloud}/trickle/v1", trace=False, energy=False)
    server = EdgerouteServer(router, port=0)
    server.start_background()
    try:
        local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
        Misbehaving.dropped.clear()
        with httpx.stream("POST", server.url + "/v1/chat/completions", timeout=30, json={
                "messages": [{"role": "user", "content": "Capital of France?"}], "stream": True}) as r:
            for line in r.iter_lines():
                if '"content": "w' in line:  # the cloud's first piece reached us: hang up
                    left = time.monotonic()
                    break
        deadline = time.monotonic() + 5
        while not Misbehaving.dropped and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Misbehaving.dropped and Misbehaving.dropped[0] - left < 3.0  # not the 15 s the cloud would talk
    finally:
        server.shutdown()
        server.server_close()
        router.close()
