"""Mid-stream handoff: the prefix score, the engine's watch, the Router's escalation, and where it never applies."""

from __future__ import annotations

import dataclasses

import pytest

from edgeroute import ConfigError, Router
from edgeroute.local.base import drain
from edgeroute.policy.calibration import Calibration, save_calibration
from edgeroute.signals.prefix import PREFIX_FEATURES, HandoffRule, HandoffWatch, PrefixModel, prefix_features
from edgeroute.testing import MockCloud, MockLocalModel

WORDS = " ".join(f"w{i}" for i in range(60))  # 60 distinct words: no loop
CONFIDENT, LOST = -0.1, -5.0  # per-token logprobs (nats)


def recent_nll_model() -> PrefixModel:
    """Score falls as the last 8 tokens' mean NLL rises: ~0.99 at 0.1 nats, ~0.0 at 5 nats."""
    w = [0.0] * len(PREFIX_FEATURES)
    w[PREFIX_FEATURES.index("recent_nll")] = -3.0
    return PrefixModel(tuple(w), 2.0, tuple([0.0] * len(w)), tuple([1.0] * len(w)))


def stats_rule(**kw) -> HandoffRule:
    return HandoffRule(("repetition", "stats"), every=8, floor=0.5, model=recent_nll_model(), **kw)


def lost_after(n: int, total: int = 60) -> list[float]:
    return [CONFIDENT] * n + [LOST] * (total - n)


def test_the_prefix_score_fires_at_the_first_check_after_the_answer_goes_wrong():
    rule, lps = stats_rule(), lost_after(16)
    ids, ents = list(range(60)), [0.5] * 60
    fired = [n for n in range(1, 61) if rule.check(ids[:n], lps[:n], ents[:n])]
    assert fired[0] == 24  # tokens 17-24 are the first full window of lost tokens; 20 is not a check point
    assert rule.check(ids[:16], lps[:16], ents[:16]) is None
    assert "prefix score" in rule.check(ids[:24], lps[:24], ents[:24])
    x = prefix_features(ids[:24], lps[:24], ents[:24])
    assert x[PREFIX_FEATURES.index("recent_nll")] == pytest.approx(5.0)
    assert x[PREFIX_FEATURES.index("mean_nll")] == pytest.approx((16 * 0.1 + 8 * 5.0) / 24)


def test_the_repetition_component_fires_on_a_loop_in_the_prefix():
    rule = HandoffRule(("repetition",))
    loop = [1, 2, 3] * 12  # 36 tokens of "1 2 3"
    assert rule.check(loop[:24], [-0.1] * 24, [0.5] * 24) == "a loop of 24 repeated tokens"
    assert rule.check(list(range(24)), [-0.1] * 24, [0.5] * 24) is None


def test_the_rule_round_trips_and_a_damaged_one_is_a_config_error():
    rule = stats_rule(basis={"n": 500})
    assert HandoffRule.from_dict(rule.to_dict()) == rule
    with pytest.raises(ConfigError):
        HandoffRule.from_dict({"components": ["stats"], "floor": 0.5})  # no model
    with pytest.raises(ConfigError):
        HandoffRule.from_dict({"components": ["telepathy"]})
    bad = rule.to_dict()
    bad["model"]["weights"] = bad["model"]["weights"][:-1]
    with pytest.raises(ConfigError):
        HandoffRule.from_dict(bad)


def test_a_damaged_handoff_section_in_the_calibration_warns_and_answers_complete(tmp_path):
    local = MockLocalModel()
    bad = stats_rule().to_dict()
    bad["model"]["scale"] = [0.0] * len(PREFIX_FEATURES)  # a scale of 0 cannot standardise
    save_calibration(Calibration(0.3, "guarantee", 400, 0.5, 0.05, epsilon=0.1, delta=0.05, model=local.fingerprint,
                                 handoff=bad))
    with pytest.warns(RuntimeWarning, match="ignoring the calibration's handoff rule"):
        router = Router(local_model=local, cloud=MockCloud(), trace=False)
    assert router.handoff is None and router.policy.threshold == 0.3  # the threshold still applies
    local.enqueue(WORDS, logprobs=lost_after(16))
    assert router.ask("What is the capital of Australia?", max_tokens=64).tokens["completion"] == 60


def test_the_mock_engine_stops_decoding_where_the_watch_says():
    local = MockLocalModel()
    local.enqueue(WORDS, logprobs=lost_after(16))
    watch = HandoffWatch(stats_rule())
    g = drain(local.stream([{"role": "user", "content": "q"}], max_tokens=64, watch=watch))
    assert g.completion_tokens == 24 and g.finish_reason == "handoff" and watch.tokens == 24
    assert g.text == " ".join(WORDS.split()[:24])


def routed(tmp_path, *, cloud: MockCloud | None = None, **kw) -> tuple[Router, MockLocalModel]:
    local = MockLocalModel()
    save_calibration(Calibration(0.3, "guarantee", 400, 0.5, 0.05, epsilon=0.1, delta=0.05, model=local.fingerprint,
                                 handoff=stats_rule().to_dict()))
    return Router(local_model=local, cloud=cloud or MockCloud(), trace=False, **kw), local


def test_a_hopeless_prefix_is_handed_to_the_cloud_after_the_check(tmp_path):
    router, local = routed(tmp_path)
    local.enqueue(WORDS, logprobs=lost_after(16))
    events = list(router.stream("What is the capital of Australia?", max_tokens=64))
    kinds = [e.type for e in events]
    local_tokens = [e for e in events if e.type == "token" and e.source == "local"]
    assert len(local_tokens) == 24 and kinds.index("handoff") < kinds.index("escalate")  # stopped, then the cloud
    a = events[-1].answer
    assert a.route == "cloud" and "handoff" in a.flags and a.text == "cloud answer"
    assert a.reason.startswith("escalated: handoff after 24 tokens: prefix score") and a.tokens["completion"] == 24
    local.enqueue(WORDS, logprobs=[CONFIDENT] * 60)  # a confident answer runs to the end and stays local
    b = router.ask("What is the capital of France?", max_tokens=64)
    assert "handoff" not in b.flags and b.tokens["completion"] == 60


class Unreachable(MockCloud):
    """A cloud the backend knows is not there (as an open circuit reports)."""

    @property
    def reachable(self) -> bool:
        return False


@pytest.mark.parametrize("case", ["private", "offline", "local_only", "disabled"])
def test_the_floor_is_never_applied_offline_or_to_private_prompts(tmp_path, case):
    cloud = Unreachable() if case == "offline" else MockCloud()
    kw = {"local_only": True} if case == "local_only" else {"handoff": False} if case == "disabled" else {}
    router, local = routed(tmp_path, cloud=cloud, **kw)
    local.enqueue(WORDS, logprobs=lost_after(16))
    a = router.ask("What is the capital of Australia?", max_tokens=64, private=case == "private")
    assert "handoff" not in a.flags and a.tokens["completion"] == 60  # the answer completed (then judged as usual)
    assert "handoff" not in a.reason


def test_a_cloud_that_fails_after_a_handoff_returns_the_unfinished_answer_flagged(tmp_path):
    from edgeroute import CloudError

    cloud = MockCloud()
    router, local = routed(tmp_path, cloud=cloud, cloud_resilience=False)
    cloud.enqueue(CloudError("HTTP 503"))
    local.enqueue(WORDS, logprobs=lost_after(16))
    a = router.ask("What is the capital of Australia?", max_tokens=64)
    assert a.route == "local-offline" and {"handoff", "offline"} <= set(a.flags)
    assert a.finish_reason == "length" and a.tokens["completion"] == 24  # never "handoff": not an OpenAI reason


# --- the real engine, the shipped rule and a real cloud server ---------------------------------------------------
@pytest.mark.slow
def test_the_shipped_rule_reaches_the_default_model_and_its_watch_stops_the_real_decode(real_model):
    from edgeroute.policy.calibration import load_calibration

    router = Router(local_model=real_model, cloud=MockCloud(), trace=False)
    rule = router.handoff
    assert rule is not None and rule.components == ("stats",) and 0 < rule.floor < 1 and rule.every == 8
    assert load_calibration(real_model.fingerprint, router.calibration.confidence_id).handoff["basis"]["k"] >= 1
    eager = HandoffWatch(HandoffRule(("stats",), 8, 0.999, model=rule.model))  # a floor nothing clears
    g = drain(real_model.stream([{"role": "user", "content": "Write a long story about the sea."}], max_tokens=48,
                                watch=eager))
    assert g.finish_reason == "handoff" and g.completion_tokens == 8 == eager.tokens
    assert len(g.token_logprobs) == 8 and g.text.strip()
    router.close()


@pytest.mark.slow
@pytest.mark.server
def test_a_handoff_on_the_real_model_is_answered_by_a_real_cloud_server(real_model, llama_server, tmp_path):
    shipped = Router(local_model=real_model, cloud=MockCloud(), trace=False)
    cal = shipped.calibration
    shipped.close()
    eager = HandoffRule(("stats",), 8, 0.999, model=shipped.handoff.model)  # the shipped model, a floor nothing clears
    save_calibration(dataclasses.replace(cal, handoff=eager.to_dict()))  # the user's calibration, this test only
    router = Router(local_model=real_model, cloud_url=llama_server.base_url, cloud_model="default", trace=False,
                    pregen=False, max_tokens=48)
    events = list(router.stream("Write a long story about the sea."))
    a = events[-1].answer
    assert a.route == "cloud" and "handoff" in a.flags and a.text.strip()
    assert a.reason.startswith("escalated: handoff after 8 tokens: prefix score")
    assert a.tokens["completion"] == 8 and a.latency_ms["decode"] > 0
    assert [e.type for e in events].count("handoff") == 1
    router.close()


def test_the_online_policy_learns_a_handoff_as_an_escalation_with_the_local_cost_paid(tmp_path):
    from edgeroute.policy.reward import Outcome, components

    local = MockLocalModel(token_delay_s=0.002)
    save_calibration(Calibration(0.3, "guarantee", 400, 0.5, 0.05, epsilon=0.1, delta=0.05, model=local.fingerprint,
                                 handoff=stats_rule().to_dict()))
    router = Router(local_model=local, cloud=MockCloud(), routing="linucb", trace_path=str(tmp_path / "t.db"),
                    pregen=False)
    local.enqueue(WORDS, logprobs=lost_after(16))
    a = router.ask("What is the capital of Australia?", max_tokens=64)
    assert "handoff" in a.flags and a.route == "cloud"
    post = router.policy.bandits["post"]
    assert post.quality.arms["escalate"].n == 1 and post.quality.arms["accept"].n == 0  # learned as an escalation
    state = router.policy._state
    key = router.policy.keys["post"]
    learned = {part: state.updates(f"{key}/{part}")[-1][4] for part in ("energy", "latency")}
    paid = components(Outcome("cloud", a.energy.joules_in("both") or 0.0, a.latency_ms["total"] / 1000.0, 0.0, 0.9))
    assert learned["latency"] == pytest.approx(paid["latency"]) and learned["latency"] > 0.024  # 24 tokens x 2 ms
    assert learned["energy"] == pytest.approx(paid["energy"])
    router.close()


# --- the endpoint -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["hold", "live"])
def test_the_endpoint_streams_a_handoff_as_an_escalation(tmp_path, mode):
    import openai

    from edgeroute.server import EdgerouteServer

    cloud = MockCloud()
    router, local = routed(tmp_path, cloud=cloud)
    server = EdgerouteServer(router, port=0)
    server.start_background()
    try:
        local.enqueue(WORDS, logprobs=lost_after(16))
        cloud.enqueue("Canberra.")
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        chunks = list(client.chat.completions.create(
            model="edgeroute", messages=[{"role": "user", "content": "Capital of Australia?"}], stream=True,
            max_tokens=64, extra_body={"edgeroute": {"stream": mode}}))
    finally:
        server.shutdown()
        server.server_close()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    meta = chunks[-1].model_extra["edgeroute"]
    assert meta["route"] == "cloud" and "handoff" in meta["flags"] and "handoff after 24 tokens" in meta["reason"]
    events = [c.model_extra.get("edgeroute", {}).get("event") for c in chunks if c.model_extra]
    if mode == "hold":
        assert text == "Canberra." and "escalate" not in events  # the client sees the cloud's answer only
    else:  # the 24 local words went out as decoded, then the escalate event supersedes them
        assert text == " ".join(WORDS.split()[:24]) + "Canberra." and "escalate" in events
