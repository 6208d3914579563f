"""The online policy: reward, context, guardrail, no exploration offline, feedback exactly once, persistence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from edgeroute import ConfigError, Router
from edgeroute._errors import PolicyError
from edgeroute.policy.context import POST_FEATURES, PRE_FEATURES, DeviceState, Situation, post_context, pre_context
from edgeroute.policy.linucb import LinUCB
from edgeroute.policy.online import LinUCBPolicy
from edgeroute.policy.reward import Outcome, RewardWeights, reward
from edgeroute.policy.state import PolicyState
from edgeroute.store import TraceStore
from edgeroute.testing import MockCloud, MockLocalModel

Q = [{"role": "user", "content": "What is the capital of France?"}]
ONLINE = DeviceState(None, True, 1.0)
OFFLINE = DeviceState(None, False, None)


def post(conf: float, device: DeviceState = ONLINE) -> Situation:
    return Situation(Q, {"probe_confidence": conf, "mean_nll": 0.5}, conf, device=device)


def teach(policy: LinUCBPolicy, point: str, arm: str, x: np.ndarray, r: float, times: int) -> None:
    """``arm`` earns quality ``r`` at no cost, ``times`` times."""
    for _ in range(times):
        policy.bandits[point].update(arm, x, {"quality": r, "energy": 0.0, "latency": 0.0, "cost": 0.0})


# --- reward --------------------------------------------------------------------------------------------------
def test_reward_is_quality_minus_weighted_costs_in_reference_units():
    w = RewardWeights(energy=0.5, latency=0.2, cost=1.0)
    o = Outcome("cloud", joules=10.0, seconds=2.0, dollars=0.0002, quality=1.0)
    assert reward(o, w) == pytest.approx(1.0 - 0.5 * 10 / 5 - 0.2 * 2 / 1 - 1.0 * 0.0002 / 0.0001)  # -2.4
    assert reward(o, w, quality=0.0) == pytest.approx(-3.4)
    with pytest.raises(PolicyError):
        reward(Outcome("local", 1.0, 1.0, 0.0, None), w)
    with pytest.raises(PolicyError):
        reward(o, w, quality=1.5)


def test_presets_differ_where_they_should_and_can_be_overridden():
    saver, first, cost = (RewardWeights.preset(p) for p in ("battery-saver", "quality-first", "cost-saver"))
    assert saver.energy > first.energy and cost.cost > saver.cost and first.latency < saver.energy
    assert RewardWeights.preset("balanced", energy=2.0).energy == 2.0
    with pytest.raises(ConfigError, match="presets"):
        RewardWeights.preset("turbo")
    with pytest.raises(ConfigError):
        RewardWeights(energy=-1.0, latency=0.0, cost=0.0)
    with pytest.raises(ConfigError):
        RewardWeights(energy=float("nan"), latency=0.0, cost=0.0)


# --- context -------------------------------------------------------------------------------------------------
def test_contexts_follow_their_layouts_and_mark_unknown_signals():
    x = pre_context(Situation(Q))
    assert x.shape == (len(PRE_FEATURES),) and x[PRE_FEATURES.index("bias")] == 1.0
    assert x[PRE_FEATURES.index("pregen")] == 0.5 and x[PRE_FEATURES.index("pregen_known")] == 0.0
    y = post_context(Situation(Q, {"probe_confidence": 0.9, "selfref": float("nan")}, 0.8,
                               device=DeviceState(True, False, 30.0)))
    assert y.shape == (len(POST_FEATURES),) and np.all(np.isfinite(y)) and np.all((0 <= y) & (y <= 1))
    named = dict(zip(POST_FEATURES, y))
    assert named["probe"] == 0.9 and named["probe_known"] == 1.0
    assert named["selfref"] == 0.5 and named["selfref_known"] == 0.0  # NaN counts as unknown
    assert named["confidence"] == 0.8 and named["on_battery"] == 1.0 and named["cloud_reachable"] == 0.0
    assert named["cloud_latency_s"] == 1.0  # clipped


# --- decisions -----------------------------------------------------------------------------------------------
def test_guardrail_escalates_below_the_threshold_whatever_the_bandit_prefers():
    p = LinUCBPolicy(0.6, warmup=0)
    x = post_context(post(0.4))
    teach(p, "post", "accept", x, 1.0, 50)
    teach(p, "post", "escalate", x, -1.0, 50)
    assert p.bandits["post"].select(x, p.weights) == "accept"
    d = p.judge("a", post(0.4))
    assert d.escalate and "guardrail" in d.reason
    opted_in = LinUCBPolicy(0.6, warmup=0, allow_below_threshold=True)
    teach(opted_in, "post", "accept", x, 1.0, 50)
    teach(opted_in, "post", "escalate", x, -1.0, 50)
    assert not opted_in.judge("a", post(0.4)).escalate


def test_an_answer_stuck_in_a_loop_is_escalated_whatever_the_bandit_prefers():
    from dataclasses import replace

    p = LinUCBPolicy(0.3, warmup=0)
    x = post_context(post(0.95))
    teach(p, "post", "accept", x, 1.0, 50)
    teach(p, "post", "escalate", x, -1.0, 50)
    assert not p.judge("a", post(0.95)).escalate
    d = p.judge("b", replace(post(0.95), repeating=True))
    assert d.escalate and "loop of repeated tokens" in d.reason


def test_no_exploration_while_the_cloud_is_unreachable():
    p = LinUCBPolicy(0.3, warmup=0, alpha=5.0)
    x = post_context(post(0.9))
    teach(p, "post", "accept", x, 0.8, 200)  # accept: well known, 0.8; escalate: never tried, huge bonus
    assert p.judge("online", post(0.9)).escalate  # online, optimism explores the unknown arm
    d = p.judge("offline", post(0.9, OFFLINE))
    assert not d.escalate and "no exploration" in d.reason


def test_warm_up_follows_the_threshold_rules_then_hands_over():
    p = LinUCBPolicy(0.5, warmup=3, cloud_quality_prior=None)
    for i in range(3):
        assert p.before(f"w{i}", Situation(Q, device=ONLINE), lambda: 0.9) is None  # the probe's threshold decides
        d = p.judge(f"w{i}", post(0.7))
        assert not d.escalate and "warming up" in d.reason
        p.settle(f"w{i}", Outcome("local", 1.0, 0.5, 0.0, None))
        assert p.feedback(f"w{i}", 1.0)
    assert not p.warming_up
    assert p.before("next", Situation(Q, device=ONLINE), lambda: 0.9) is not None
    assert "LinUCB" in p.judge("next", post(0.7)).reason


def test_the_probe_runs_only_when_its_value_could_change_the_choice():
    p = LinUCBPolicy(0.5, warmup=0)
    calls: list[int] = []

    def probe() -> float:
        calls.append(1)
        return 0.7

    p.before("a", Situation(Q, device=ONLINE), probe)
    assert calls == [1]  # nothing learned yet: the probe's value matters
    base = pre_context(Situation(Q, device=ONLINE))
    for v in np.linspace(0, 1, 11):
        x = base.copy()
        x[PRE_FEATURES.index("pregen")], x[PRE_FEATURES.index("pregen_known")] = v, 1.0
        teach(p, "pre", "cloud", x, 0.9, 30)
        teach(p, "pre", "local", x, -0.5, 30)
    d = p.before("b", Situation(Q, device=ONLINE), probe)
    assert d is not None and d.escalate and "probe skipped" in d.reason and calls == [1]


# --- learning from feedback ----------------------------------------------------------------------------------
def _answered(p: LinUCBPolicy, aid: str, route: str, quality=None) -> None:
    p.before(aid, Situation(Q, device=ONLINE), lambda: 0.8)
    if route != "cloud-direct":
        p.judge(aid, post(0.8))
    p.settle(aid, Outcome("cloud" if route.startswith("cloud") else "local", 2.0, 0.5, 0.0, quality))


def updates(p: LinUCBPolicy) -> dict[str, int]:
    return {f"{pt}:{arm}": s.n for pt, b in p.bandits.items() for arm, s in b.quality.arms.items()}


def test_no_update_without_a_reward_and_never_two_for_one_answer():
    p = LinUCBPolicy(0.5, warmup=0)
    _answered(p, "a", "local")
    assert sum(updates(p).values()) == 0  # a local answer waits for its quality
    assert p.feedback("a", 1.0)
    assert updates(p) == {"pre:local": 1, "pre:cloud": 0, "post:accept": 1, "post:escalate": 0}
    before = {c: m.to_dict() for c, m in p.bandits["post"].models.items()}
    assert not p.feedback("a", 0.0)  # a second verdict teaches nothing
    assert {c: m.to_dict() for c, m in p.bandits["post"].models.items()} == before
    assert not p.feedback("never-seen", 1.0)
    with pytest.raises(PolicyError):
        p.feedback("a", float("nan"))


def test_cloud_answers_learn_from_the_prior_at_once_or_wait_without_one():
    p = LinUCBPolicy(0.5, warmup=0)  # prior 0.9
    _answered(p, "c", "cloud-direct")
    assert updates(p)["pre:cloud"] == 1 and not p.feedback("c", 0.0)
    _answered(p, "e", "cloud")  # generated locally, then escalated
    assert updates(p)["post:escalate"] == 1 and updates(p)["pre:local"] == 1
    q = LinUCBPolicy(0.5, warmup=0, cloud_quality_prior=None)
    _answered(q, "c", "cloud-direct")
    assert sum(updates(q).values()) == 0 and q.feedback("c", 1.0) and updates(q)["pre:cloud"] == 1


def test_a_verifier_quality_learns_at_settle():
    p = LinUCBPolicy(0.5, warmup=0)
    _answered(p, "v", "local", quality=0.25)
    assert updates(p)["post:accept"] == 1
    predicted = p.bandits["post"].predict(post_context(post(0.8)))["accept"]
    assert predicted["quality"] > 0 and predicted["energy"] > 0  # learned quality 0.25 and 2 J, separately


# --- persistence ---------------------------------------------------------------------------------------------
def test_state_and_pending_decisions_survive_a_restart(tmp_path):
    path = tmp_path / "t.sqlite3"
    with TraceStore(path) as store:
        p = LinUCBPolicy(0.5, warmup=0, model_key="m", store=store)
        for i in range(130):  # crosses a snapshot (every 100 updates)
            _answered(p, f"a{i}", "local")
            assert p.feedback(f"a{i}", float(i % 3 == 0))
        _answered(p, "late", "local")  # answered now, feedback after the restart
        saved = {(pt, c): m.to_dict() for pt, b in p.bandits.items() for c, m in b.models.items()}
    with TraceStore(path) as store:
        again = LinUCBPolicy(0.5, warmup=0, model_key="m", store=store)
        for pt, b in again.bandits.items():
            for c, m in b.models.items():
                for arm, s in m.arms.items():
                    np.testing.assert_allclose(s.a, saved[pt, c]["arms"][arm]["a"], rtol=1e-12)
                    np.testing.assert_allclose(s.b, saved[pt, c]["arms"][arm]["b"], rtol=1e-12, atol=1e-15)
                    assert list(s.drift) == pytest.approx(saved[pt, c]["arms"][arm]["drift"])
        assert again.feedback("late", 1.0) and not again.feedback("late", 1.0)
        other = LinUCBPolicy(0.5, warmup=0, model_key="another-model", store=store)
        assert sum(updates(other).values()) == 0  # state is per local model


def test_a_corrupt_or_misshapen_saved_state_is_reinitialised_with_a_warning(tmp_path):
    path = tmp_path / "t.sqlite3"
    with TraceStore(path) as store:
        p = LinUCBPolicy(0.5, warmup=0, model_key="m", store=store)
        _answered(p, "a", "local")
        p.feedback("a", 1.0)
        with store.transaction() as conn:
            conn.execute("UPDATE policy_state SET state = '{not json' WHERE key = 'm:post/quality'")
            conn.execute("UPDATE policy_state SET features = '[\"bias\"]' WHERE key = 'm:pre/quality'")
    with TraceStore(path) as store, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = LinUCBPolicy(0.5, warmup=0, model_key="m", store=store)
        messages = " ".join(str(w.message) for w in caught)
        assert "m:post" in messages and "m:pre" in messages and "re-initialised" in messages
        assert sum(updates(again).values()) == 0
        _answered(again, "b", "local")
        assert again.feedback("b", 1.0)  # and it learns again
    with TraceStore(path) as store, warnings.catch_warnings():
        warnings.simplefilter("error")  # the re-initialised state loads cleanly
        assert sum(updates(LinUCBPolicy(0.5, warmup=0, model_key="m", store=store)).values()) == 2


def test_a_non_positive_definite_state_is_rejected():
    d = LinUCB(["a"], 2).to_dict()
    d["arms"]["a"]["a"] = [[1.0, 0.0], [0.0, -1.0]]
    with pytest.raises(PolicyError):
        LinUCB.from_dict(d)
    with pytest.raises(PolicyError):
        LinUCB.from_dict({"dim": 2})


WRITER = textwrap.dedent("""
    import sys
    from edgeroute.store import TraceStore
    from edgeroute.policy.online import LinUCBPolicy
    from edgeroute.policy.context import Situation, DeviceState
    from edgeroute.policy.reward import Outcome
    p = LinUCBPolicy(0.3, warmup=5, model_key="m", store=TraceStore(sys.argv[1]))
    i = 0
    while True:
        aid = f"a{i}"
        q = [{"role": "user", "content": f"question {i}?"}]
        p.before(aid, Situation(q, {"pregen_confidence": (i % 10) / 10}, device=DeviceState(None, True, 1.0)))
        d = p.judge(aid, Situation(q, {"probe_confidence": 0.5}, 0.35 + (i % 7) / 10,
                                   device=DeviceState(None, True, 1.0)))
        route = "cloud" if d.escalate else "local"
        p.settle(aid, Outcome(route, 1.0 + i % 3, 0.5, 0.0001 if route == "cloud" else 0.0, None))
        if route == "local":
            assert p.feedback(aid, float(i % 2))
        print("ack", aid, flush=True)
        i += 1
""")


def test_a_writer_killed_mid_run_loses_no_acknowledged_update(tmp_path):
    path = tmp_path / "t.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    acked = []
    assert proc.stdout is not None
    for line in proc.stdout:
        acked.append(line.split()[1])
        if len(acked) == 240:
            break
    os.kill(proc.pid, signal.SIGKILL)  # mid-run: maybe mid-transaction
    proc.wait(timeout=30)
    with TraceStore(path) as store:
        state = PolicyState(store)
        pre_log = state.updates("m:pre/quality")
        assert set(acked) <= {aid for _, aid, _, _, _ in pre_log}  # every acknowledged answer was learned
        assert [s for s, *_ in pre_log] == list(range(1, len(pre_log) + 1))  # no gap, no duplicate
        reopened = LinUCBPolicy(0.3, model_key="m", store=store)
        for point in ("pre", "post"):
            for part, model in reopened.bandits[point].models.items():
                replayed = LinUCB(model.arms, model.dim, alpha=model.alpha, discount=model.discount,
                                  change=model.change)
                for _, _, arm, x, r in state.updates(f"m:{point}/{part}"):
                    replayed.update(arm, x, r)
                for arm, s in model.arms.items():  # snapshot + tail == the whole log, replayed
                    np.testing.assert_allclose(s.a, replayed.arms[arm].a, rtol=1e-9)
                    np.testing.assert_allclose(s.b, replayed.arms[arm].b, rtol=1e-9, atol=1e-12)
                    assert s.n == replayed.arms[arm].n and s.changes == replayed.arms[arm].changes


# --- in the Router -------------------------------------------------------------------------------------------
def make_router(tmp_path, **kw):
    local, cloud = MockLocalModel(), MockCloud()
    router = Router(local_model=local, cloud=cloud, routing="linucb", threshold=0.3, energy=False,
                    trace_path=str(tmp_path / "t.sqlite3"), **kw)
    return router, local, cloud


def test_router_learns_from_feedback_once_and_keeps_it_across_restarts(tmp_path):
    router, local, cloud = make_router(tmp_path)
    learned = []
    for i in range(8):
        local.enqueue("Paris it is", logprobs=[-0.01] * 3)
        a = router.ask(f"What is the capital of France, take {i}?")
        learned.append(router.feedback(a.id, True))
        assert router.feedback(a.id, True) is False  # stored in the trace, not learned twice
        assert len(router.store.get(a.id)["feedback"]) == 2
    n = sum(updates(router.policy).values())
    assert n >= 8 and any(learned)
    router.close()
    again, _, _ = make_router(tmp_path)
    assert sum(updates(again.policy).values()) == n
    again.close()


def test_router_verifier_learns_at_once(tmp_path):
    seen = []

    def verifier(messages, text):
        seen.append(text)
        return 1.0 if "Paris" in text else 0.0

    router, local, cloud = make_router(tmp_path, verifier=verifier)
    local.enqueue("Paris it is", logprobs=[-0.01] * 3)
    a = router.ask("What is the capital of France?")
    assert seen == [a.text] and sum(updates(router.policy).values()) >= 1
    assert router.feedback(a.id, True) is False  # the verifier's quality was the one update
    router.close()


def test_router_never_explores_when_the_cloud_cannot_be_used(tmp_path):
    store = TraceStore(tmp_path / "t.sqlite3")
    policy = LinUCBPolicy(0.3, warmup=0, alpha=5.0, store=store, model_key="mock-local-model")
    local, cloud = MockLocalModel(), MockCloud()
    router = Router(local_model=local, cloud=cloud, policy=policy, store=store, energy=False)
    local.enqueue("Paris it is", logprobs=[-0.01] * 3)
    a = router.ask("What is the capital of France?", private=True)
    assert a.route == "local" and cloud.requests == []
    assert "no exploration" in a.reason  # greedy: the untried arms' optimism does not count
    router.close()
    store.close()


def test_bad_verifier_output_is_a_warning_not_a_lost_answer(tmp_path):
    router, local, _ = make_router(tmp_path, verifier=lambda m, t: 7.0)
    local.enqueue("Paris it is", logprobs=[-0.01] * 3)
    a = router.ask("What is the capital of France?")
    assert a.text and any("verifier failed" in w for w in a.warnings)
    router.close()


def test_linucb_routing_needs_the_trace_store():
    with pytest.raises(ConfigError, match="trace"):
        Router(local_model=MockLocalModel(), cloud=MockCloud(), routing="linucb", trace=False, energy=False)
    with pytest.raises(ConfigError, match="routing"):
        Router(local_model=MockLocalModel(), routing="bandit", trace=False)


def test_cli_feedback_teaches_the_policy_of_an_earlier_process(tmp_path, monkeypatch, capsys):
    from edgeroute import cli

    router, local, _ = make_router(tmp_path)
    local.enqueue("Paris it is", logprobs=[-0.01] * 3)
    a = router.ask("What is the capital of France?")
    router.close()
    # the CLI builds its own Router from options: give it the same doubles and trace file
    import edgeroute.router as r

    real_init = r.Router.__init__

    def init(self, *args, **kw):
        kw.setdefault("local_model", MockLocalModel())
        kw.setdefault("cloud", MockCloud())
        kw["energy"] = False
        kw["trace_path"] = str(tmp_path / "t.sqlite3")
        kw["threshold"] = 0.3
        real_init(self, *args, **kw)

    monkeypatch.setattr(r.Router, "__init__", init)
    assert cli.main(["feedback", a.id, "good", "--routing", "linucb"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"answer_id": a.id, "correct": True, "policy_learned": True}  # the pending decision was on disk


def test_a_change_of_lambdas_applies_at_once_with_nothing_to_unlearn():
    # the parts are learned separately: quality 0.9 for 40 J in the cloud, 0.5 for 2 J locally
    p = LinUCBPolicy(0.0, warmup=0, alpha=0.0, weights=RewardWeights.preset("quality-first"))
    for i in range(200):
        aid = f"a{i}"
        p.before(aid, Situation(Q, {"pregen_confidence": 0.5}, device=ONLINE))
        if i % 2:
            p.settle(aid, Outcome("cloud", 40.0, 1.0, 0.0, 0.9))
        else:
            p.judge(aid, post(0.8))
            p.settle(aid, Outcome("local", 2.0, 1.0, 0.0, 0.5))
    situation = Situation(Q, {"pregen_confidence": 0.5}, device=ONLINE)
    parts = p.bandits["pre"].predict(pre_context(situation))
    assert parts["cloud"]["energy"] == pytest.approx(8.0, rel=0.05) and parts["local"]["quality"] == pytest.approx(0.5, abs=0.05)
    assert p.before("q1", situation).escalate  # quality first: the cloud
    p.weights = RewardWeights.preset("battery-saver")
    d = p.before("q2", situation)
    assert not d.escalate  # the same evidence, the new lambdas: local, without a single new answer
