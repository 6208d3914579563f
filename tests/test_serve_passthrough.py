"""Requests only the cloud can honour (tools, n > 1, penalties) go to it with those fields, through `serve` and the
real `openai` client; offline or private they get a 400 naming the field."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest

from edgeroute import Router
from edgeroute.server import EdgerouteServer
from edgeroute.testing import MockLocalModel

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
MSG = [{"role": "user", "content": "Weather in Paris?"}]


class ToolCloud(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ToolCloud.seen.append(body)
        if body.get("tools"):
            choices = [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
                "finish_reason": "tool_calls"}]
        else:
            choices = [{"index": k, "message": {"role": "assistant", "content": f"answer {k}"}, "finish_reason": "stop"}
                       for k in range(body.get("n", 1))]
        data = json.dumps({"model": "tool-cloud", "choices": choices,
                           "usage": {"prompt_tokens": 5, "completion_tokens": 3}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def served():
    cloud = ThreadingHTTPServer(("127.0.0.1", 0), ToolCloud)
    cloud.daemon_threads = True
    threading.Thread(target=cloud.serve_forever, daemon=True).start()
    local = MockLocalModel()
    router = Router(local_model=local, cloud_url=f"http://127.0.0.1:{cloud.server_address[1]}/v1", trace=False,
                    energy=False)
    server = EdgerouteServer(router, port=0)
    server.start_background()
    ToolCloud.seen.clear()
    yield server, local
    server.shutdown()
    server.server_close()
    router.close()
    cloud.shutdown()


def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_tools_go_to_the_cloud_and_the_tool_call_comes_back(served):
    server, local = served
    reply = client(server).chat.completions.create(model="edgeroute", messages=MSG, tools=TOOLS)
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert reply.choices[0].finish_reason == "tool_calls" and local.calls == []
    assert ToolCloud.seen[-1]["tools"] == TOOLS
    meta = reply.model_extra["edgeroute"]
    assert meta["route"] == "cloud" and "cannot honour tools" in meta["reason"]
    chunks = list(client(server).chat.completions.create(model="edgeroute", messages=MSG, tools=TOOLS, stream=True))
    calls = [tc for ch in chunks for tc in (ch.choices[0].delta.tool_calls or []) if ch.choices]
    assert calls and calls[0].function.name == "get_weather"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason][-1] == "tool_calls"


def test_n_choices_come_from_the_cloud(served):
    server, _ = served
    reply = client(server).chat.completions.create(model="edgeroute", messages=MSG, n=3)
    assert [c.message.content for c in reply.choices] == ["answer 0", "answer 1", "answer 2"]
    assert ToolCloud.seen[-1]["n"] == 3


def test_offline_or_private_a_tool_request_is_a_400_naming_the_field():
    router = Router(local_model=MockLocalModel(), local_only=True, trace=False)
    server = EdgerouteServer(router, port=0)
    server.start_background()
    try:
        r = httpx.post(server.url + "/v1/chat/completions", json={"messages": MSG, "tools": TOOLS})
        assert r.status_code == 400 and r.json()["error"]["param"] == "tools" and "cloud" in r.json()["error"]["message"]
        r = httpx.post(server.url + "/v1/chat/completions", json={"messages": MSG, "n": 2, "stream": True})
        assert r.status_code == 400 and r.json()["error"]["param"] == "n"
    finally:
        server.shutdown()
        server.server_close()


def test_private_tool_requests_never_leave(served):
    server, _ = served
    r = httpx.post(server.url + "/v1/chat/completions", json={"messages": MSG, "tools": TOOLS,
                                                              "edgeroute": {"private": True}})
    assert r.status_code == 400 and ToolCloud.seen == []
