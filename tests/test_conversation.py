"""Conversations: history fitted to the local window, stickiness after an escalation, turns linked in the trace,
the prefill budget, and the context window sized from the GGUF (issue 22). Test doubles; the real model is in
test_real_conversation.py."""

import pytest

from edgeroute import ConfigError, PromptTooLongError, Router, TraceStore
from edgeroute.history import split_turns
from edgeroute.history.latest import LatestTurns
from edgeroute.history.summarize import PREFIX, SummarizeOlder
from edgeroute.local.context_size import bytes_per_token, choose
from edgeroute.local.resolve import resolve_model_path
from edgeroute.policy.context import POST_FEATURES, PRE_FEATURES, Situation, pre_context
from edgeroute.policy.linucb import LinUCB
from edgeroute.testing import MockCloud, MockLocalModel

SURE = [-0.01] * 3
UNSURE = [-4.0] * 3


def chat(n_turns, words=10):
    msgs = [{"role": "system", "content": "You are helpful."}]
    for i in range(n_turns):
        msgs += [{"role": "user", "content": f"question {i} " + "w " * words},
                 {"role": "assistant", "content": f"answer {i} " + "w " * words}]
    return msgs + [{"role": "user", "content": "the newest question"}]


def make(**kw):
    local = MockLocalModel(n_ctx=kw.pop("n_ctx", 2048))
    cloud = MockCloud()
    return Router(local_model=local, cloud=cloud, threshold=0.5, pregen=False, **kw), local, cloud


# --- history strategies ------------------------------------------------------------------------------------------
def test_split_turns_separates_the_system_prompt_the_earlier_turns_and_the_newest():
    system, turns, newest = split_turns(chat(3))
    assert [m["role"] for m in system] == ["system"]
    assert len(turns) == 3 and all([m["role"] for m in t] == ["user", "assistant"] for t in turns)
    assert newest == [{"role": "user", "content": "the newest question"}]


@pytest.mark.parametrize("n_ctx, kept_turns", [(2048, 8), (200, 5), (120, 2), (60, 0)])
def test_latest_keeps_the_system_prompt_and_the_newest_turns_that_fit(n_ctx, kept_turns):
    msgs = chat(8)  # each turn is 2 x 16 mock tokens; system 7, newest 7
    fitted = LatestTurns(MockLocalModel(n_ctx=n_ctx)).fit(msgs, max_tokens=16)
    assert fitted.messages[0] == msgs[0] and fitted.messages[-1] == msgs[-1]
    assert fitted.cut == (kept_turns < 8) and fitted.dropped == 2 * (8 - kept_turns)
    assert fitted.messages[1:-1] == msgs[1 + 2 * (8 - kept_turns):-1]  # the newest turns, in order
    if fitted.cut:
        assert fitted.tokens <= n_ctx - 16 and "left out" in fitted.note


def test_a_lone_message_is_never_cut_and_the_engine_says_how_many_tokens_are_over():
    local = MockLocalModel(n_ctx=50)
    msgs = [{"role": "user", "content": "w " * 80}]
    assert LatestTurns(local).fit(msgs, 16).messages == msgs
    router = Router(local_model=local, local_only=True, trace=False)
    with pytest.raises(PromptTooLongError) as err:
        router.ask(msgs)
    assert err.value.over_tokens == 84 - 49 and "35 over" in str(err.value)


def test_summarize_folds_the_left_out_turns_into_the_system_prompt():
    local = MockLocalModel(n_ctx=250)
    local.enqueue("They discussed questions 0 to 4.")
    strategy = SummarizeOlder(local)
    msgs = chat(8)
    fitted = strategy.fit(msgs, max_tokens=16)
    assert fitted.cut and fitted.summary == "They discussed questions 0 to 4."
    assert fitted.messages[0]["content"].endswith(PREFIX + fitted.summary)
    assert fitted.messages[-1] == msgs[-1] and fitted.tokens <= 250 - 16
    summarised = local.calls[-1][1]["content"]  # what the local model was asked to summarise: the dropped turns
    assert "user: question" in summarised and "the newest question" not in summarised
    assert len(fitted.messages) < len(msgs) and fitted.dropped >= 2
    again = strategy.fit(msgs, max_tokens=16)  # remembered: no second generation
    assert again.summary == fitted.summary and len(local.calls) == 1


def test_an_unknown_history_strategy_is_a_config_error():
    with pytest.raises(ConfigError, match="history"):
        Router(local_model=MockLocalModel(), local_only=True, trace=False, history="nope")


def test_a_cut_history_is_flagged_and_the_cloud_still_gets_everything():
    router, local, cloud = make(n_ctx=120)
    local.enqueue("unsure", logprobs=UNSURE)
    answer = router.ask(chat(8))
    assert "history_cut" in answer.flags and any("left out" in w for w in answer.warnings)
    assert len(local.calls[-1]) < len(chat(8)) and local.calls[-1][-1]["content"] == "the newest question"
    assert answer.route == "cloud" and cloud.requests[-1] == chat(8)


# --- conversations and stickiness --------------------------------------------------------------------------------
def test_turns_are_linked_in_the_trace_and_the_history_grows(tmp_path):
    store = TraceStore(tmp_path / "t.sqlite3")
    router, local, cloud = make(store=store, sticky_turns=0)
    conv = router.conversation("Be brief.")
    local.enqueue("four", logprobs=SURE)
    local.enqueue("six", logprobs=SURE)
    a, b = conv.ask("2+2?"), conv.ask("and 3+3?")
    assert (a.conversation, a.turn, b.conversation, b.turn) == (conv.id, 0, conv.id, 1)
    assert [m["role"] for m in local.calls[-1]] == ["system", "user", "assistant", "user"]
    assert conv.messages[-1] == {"role": "assistant", "content": "six"}
    rows = store.conversation(conv.id)
    assert [(r["id"], r["turn"]) for r in rows] == [(a.id, 0), (b.id, 1)]
    assert a.to_dict()["conversation"] == conv.id


def test_after_an_escalation_the_next_turns_stay_in_the_cloud_for_n_turns_then_release():
    router, local, cloud = make(sticky_turns=2)
    conv = router.conversation()
    local.enqueue("unsure", logprobs=UNSURE)
    first = conv.ask("hard question")
    assert first.route == "cloud" and "sticky" not in first.flags
    for turn in (1, 2):
        answer = conv.ask(f"follow-up {turn}")
        assert answer.route == "cloud" and "sticky" in answer.flags
        assert f"sticky: turn {turn} stays in the cloud, where turn 0 was escalated" in answer.reason
        assert "sticky_turns=2" in answer.reason
    assert len(local.calls) == 1  # the sticky turns never ran locally
    local.enqueue("sure", logprobs=SURE)
    back = conv.ask("easy one")
    assert back.route == "local" and "sticky" not in back.flags and len(local.calls) == 2


def test_stickiness_is_off_with_zero_turns_and_never_applies_offline_or_in_private():
    router, local, cloud = make(sticky_turns=0)
    conv = router.conversation()
    local.enqueue("unsure", logprobs=UNSURE)
    local.enqueue("sure", logprobs=SURE)
    assert conv.ask("q1").route == "cloud" and conv.ask("q2").route == "local"
    router, local, cloud = make(sticky_turns=3)
    conv = router.conversation()
    local.enqueue("unsure", logprobs=UNSURE)
    local.enqueue("private answer", logprobs=SURE)
    assert conv.ask("q1").route == "cloud"
    private = conv.ask("my secret", private=True)
    assert private.route == "local" and len(cloud.requests) == 1


def test_a_sticky_run_is_released_when_the_pre_generation_probe_recovers():
    from edgeroute.signals.probe import PregenProbe

    class Sure(PregenProbe):
        threshold = 0.1

        def __init__(self):
            pass

        def score(self, hidden, messages):
            return 0.9

    router, local, cloud = make(sticky_turns=3)
    conv = router.conversation()
    local.enqueue("unsure", logprobs=UNSURE)
    assert conv.ask("q1").route == "cloud"
    router.pregen = Sure()
    local.enqueue("sure", logprobs=SURE)
    answer = conv.ask("q2")
    assert answer.route == "local" and "sticky run released: pre-generation P(correct) 0.900 >= 0.500" in answer.reason


def test_the_online_policy_sees_the_turn_and_the_recent_cloud_answer():
    s = Situation([{"role": "user", "content": "x"}], turn=3, since_cloud=1, prefill_s=2.0)
    x = pre_context(s)
    assert x[PRE_FEATURES.index("turn")] > 0 and x[PRE_FEATURES.index("recent_cloud")] == 1.0
    assert 0 < x[PRE_FEATURES.index("prefill_s")] < 1
    lone = pre_context(Situation([{"role": "user", "content": "x"}]))
    assert lone[PRE_FEATURES.index("turn")] == lone[PRE_FEATURES.index("recent_cloud")] == 0.0
    assert POST_FEATURES[-3:] == ("turn", "recent_cloud", "prefill_s")


def test_a_saved_bandit_learned_before_the_features_were_added_is_widened_not_forgotten():
    old = LinUCB(["a", "b"], 3)
    for _ in range(20):
        old.update("a", [1.0, 0.5, 0.2], 1.0)
        old.update("b", [1.0, 0.5, 0.2], 0.0)
    wide = LinUCB.from_dict(LinUCB.widened(old.to_dict(), 5))
    assert wide.dim == 5
    for arm in ("a", "b"):
        assert wide.scores([1.0, 0.5, 0.2, 0.0, 0.0])[arm] == pytest.approx(old.scores([1.0, 0.5, 0.2])[arm])


# --- long prompts ------------------------------------------------------------------------------------------------
def test_a_prompt_whose_prefill_would_exceed_the_budget_goes_straight_to_the_cloud():
    router, local, cloud = make(prefill_budget_s=1.0)
    answer = router.ask("w " * 400)  # ~404 mock tokens at the assumed 120 tokens/s: ~3.4 s
    assert answer.route == "cloud" and local.calls == [] and "pregen_skip" in answer.flags
    assert "prefill would take ~3.4 s here (404 tokens at 120 tokens/s assumed), over prefill_budget_s=1" \
        in answer.reason
    assert answer.latency_ms["prefill_estimate"] == pytest.approx(404 / 120 * 1000)
    router.device.prefill_done(1000, 1.0)  # this device is faster than assumed: now it runs locally
    local.enqueue("ok", logprobs=SURE)
    assert router.ask("w " * 400).route == "local"
    offline, local2, _ = make(prefill_budget_s=1.0, local_only=True)
    assert offline.ask("w " * 400).route == "local"  # offline the budget never applies


def test_the_context_window_is_the_trained_context_within_the_memory_budget():
    path = resolve_model_path(None)
    full = choose(path, None, 512, 512)
    assert full.n_ctx == full.trained == 8192 and "512 MiB" in full.note
    small = choose(path, None, 64, 512)
    assert small.n_ctx < 8192 and small.n_ctx % 1024 == 0
    assert small.n_ctx * small.bytes_per_token <= 64 << 20
    assert choose(path, 3000, 512, 512).n_ctx == 3000
    meta = {"general.architecture": "llama", "llama.block_count": 30, "llama.attention.head_count": 9,
            "llama.attention.head_count_kv": 3, "llama.embedding_length": 576}
    assert bytes_per_token(meta, 512) == 30 * 3 * 128 * 2 + 9 * 512 * 4
    with pytest.raises(ConfigError, match="ctx_memory_mib"):
        Router(local_model=MockLocalModel(), local_only=True, trace=False, ctx_memory_mib=1)


# --- serve ---------------------------------------------------------------------------------------------------
def test_serve_links_a_conversation_by_header_or_field_and_keeps_it_sticky():
    import httpx
    import openai

    from edgeroute.server import EdgerouteServer

    local, cloud = MockLocalModel(), MockCloud()
    router = Router(local_model=local, cloud=cloud, trace=False, threshold=0.5, pregen=False, sticky_turns=1)
    server = EdgerouteServer(router, port=0)
    server.start_background()
    try:
        c = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                          default_headers={"X-Edgeroute-Conversation": "chat-1"})
        local.enqueue("unsure", logprobs=UNSURE)
        history = [{"role": "user", "content": "hard"}]
        first = c.chat.completions.create(model="edgeroute", messages=history)
        meta = first.model_extra["edgeroute"]
        assert (meta["route"], meta["conversation"], meta["turn"]) == ("cloud", "chat-1", 0)
        history += [{"role": "assistant", "content": first.choices[0].message.content},
                    {"role": "user", "content": "follow-up"}]
        second = c.chat.completions.create(model="edgeroute", messages=history, stream=True)
        text = "".join(ch.choices[0].delta.content or "" for ch in second if ch.choices)
        assert text == "cloud answer" and len(local.calls) == 1  # sticky: straight to the cloud
        body = {"messages": [{"role": "user", "content": "x"}], "edgeroute": {"conversation": "other"}}
        r = httpx.post(server.url + "/v1/chat/completions", json=body, headers={"X-Edgeroute-Conversation": "chat-1"})
        assert r.status_code == 400 and "different" in r.json()["error"]["message"]
        body["edgeroute"] = {"conversation": 5}
        r = httpx.post(server.url + "/v1/chat/completions", json=body)
        assert r.status_code == 400 and r.json()["error"]["param"] == "edgeroute.conversation"
        local.enqueue("fine", logprobs=SURE)
        body["edgeroute"] = {"conversation": "chat-2"}
        r = httpx.post(server.url + "/v1/chat/completions", json=body)
        assert r.json()["edgeroute"]["conversation"] == "chat-2" and r.json()["edgeroute"]["route"] == "local"
    finally:
        server.shutdown()
        server.server_close()
