"""Router decisions with the shipped test doubles (the real model and server are in test_real_*.py)."""

import asyncio
import threading

import pytest

from edgeroute import (
    CloudAuthError,
    CloudTimeoutError,
    CloudUnreachableError,
    ConfigError,
    EmptyPromptError,
    GenerationCancelled,
    PromptTooLongError,
    Router,
    UnknownAnswerError,
)
from edgeroute.testing import MockCloud, MockLocalModel

SURE = [-0.01] * 3
UNSURE = [-4.0] * 3


def make(threshold=0.5, *, cloud=True, **kw):
    local = MockLocalModel(n_ctx=kw.pop("n_ctx", 2048))
    mc = MockCloud() if cloud else None
    return Router(local_model=local, cloud=mc, threshold=threshold, **kw), local, mc


def test_confident_local_answer_is_accepted_without_calling_the_cloud():
    router, local, cloud = make()
    local.enqueue("Paris is it", logprobs=SURE)
    a = router.ask("What is the capital of France?")
    assert a.route == "local" and a.text == "Paris is it"
    assert a.confidence is not None and a.confidence >= a.threshold == 0.5
    assert cloud.requests == []
    assert set(a.latency_ms) >= {"prefill", "decode", "signals", "total"}
    assert a.tokens["completion"] == 3
    assert a.energy.method == "estimated" and a.energy.joules is not None and a.energy.joules >= 0.0
    assert a.energy.cloud_wait is None and a.energy.local.scope == "process"


def test_unsure_answer_escalates_and_the_cloud_answer_is_returned():
    router, local, cloud = make()
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    cloud.enqueue("Paris.")
    a = router.ask("What is the capital of France?")
    assert a.route == "cloud" and a.text == "Paris." and a.cloud_model == "mock-cloud-model"
    assert len(cloud.requests) == 1
    assert a.confidence < a.threshold
    assert "cloud" in a.latency_ms and a.tokens["cloud_completion"] == 1


@pytest.mark.parametrize("error", [CloudUnreachableError("refused"), CloudTimeoutError("slow"), CloudAuthError("no", status_code=401)])
def test_cloud_failure_degrades_to_the_local_answer_with_a_reason(error):
    router, local, cloud = make()
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    cloud.enqueue(error)
    a = router.ask("What is the capital of France?")
    assert a.route == "local-offline" and a.text == "Lyon maybe perhaps"
    assert type(error).__name__ in a.reason and "offline" in a.flags
    assert len(cloud.requests) == 1


def test_no_cloud_configured_is_local_offline_and_local_only_is_local():
    router, local, _ = make(cloud=False)
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    a = router.ask("capital of France?")
    assert a.route == "local-offline" and "not configured" in a.reason

    router2, local2, cloud2 = make(local_only=True)
    local2.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    b = router2.ask("capital of France?")
    assert b.route == "local" and "low_confidence" in b.flags and "local_only" in b.reason
    assert cloud2.requests == []


def test_private_prompt_never_reaches_the_cloud():
    router, local, cloud = make()
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    a = router.ask("my password is hunter2, what is it?", private=True)
    assert a.route == "local" and "private" in a.reason
    assert cloud.requests == []


def test_answer_cut_by_the_context_is_flagged_and_escalated_even_when_confident():
    router, local, cloud = make(n_ctx=30)
    local.enqueue(" ".join(["word"] * 20), logprobs=[-0.01] * 20)
    a = router.ask("x " * 20, max_tokens=15)  # 24 prompt tokens leave room for 6 of the 15 asked for
    assert "truncated" in a.flags and a.route == "cloud" and "cut off" in a.reason

    router2, local2, cloud2 = make()
    local2.enqueue(" ".join(["word"] * 20), logprobs=[-0.01] * 20)
    b = router2.ask("count", max_tokens=5)  # cut by max_tokens, not by the context: not truncated
    assert "truncated" not in b.flags and b.route == "local"


LOOP = "The capital is L'Etoile, la Cite," + " la Femme," * 14  # 44 words, the last 28 a loop of period 2


def test_loop_tail_finds_the_longest_repeating_suffix():
    from edgeroute.signals.repetition import ends_in_loop, loop_tail

    assert loop_tail([7] * 30) == (30, 1)
    assert loop_tail([1, 2, 3] + [4, 5, 6] * 9) == (27, 3)
    assert loop_tail([1, 2, 3, 4, 5, 6, 7, 8]) == (0, 0)
    assert loop_tail([1, 2] + [9, 9] + [3]) == (0, 0)  # a repeat that does not reach the end is no loop
    assert loop_tail([5, 6] * 2) == (0, 0)  # two repeats are not enough
    assert ends_in_loop([4, 5, 6] * 8) and not ends_in_loop([4, 5, 6] * 7)  # 24 tokens: the smallest loop
    assert not ends_in_loop(list(range(17)) * 3)  # a 17-token cycle is longer than a loop we look for


def test_an_answer_stuck_in_a_loop_is_escalated_even_when_confident_and_flagged_offline():
    router, local, cloud = make(threshold=0.1)
    local.enqueue(LOOP, logprobs=[-0.01] * 44)
    a = router.ask("What is the capital of France?")
    assert a.route == "cloud" and "repetition" in a.flags and "loop of repeated tokens" in a.reason
    assert a.confidence is not None and a.confidence > a.threshold  # the confidence alone would have accepted it

    offline, local2, _ = make(threshold=0.1, cloud=False)
    local2.enqueue(LOOP, logprobs=[-0.01] * 44)
    b = offline.ask("What is the capital of France?")
    assert b.route == "local-offline" and "repetition" in b.flags and "loop of repeated tokens" in b.reason

    fine, local3, _ = make(threshold=0.1)
    local3.enqueue("one two three, one two three, and that is all", logprobs=[-0.01] * 10)
    assert fine.ask("Count to three twice.").route == "local"


def test_zero_tokens_gives_unknown_confidence_never_nan_and_policy_default_decides():
    router, local, cloud = make()
    local.enqueue("", logprobs=[])
    a = router.ask("say nothing")
    assert a.confidence is None and a.route == "cloud"
    assert "unknown" in a.reason
    assert a.to_json()  # allow_nan=False: would raise on NaN

    router2, local2, cloud2 = make(on_unknown="accept")
    local2.enqueue("", logprobs=[])
    assert router2.ask("say nothing").route == "local"


def test_prompt_too_long_escalates_when_online_and_raises_when_not():
    router, _, cloud = make(n_ctx=64)
    long_prompt = "word " * 200
    a = router.ask(long_prompt)
    assert a.route == "cloud" and "prompt_too_long" in a.flags and len(cloud.requests) == 1

    offline, _, _ = make(n_ctx=64, cloud=False)
    with pytest.raises(PromptTooLongError) as err:
        offline.ask(long_prompt)
    assert err.value.prompt_tokens > 64 and "cannot escalate" in str(err.value)

    failing, _, cloud3 = make(n_ctx=64)
    cloud3.enqueue(CloudUnreachableError("down"))
    with pytest.raises(PromptTooLongError):
        failing.ask(long_prompt)


def test_empty_prompt_is_rejected_before_any_model_call():
    router, local, cloud = make()
    with pytest.raises(EmptyPromptError):
        router.ask("   ")
    assert local.calls == [] and cloud.requests == []


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold": 1.5}, {"connect_timeout_s": -1}, {"no_such_key": 1}, {"cloud_url": "ftp://x"}, {"max_tokens": 0}],
)
def test_invalid_configuration_raises_at_construction(kwargs):
    with pytest.raises(ConfigError):
        Router(local_model=MockLocalModel(), trace=False, **kwargs)


def test_feedback_is_stored_and_unknown_ids_raise(tmp_path):
    router, local, _ = make(trace_path=str(tmp_path / "t.db"))
    a = router.ask("hello there")
    router.feedback(a.id, correct=True)
    row = router.store.get(a.id)
    assert row["feedback"][0]["correct"] is True
    with pytest.raises(UnknownAnswerError):
        router.feedback("not-an-id", correct=False)


def test_stream_yields_local_tokens_then_escalation_then_done():
    router, local, cloud = make()
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    cloud.enqueue("Paris.")
    stream = router.stream("capital of France?")
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds == ["token", "token", "token", "escalate", "token", "done"]
    assert "".join(e.text for e in events[:3]) == "Lyon maybe perhaps"
    assert events[4].source == "cloud" and events[4].text == "Paris."
    assert stream.answer is events[-1].answer and stream.answer.route == "cloud"


def test_closing_a_stream_early_frees_the_model():
    router, local, _ = make()
    local.enqueue("a b c d e f", logprobs=SURE * 2)
    with router.stream("go") as s:
        next(s)
    assert not local.lock.locked()
    assert router.ask("again").route in ("local", "cloud")


def test_cancel_stops_generation_and_next_call_works():
    router, local, _ = make()
    local.token_delay_s = 0.01
    local.enqueue(" ".join(["w"] * 200))
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    with pytest.raises(GenerationCancelled):
        router.ask("long", cancel=cancel)
    assert not local.lock.locked()
    local.token_delay_s = 0.0
    local.enqueue("fine now", logprobs=[-0.01, -0.01])
    assert router.ask("next").text == "fine now"


def test_async_twins():
    router, local, cloud = make()
    local.enqueue("Paris is it", logprobs=SURE)
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)

    async def go():
        a = await router.aask("capital?")
        events = [e async for e in router.astream("capital again?")]
        return a, events

    a, events = asyncio.run(go())
    assert a.route == "local"
    assert events[-1].type == "done" and events[-1].answer.route == "cloud"
