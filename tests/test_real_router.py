"""The Router, the CLI and concurrency on the real default model."""

import json
import threading

import pytest

from conftest import run_cli
from edgeroute import Router

pytestmark = pytest.mark.slow

ANSWER_KEYS = {"id", "text", "route", "confidence", "signals", "threshold", "latency_ms", "tokens", "energy"}
PROMPTS = [f"What is {a} + {b}?" for a, b in [(2, 2), (3, 5), (10, 7), (6, 6)]] + [
    "What is the capital of Italy?", "Name a colour of the rainbow.", "What is the opposite of hot?",
    "Spell the word cat backwards.", "How many legs does a spider have?", "What is the chemical symbol of gold?",
]


def test_local_answer_has_every_documented_field(real_model, tmp_path):
    router = Router(local_only=True, local_model=real_model, trace_path=str(tmp_path / "t.db"))
    a = router.ask("What is 2+2?", max_tokens=32)
    d = json.loads(a.to_json())
    assert ANSWER_KEYS <= set(d)
    assert a.route == "local" and a.text.strip()
    assert 0.0 <= a.confidence <= 1.0
    assert {"mean_nll", "max_nll", "mean_entropy", "answer_tokens", "perplexity_confidence"} <= set(a.signals)
    assert {"prefill", "decode", "signals", "total"} <= set(a.latency_ms)
    assert a.tokens["prompt"] > 0 and a.tokens["completion"] > 0
    # This machine has no RAPL, battery or GPU counter: the Router must say "estimated", with a positive figure.
    e = d["energy"]
    assert e["method"] == "estimated" and e["kind"] == "estimated" and e["source"].startswith("estimate:")
    assert e["joules"] > 0 and e["local"]["joules"] == e["joules"] and e["cloud_wait"] is None
    assert e["joules_per_token"] == pytest.approx(e["joules"] / a.tokens["completion"])
    row = router.store.get(a.id)
    assert row["route"] == "local" and row["model"] == real_model.fingerprint
    assert row["joules"] == pytest.approx(e["joules"]) and row["energy_method"] == "estimated"
    assert row["energy"]["local"]["method"] == "estimated"


def test_stream_text_equals_ask_text(real_model):
    router = Router(local_only=True, local_model=real_model, trace=False)
    expected = router.ask("Name three fruits.", max_tokens=32).text
    stream = router.stream("Name three fruits.", max_tokens=32)
    tokens = [e.text for e in stream if e.type == "token"]
    assert len(tokens) > 3 and "".join(tokens) == expected == stream.answer.text


def test_four_threads_ten_calls_each_match_single_threaded_answers(real_model):
    router = Router(local_only=True, local_model=real_model, trace=False)
    expected = {p: router.ask(p, max_tokens=24).text for p in PROMPTS}
    results, errors = [], []

    def worker(k):
        try:
            for i in range(10):
                p = PROMPTS[(k * 3 + i) % len(PROMPTS)]
                results.append((p, router.ask(p, max_tokens=24).text))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors and len(results) == 40
    assert all(text == expected[p] for p, text in results)


def test_cli_ask_json_local_only():
    proc = run_cli("ask", "What is 2+2?", "--local-only", "--json", "--max-tokens", "32")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert ANSWER_KEYS <= set(d) and d["route"] == "local" and d["text"].strip()
    assert d["energy"]["joules"] > 0 and d["energy"]["method"] == "estimated" and d["energy"]["source"]
    risk = d["risk"]  # what the confidence rests on: here no cloud, so the error on this traffic is unknown
    assert risk["status"] == "unknown" and "unknown" in risk["why"] and risk["estimate"] is None
    assert risk["threshold"] == d["threshold"] and risk["threshold_source"] == d["threshold_source"]
    assert isinstance(risk["novel"], bool) and risk["novelty"] > 0  # the shipped novelty map fits this model


def test_cli_ask_prints_answer_and_a_status_line():
    proc = run_cli("ask", "What is the capital of France?", "--local-only", "--max-tokens", "24")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert "[local" in proc.stderr and "confidence" in proc.stderr and "ms" in proc.stderr
    assert "J estimated (estimate:" in proc.stderr and "J/token" in proc.stderr


def test_cli_reports_typed_errors_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"junk" * 100)
    proc = run_cli("ask", "hi", "--model", str(bad), "--local-only")
    assert proc.returncode == 2 and "ModelCorruptError" in proc.stderr and "bad.gguf" in proc.stderr
    proc = run_cli("ask", "   ", "--local-only")
    assert proc.returncode == 2 and "EmptyPromptError" in proc.stderr


def test_the_shipped_calibration_applies_to_the_default_model(real_model):
    router = Router(local_only=True, local_model=real_model, trace=False)
    assert router.calibration is not None and router.calibration.model == real_model.fingerprint
    assert router.policy.threshold == router.calibration.threshold
    a = router.ask("What is 2+2?", max_tokens=16)
    assert a.threshold_source.startswith("calibrated: wrong local answers <= 0.1 of queries with probability >= 0.95")


@pytest.mark.server
def test_linucb_routing_on_the_real_model_and_a_real_cloud_server(real_model, llama_server, tmp_path):
    """The online policy end to end: real prefill probe, real generation, real HTTP cloud, real SQLite state."""
    opts = dict(local_model=real_model, cloud_url=llama_server.base_url, cloud_model="default",
                routing="linucb", preset="cost-saver", trace_path=str(tmp_path / "t.db"), max_tokens=24)
    router = Router(**opts)
    routes = []
    for prompt in PROMPTS[:6]:
        a = router.ask(prompt)
        routes.append(a.route)
        assert a.text.strip() and a.route in ("local", "cloud")
        assert "pregen_confidence" in a.signals  # the pre-generation probe ran (warm-up: its threshold decides)
        if a.route == "local":
            assert a.confidence >= router.policy.threshold  # the guardrail
            assert router.feedback(a.id, True) is True
        else:
            assert router.feedback(a.id, True) is False  # the cloud prior already taught it
    learned = {pt: b.learned() for pt, b in router.policy.bandits.items()}
    assert learned["pre"] == 6
    router.close()
    again = Router(**opts)
    assert {pt: b.learned() for pt, b in again.policy.bandits.items()} == learned
    again.close()
