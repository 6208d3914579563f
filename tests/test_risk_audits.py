"""Audits against a real OpenAI-compatible server (``llama_cpp.server`` on 127.0.0.1): the share it receives, what is
never sent, offline periods, and a process killed in the middle of an audit."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from edgeroute import Router
from edgeroute.testing import MockLocalModel

pytestmark = [pytest.mark.server]


def _router(server_url, **kw):
    return Router(local_model=MockLocalModel(), cloud_url=server_url, cloud_model="stand-in-cloud", energy=False,
                  signal_names=("perplexity", "tokens"), threshold=kw.pop("threshold", 0.0), **kw)


def _ask(router, prompt, **kw):
    router.local.enqueue("Paris", logprobs=[-0.01])
    return router.ask(prompt, max_tokens=4, **kw)


def _rows(router):
    risk = router._pipeline.parts.risk
    risk.auditor.wait(60)
    conn = sqlite3.connect(router.store.path)
    try:
        return conn.execute("SELECT answer_id, status, pi, why, audit_ms FROM risk_answers ORDER BY rowid").fetchall()
    finally:
        conn.close()


def test_the_server_receives_exactly_the_audited_share_and_never_a_private_or_sensitive_prompt(llama_server):
    with _router(llama_server.base_url, audit_rate=0.5) as router:
        answers = [_ask(router, f"What is the capital of France? ({i})") for i in range(24)]
        assert all(a.route == "local" and a.risk.audit_rate == 0.5 for a in answers)  # never changed by audits
        rows = _rows(router)
        audited = [r for r in rows if r[4] is not None]
        assert len(rows) == 24 and all(r[2] == 0.5 for r in rows)
        assert 3 <= len(audited) <= 21  # a fair coin per answer
        assert llama_server.requests() == len(audited)  # one request per sampled answer, none for the others
        assert {r[1] for r in audited} <= {"labelled", "dropped"} and {r[1] for r in rows if r[4] is None} == {
            "unlabelled"}
        before = llama_server.requests()
        private = _ask(router, "What is the capital of France?", private=True)
        sensitive = _ask(router, "Mail me at jane.doe@example.com: what is the capital of France?")
        tail = _rows(router)[-2:]
        assert llama_server.requests() == before
        assert [r[1] for r in tail] == ["ineligible", "ineligible"] and [r[2] for r in tail] == [0.0, 0.0]
        assert "private" in tail[0][3] and "sensitive" in tail[1][3]
        assert private.route == sensitive.route == "local"
    with Router(local_model=MockLocalModel(), local_only=True, audit_rate=1.0, energy=False, threshold=0.0,
                signal_names=("perplexity",)) as strict:
        answer = _ask(strict, "What is the capital of France?")
        assert answer.risk.status == "unknown" and "no cloud to audit with" in answer.risk.why
        assert _rows(strict)[-1][1] == "ineligible" and "local_only" in _rows(strict)[-1][3]
    assert llama_server.requests() == before


def test_an_offline_period_is_never_audited_and_marks_the_estimate_stale(llama_server):
    with _router(llama_server.base_url, audit_rate=1.0, cloud_max_retries=0) as router:
        for i in range(3):
            _ask(router, f"What is the capital of France? ({i})")
        assert _rows(router)[-1][1] in ("labelled", "dropped")
        llama_server.stop()
        answers = [_ask(router, f"What is 3 + {i}?") for i in range(8)]
        _rows(router)
        answer = _ask(router, "What is 4 + 4?")
        rows = _rows(router)
        assert answer.risk.status == "stale" and "offline" in answer.risk.why
        offline = [r for r in rows[3:] if r[1] == "ineligible"]
        assert offline and all("offline" in r[3] for r in offline)  # the open circuit: not even attempted
        assert all(a.route == "local" for a in answers)


CHILD = textwrap.dedent("""
    import sys, time
    from edgeroute import Router
    from edgeroute.risk.state import RiskState
    from edgeroute.testing import MockCloud, MockLocalModel

    label = RiskState.label
    def acknowledged(self, answer_id, *a, **kw):
        label(self, answer_id, *a, **kw)
        print("ACK", answer_id, flush=True)
    RiskState.label = acknowledged

    class SlowCloud(MockCloud):
        def complete(self, messages, **kw):
            time.sleep(0.3)
            return super().complete(messages, **kw)

    router = Router(local_model=MockLocalModel(), cloud=SlowCloud(default="Paris"), audit_rate=1.0, threshold=0.0,
                    trace_path=sys.argv[1], energy=False, signal_names=("perplexity",))
    i = 0
    while True:
        router.local.enqueue("Paris", logprobs=[-0.01])
        router.ask(f"What is the capital of France? {i}", max_tokens=4)
        i += 1
        time.sleep(0.05)
""")


def test_sigkill_during_an_audit_keeps_every_acknowledged_label(tmp_path):
    path = tmp_path / "trace.db"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ})
    acked = []
    try:
        deadline = time.monotonic() + 60
        while len(acked) < 4 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if line.startswith("ACK"):
                acked.append(line.split()[1])
        time.sleep(0.1)  # the next audit is in flight
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    acked += [line.split()[1] for line in child.stdout.read().splitlines() if line.startswith("ACK")]
    assert len(acked) >= 4
    conn = sqlite3.connect(path)
    status = dict(conn.execute("SELECT answer_id, status FROM risk_answers").fetchall())
    conn.close()
    assert all(status[a] == "labelled" for a in acked)
    assert "pending" in status.values()  # the audit that was cut short
    from edgeroute import _constants as C
    from edgeroute.testing import MockCloud

    old = C.AUDIT_TIMEOUT_S
    C.AUDIT_TIMEOUT_S = 0.0
    try:  # reopened later: the unfinished audit is dropped, the acknowledged labels count
        with Router(local_model=MockLocalModel(), cloud=MockCloud(), audit_rate=1.0, threshold=0.0,
                    trace_path=str(path), energy=False, signal_names=("perplexity",)) as again:
            info = again._pipeline.parts.risk.control.info()
            assert info.labels >= len(acked)
    finally:
        C.AUDIT_TIMEOUT_S = old
