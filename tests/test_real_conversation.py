"""Issue 22 with the real model: a 10-turn conversation over a pasted ~2,500-token document, offline (the cloud
configured but unreachable) and online (a real llama_cpp.server as the cloud). Nothing crashes, every turn is
linked in the trace with its prefill time, and the long first prompt skips the local decode when the cloud can
take it."""

import random

import pytest

from edgeroute import Router, TraceStore

QUESTIONS = ["When does the library open?", "Who approved the budget?", "How many books will it hold?",
             "Summarise the document in one sentence.", "Is the library new?", "What did the council do?",
             "Name one thing the document mentions.", "Was a budget approved?", "Thanks. Anything else?"]


def paste(seed: int) -> str:
    rng = random.Random(seed)
    words = ("the council approved a budget for the new library which opens in march and will hold twelve "
             "thousand books").split()
    return "Here is a document:\n" + " ".join(rng.choice(words) for _ in range(2470))


def run_conversation(router: Router, store: TraceStore, seed: int) -> list:
    conv = router.conversation("Answer briefly from the document.")
    answers = [conv.ask(paste(seed) + "\n\nWhat is this document about?", max_tokens=24)]
    answers += [conv.ask(q, max_tokens=24) for q in QUESTIONS]
    rows = store.conversation(conv.id)
    assert [r["turn"] for r in rows] == list(range(10)) and [r["id"] for r in rows] == [a.id for a in answers]
    for row in rows:  # the trace has the prefill: measured when it ran here, else the estimate that skipped it
        assert "prefill" in row["latency_ms"] or "prefill_estimate" in row["latency_ms"]
    return answers


@pytest.mark.slow
def test_offline_a_ten_turn_conversation_over_a_long_paste_answers_every_turn(real_model, tmp_path):
    store = TraceStore(tmp_path / "t.sqlite3")
    router = Router(local_model=real_model, cloud_url="http://127.0.0.1:9", cloud_model="x", cloud_max_retries=0,
                    store=store)
    answers = run_conversation(router, store, 0)
    first = answers[0]
    assert real_model.n_ctx >= 8192 and first.tokens["prompt"] >= 2500  # it fits the default window
    assert first.route == "local-offline" and first.latency_ms["prefill"] > 1000
    assert all(a.route in ("local", "local-offline") and a.text for a in answers)
    assert any("answered locally" in w for w in first.warnings)  # the prefill budget wanted the cloud
    router.close()


@pytest.mark.slow
@pytest.mark.server
def test_online_the_long_paste_skips_the_local_decode_and_every_turn_answers(real_model, llama_server, tmp_path):
    store = TraceStore(tmp_path / "t.sqlite3")
    router = Router(local_model=real_model, cloud_url=llama_server.base_url, cloud_model="default", store=store,
                    read_timeout_s=240, cloud_deadline_s=300)
    answers = run_conversation(router, store, 1)  # another paste: the model's KV cache does not hold it
    first = answers[0]
    assert first.route == "cloud" and first.tokens["completion"] == 0  # no local decode on the long paste
    assert "prefill would take" in first.reason and first.latency_ms["prefill_estimate"] > 10_000
    assert all(a.route in ("local", "cloud", "local-offline") and a.text for a in answers)
    assert "sticky" in answers[1].flags and "sticky: turn 1" in answers[1].reason
    router.close()
