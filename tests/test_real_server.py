"""Escalation over real HTTP: a real llama_cpp.server on 127.0.0.1 stands in for the cloud."""

import pytest

from edgeroute import Router

pytestmark = [pytest.mark.slow, pytest.mark.server]


def test_escalated_query_comes_back_from_the_server_then_offline_when_it_stops(real_model, llama_server, tmp_path):
    router = Router(
        local_model=real_model,
        cloud_url=llama_server.base_url,
        cloud_model="stand-in-cloud",
        threshold=1.0,  # every local answer is below it: always escalate
        connect_timeout_s=2.0,
        read_timeout_s=60.0,
        trace_path=str(tmp_path / "t.db"),
    )
    try:
        a = router.ask("What is the capital of France?", max_tokens=24)
        assert a.route == "cloud", a.reason
        assert a.text.strip() and a.tokens["cloud_completion"] > 0 and a.latency_ms["cloud"] > 0
        assert router.store.get(a.id)["route"] == "cloud"
        # Device-side cost of waiting: this thread's CPU time while blocked on the socket, far below generating.
        wait = a.energy.cloud_wait
        assert wait is not None and wait.method == "estimated" and wait.scope == "thread"
        assert wait.window_s == pytest.approx(a.latency_ms["cloud"] / 1000, rel=0.2, abs=0.01)
        assert 0.0 <= wait.joules < a.energy.local.joules
        assert a.energy.joules == pytest.approx(a.energy.local.joules + wait.joules)

        # the escalation streams: the real server's SSE pieces reach the caller one by one
        events = list(router.stream("Name three colours.", max_tokens=24))
        cloud_tokens = [e.text for e in events if e.type == "token" and e.source == "cloud"]
        answer = events[-1].answer
        assert answer.route == "cloud" and len(cloud_tokens) >= 2 and "".join(cloud_tokens) == answer.text

        llama_server.stop()
        b = router.ask("What is the capital of France?", max_tokens=24)
        assert b.route == "local-offline" and "offline" in b.flags
        assert "CloudUnreachableError" in b.reason
        assert b.text.strip()
    finally:
        router.close()
