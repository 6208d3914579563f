"""The risk control's state in the real SQLite trace store: restarts, several writers, damage, feedback, and the
`edgeroute risk` / `calibrate --from-trace` commands."""

from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import run_cli
from edgeroute import Router
from edgeroute.risk import RiskState
from edgeroute.store import TraceStore
from edgeroute.testing import MockCloud, MockLocalModel


def _router(path, cloud, **kw):
    return Router(local_model=MockLocalModel(), cloud=cloud, trace_path=str(path), energy=False,
                  signal_names=("perplexity", "tokens"), threshold=kw.pop("threshold", 0.5), **kw)


def _ask(router, n, text="The capital is Paris", start=0):
    answers = []
    for i in range(start, start + n):
        router.local.enqueue(text, logprobs=[-0.01] * len(text.split()))
        answers.append(router.ask(f"What is the capital of France, case {i}?", max_tokens=8))
    router._pipeline.parts.risk.auditor.wait(10)
    return answers


def test_a_broken_promise_raises_the_threshold_and_the_state_survives_a_restart(tmp_path):
    path = tmp_path / "trace.db"
    with _router(path, MockCloud(default="It is Lyon."), audit_rate=1.0) as router:  # every audit disagrees
        answers = _ask(router, 40)
        risk = router._pipeline.parts.risk
        assert answers[0].risk.threshold == 0.5 and answers[0].risk.audit_rate == 1.0
        after = risk.control.info()
        assert after.threshold > 0.5 and after.drift and "raised" in after.drift
        history = risk.state.history(risk.control.key)
        assert history and history[0]["old"] == 0.5 and history[0]["new"] == pytest.approx(0.55)
        last = _ask(router, 1, start=99)[0]
        assert "drift" in last.flags and last.risk.drift
        # the state as it stands once that answer's audit is in (its label may raise the threshold once more)
        after = risk.control.info()
        history = risk.state.history(risk.control.key)
        before = (risk.control.threshold, risk.control.epoch, risk.control.drift, after.answers, after.labels)
    with _router(path, MockCloud(default="It is Lyon."), audit_rate=1.0) as again:
        risk = again._pipeline.parts.risk
        info = risk.control.info()
        assert (risk.control.threshold, risk.control.epoch, risk.control.drift) == before[:3]
        assert info.answers >= before[3] and info.labels >= before[4]
        assert len(risk.state.history(risk.control.key)) == len(history)
    with TraceStore(path) as store:  # the answer's risk is in the trace too
        row = store.get(last.id)
        assert row["risk"]["threshold"] == last.risk.threshold and row["risk"]["drift"] == last.risk.drift


def test_two_writers_on_one_file_fold_the_same_rows(tmp_path):
    path = tmp_path / "trace.db"
    a = _router(path, MockCloud(default="Paris"), audit_rate=1.0)
    b = _router(path, MockCloud(default="Paris"), audit_rate=1.0)
    try:
        _ask(a, 5), _ask(b, 5, start=10), _ask(a, 5, start=20)
        for r in (a, b):
            r._pipeline.parts.risk.control.refresh()
        ia, ib = (r._pipeline.parts.risk.control.info() for r in (a, b))
        assert ia.answers == ib.answers == 15 and ia.labels == ib.labels == 15 and ia.estimate == 0.0
    finally:
        a.close(), b.close()


def test_feedback_overrides_the_grader(tmp_path):
    path = tmp_path / "trace.db"
    with _router(path, MockCloud(default="Paris"), audit_rate=1.0) as router:
        answers = _ask(router, 3)
        risk = router._pipeline.parts.risk
        assert risk.control.info().estimate == 0.0
        router.feedback(answers[0].id, correct=False)  # the user knows better than the cloud
        risk.auditor.wait(10)
        assert risk.control.info().estimate == pytest.approx(1 / 3)
        with TraceStore(path) as store:
            conn = sqlite3.connect(store.path)
            assert conn.execute("SELECT wrong, label_source FROM risk_answers WHERE answer_id = ?",
                                (answers[0].id,)).fetchone() == (1, "feedback")


@pytest.mark.parametrize("damage", [
    "UPDATE risk_control SET threshold = 'abc'",
    "UPDATE risk_answers SET confidence = 'not a number'",
    "DROP TABLE risk_answers",
])
def test_a_damaged_risk_state_is_reinitialised_with_a_warning(tmp_path, damage):
    path = tmp_path / "trace.db"
    with _router(path, MockCloud(default="Paris"), audit_rate=1.0) as router:
        _ask(router, 3)
    conn = sqlite3.connect(path)
    conn.execute(damage)
    conn.commit()
    conn.close()
    with pytest.warns(RuntimeWarning, match="risk state .* unreadable"):
        router = _router(path, MockCloud(default="Paris"), audit_rate=1.0)
    with router:
        answer = _ask(router, 2, start=10)[-1]
        assert answer.route == "local" and answer.risk.threshold == 0.5
        assert router._pipeline.parts.risk.control.info().answers == 2  # the damaged rows are gone, new ones count


def test_risk_command_and_calibrate_from_trace(tmp_path):
    from edgeroute.local.resolve import default_model_path
    from edgeroute.policy.calibration import calibration_path, load_calibration
    from edgeroute.risk.report import model_sha

    sha = model_sha(str(default_model_path()))
    key = f"{sha[:32]}:cid0000000000000:0.4200"
    with TraceStore() as store:  # the default trace: a device's labelled rows
        state = RiskState(store)
        state.set_control(key, 0.42, "shipped", 1, None, settings=(0.1, 0.05, 0.05))
        for i in range(400):
            conf = 0.3 if i % 4 == 0 else 0.8
            state.add(dict(answer_id=f"a{i}", key=key, epoch=1, created=1.8e9 + i, confidence=conf,
                           threshold=0.42, accepted=int(conf >= 0.42), pi=1.0, status="labelled",
                           wrong=int(conf < 0.5), label_source="escalation", why="test"))
    done = run_cli("risk", "--json", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    entry = next(c for c in found["controls"] if c["key"] == key)
    assert entry["answers"] == 300 and entry["labels"] == 300 and entry["estimate"] == 0.0
    assert entry["upper"] < 0.1 and (tmp_path / "out" / "risk.png").stat().st_size > 1000
    text = run_cli("risk")
    assert "accepted-answer error 0.000" in text.stdout and key in text.stdout
    cal = run_cli("calibrate", "--from-trace", "--epsilon", "0.1", "--json")
    assert cal.returncode == 0, cal.stderr
    out = json.loads(cal.stdout)
    assert out["mode"] == "selective" and 0.3 < out["threshold"] <= 0.8 and out["coverage"] == 0.75
    assert "this device" in out["covers"]
    saved = load_calibration(sha, "cid0000000000000")
    assert saved is not None and saved.threshold == out["threshold"]
    assert str(calibration_path(sha, "cid0000000000000")) == out["saved"]
    strict = run_cli("calibrate", "--from-trace", "--epsilon", "0.001", "--json")
    assert strict.returncode == 2 and "CalibrationError" in strict.stderr


def test_escalations_are_labelled_for_free_and_the_judge_decides_free_text(tmp_path):
    cloud = MockCloud(default="Paris")
    with _router(tmp_path / "t.db", cloud, threshold=0.9, audit_rate=0.0) as router:  # everything escalates
        answers = _ask(router, 3)
        assert all(a.route == "cloud" for a in answers) and len(cloud.requests) == 3  # no audit calls
        rows = RiskState(router.store).labelled("")
        assert [(r[1], r[2], r[3]) for r in rows] == [(1.0, "labelled", 0)] * 3
    judge = "Question: {question}\nAnswer: {answer}\nReference: {reference}\nIs the answer correct? Reply correct or incorrect."
    cloud = MockCloud()
    with _router(tmp_path / "j.db", cloud, threshold=0.0, audit_rate=1.0, audit_judge_prompt=judge) as router:
        cloud.enqueue("Spring arrives with gentle rain and blossoms opening across the quiet fields")
        cloud.enqueue("incorrect")
        router.local.enqueue("Roses bloom", logprobs=[-0.01, -0.01])
        router.ask("Write a line about spring", max_tokens=8)
        router._pipeline.parts.risk.auditor.wait(10)
        assert "Reference: Spring arrives" in cloud.requests[-1][0]["content"]
        row = sqlite3.connect(router.store.path).execute(
            "SELECT status, wrong, label_source, audit_tokens FROM risk_answers").fetchone()
        assert row[:3] == ("labelled", 1, "judge") and row[3] > 0


def test_the_daily_audit_budget_stops_audits_and_says_so(tmp_path):
    cloud = MockCloud(default="Paris")
    with _router(tmp_path / "t.db", cloud, audit_rate=1.0, audit_budget_per_day=3) as router:
        answers = _ask(router, 6)
        assert len(cloud.requests) == 3  # the cap, across the day
        rows = sqlite3.connect(router.store.path).execute("SELECT status, why FROM risk_answers").fetchall()
        assert [s for s, _ in rows].count("labelled") == 3
        assert all("budget is spent" in why for s, why in rows if s == "ineligible")
        assert all(a.route == "local" for a in answers)
    with pytest.raises(Exception, match="audit_rate"):
        Router(local_model=MockLocalModel(), audit_rate=1.5)
    with pytest.raises(Exception, match="audit_judge_prompt"):
        Router(local_model=MockLocalModel(), audit_judge_prompt="{nope}")


def test_without_a_trace_every_answer_still_says_what_it_rests_on():
    with Router(local_model=MockLocalModel(), cloud=MockCloud(), trace=False, audit_rate=1.0, energy=False,
                signal_names=("perplexity",), threshold=0.0) as router:
        router.local.enqueue("Paris", logprobs=[-0.01])
        risk = router.ask("What is the capital of France?").risk
        assert risk.status == "unknown" and "trace=False" in risk.why and risk.threshold == 0.0
        assert router._pipeline.parts.risk.auditor is None
