"""Hard spend caps that hold across processes (a real loopback cloud counts the requests it gets), and short-lived
bearer tokens from a loopback token server, renewed on expiry and after a 401."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edgeroute import CloudBudgetError, OpenAICompatBackend, Router
from edgeroute.cloud.spend import SpendLedger
from edgeroute.testing import MockLocalModel

UNSURE = [-3.0] * 3


class World:
    """A token server minting tokens that live ``ttl_s`` and a cloud that accepts only live ones."""

    def __init__(self, ttl_s: float = 1.0) -> None:
        self.ttl_s, self.tokens, self.minted, self.requests, self.rejected = ttl_s, {}, 0, 0, 0
        self.lock = threading.Lock()


def make_handler(world: World):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _json(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with world.lock:
                if self.path == "/token":
                    world.minted += 1
                    token = f"tok-{world.minted}-{time.monotonic():.3f}"
                    world.tokens[token] = time.monotonic() + world.ttl_s
                    return self._json(200, {"token": token, "expires_in": world.ttl_s})
                world.requests += 1
                auth = self.headers.get("Authorization", "").removeprefix("Bearer ")
                expires = world.tokens.get(auth)
                if world.ttl_s and (expires is None or expires < time.monotonic()):
                    world.rejected += 1
                    return self._json(401, {"error": {"message": "token expired or unknown"}})
            self._json(200, {"model": "m", "choices": [{"message": {"content": "Paris."}, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": 2}})

    return Handler


@pytest.fixture
def world():
    w = World()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(w))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    w.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield w
    server.shutdown()


def test_request_cap_holds_across_two_processes(world, tmp_path):
    world.ttl_s = 0  # the cloud takes any token here
    script = textwrap.dedent(f"""
        from edgeroute import Router
        from edgeroute.testing import MockLocalModel
        local = MockLocalModel()
        router = Router(local_model=local, cloud_url="{world.url}/v1", trace_path=r"{tmp_path / 't.db'}",
                        cloud_requests_per_minute=3, energy=False, cloud_max_retries=0)
        routes = []
        for i in range(4):
            local.enqueue("Lyon maybe perhaps", logprobs=[-3.0, -3.0, -3.0])
            a = router.ask(f"Capital of France? {{i}}")
            routes.append(a.route + ("/capped" if "cloud_capped" in a.flags else ""))
        print(" ".join(routes))
        router.close()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    routes = outs[0] + outs[1]
    assert world.requests == 3 and routes.count("cloud") == 3  # 8 escalations, 3 allowed in the minute
    assert routes.count("local/capped") + routes.count("local-offline") == 5


def test_daily_budget_reserves_the_worst_case_and_settles_what_was_spent(tmp_path):
    now = [1_800_000_000.0]
    ledger = SpendLedger(tmp_path / "s.db", budget_usd_per_day=0.01, requests_per_minute=None, clock=lambda: now[0])
    row = ledger.reserve(0.008)
    with pytest.raises(CloudBudgetError, match="budget"):
        ledger.reserve(0.003)  # 0.008 reserved + 0.003 > 0.01
    ledger.settle(row, 0.001)
    ledger.reserve(0.003)
    assert "budget" in ledger.blocked(0.007)
    now[0] += 86_400  # the next UTC day
    assert ledger.blocked(0.009) == ""
    ledger.close()


def test_a_capped_router_stays_local_and_says_why(world, tmp_path):
    world.ttl_s = 0
    local = MockLocalModel()
    router = Router(local_model=local, cloud_url=f"{world.url}/v1", trace_path=str(tmp_path / "t.db"),
                    cloud_budget_usd_per_day=0.0, energy=False)
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    answer = router.ask("Capital of France?")
    assert answer.route == "local" and "cloud_budget_usd_per_day" in answer.reason and world.requests == 0
    router.close()


def test_tokens_come_from_the_provider_and_are_renewed_on_expiry_and_after_a_401(world):
    import httpx

    calls = []

    def provider():
        calls.append(1)
        return httpx.post(world.url + "/token").json()

    backend = OpenAICompatBackend(world.url + "/v1", "m", token_provider=provider)
    msgs = [{"role": "user", "content": "hi"}]
    assert backend.complete(msgs, max_tokens=4).text == "Paris."
    assert backend.complete(msgs, max_tokens=4).text == "Paris."  # cached: same token
    assert len(calls) == 1
    time.sleep(1.1)  # expired: within the renew margin, fetched before the request
    assert "".join(backend.stream(msgs, max_tokens=4)) == "Paris."
    assert len(calls) == 2 and world.rejected == 0
    with world.lock:
        world.tokens.clear()  # the server forgets every token: the next request gets a 401, then a fresh token
    assert backend.complete(msgs, max_tokens=4).text == "Paris."
    assert len(calls) == 3 and world.rejected == 1
    backend.close()


def test_a_token_command_in_the_configuration(world, tmp_path):
    script = tmp_path / "mint.py"
    script.write_text(f"import httpx, json; print(json.dumps(httpx.post('{world.url}/token').json()))")
    local = MockLocalModel()
    router = Router(local_model=local, cloud_url=f"{world.url}/v1", trace=False, energy=False,
                    cloud_token_command=f"{sys.executable} {script}")
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    answer = router.ask("Capital of France?")
    assert answer.route == "cloud" and answer.text == "Paris." and world.minted == 1
    router.close()
    bad = Router(local_model=local, cloud_url=f"{world.url}/v1", trace=False, energy=False,
                 cloud_token_command=f"{sys.executable} -c 'import sys; sys.exit(3)'")
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    answer = bad.ask("Capital of France?")
    assert answer.route == "local-offline" and "cloud_token_command exited 3" in answer.reason
    bad.close()
