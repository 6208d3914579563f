"""Self-REF: the scorer, the adapter files, and the shipped adapter on the real model (text unchanged)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgeroute import ModelCorruptError, ModelLoadError, ModelNotFoundError, Router
from edgeroute.local.selfref import SelfRefAdapter, selfref_confidence
from edgeroute.policy.context import POST_FEATURES, Situation, post_context
from edgeroute.testing import MockLocalModel

PROMPTS = ["What is 2 + 2?", "What is the capital of Italy?", "Name a colour of the rainbow.",
           "How many legs does a spider have?", "What is the chemical symbol of gold?", "Spell cat backwards."]


# --- the scorer ----------------------------------------------------------------------------------------------
def test_score_is_the_two_token_softmax_ratio_and_moves_with_the_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=500)
    cn, un = 17, 42
    p = np.exp(logits - logits.max())
    p /= p.sum()
    assert selfref_confidence(logits[cn], logits[un]) == pytest.approx(p[cn] / (p[cn] + p[un]))
    values = [selfref_confidence(z, 0.0) for z in np.linspace(-30, 30, 61)]
    assert all(0.0 <= v <= 1.0 for v in values) and values == sorted(values) and values[0] < 1e-12 < values[-1]
    assert selfref_confidence(3.0, 3.0) == 0.5 and selfref_confidence(1e4, -1e4) == 1.0  # no overflow
    assert selfref_confidence(-1e4, 1e4) == 0.0
    with pytest.raises(ValueError):
        selfref_confidence(float("nan"), 0.0)


def test_the_signal_reaches_the_answer_and_the_policy_context():
    local = MockLocalModel()
    router = Router(local_model=local, local_only=True, trace=False, energy=False)
    local.enqueue("Paris it is", logprobs=[-0.1] * 3, selfref_logits=(2.0, 0.0))
    a = router.ask("What is the capital of France?")
    assert a.signals["selfref"] == pytest.approx(1 / (1 + math.exp(-2.0)))
    local.enqueue("Lyon maybe", logprobs=[-0.1] * 2, selfref_logits=(-1.0, 3.0))
    assert router.ask("And of Italy?").signals["selfref"] == pytest.approx(1 / (1 + math.exp(4.0)))
    local.enqueue("no slot here", logprobs=[-0.1] * 3)
    b = router.ask("Anything?")
    assert "selfref" not in b.signals  # no adapter, no value: never a made-up one
    x = dict(zip(POST_FEATURES, post_context(Situation([{"role": "user", "content": "q"}], a.signals, 0.7))))
    assert x["selfref_known"] == 1.0 and x["selfref"] == pytest.approx(a.signals["selfref"])


def test_the_blend_averages_log_odds_and_needs_both_parts():
    from edgeroute.signals.selfref import SelfRefBlend

    blend = SelfRefBlend("probe-id", "ab" * 32)
    out = blend.score({"combined_confidence": 0.9, "selfref": 0.5}, [])
    assert out["selfref_combined_confidence"] == pytest.approx(1 / (1 + math.exp(-math.log(9) / 2)))
    assert blend.score({"combined_confidence": 0.2, "selfref": 0.2}, [])["selfref_combined_confidence"] == \
        pytest.approx(0.2)
    assert blend.score({"combined_confidence": 0.9}, []) == {} and blend.score({"selfref": 0.9}, []) == {}
    assert SelfRefBlend("probe-id", "cd" * 32).confidence_id != blend.confidence_id  # its own calibration


# --- adapter files -------------------------------------------------------------------------------------------
def _files(tmp_path, **changes):
    gguf = tmp_path / "selfref.gguf"
    gguf.write_bytes(b"GGUF not really")
    import hashlib

    manifest = {"adapter": "selfref.gguf", "adapter_sha256": hashlib.sha256(gguf.read_bytes()).hexdigest(),
                "base_model_sha256": "ab" * 32, "cn_token_id": 5, "un_token_id": 6, **changes}
    (tmp_path / "selfref.json").write_text(json.dumps(manifest))
    return tmp_path / "selfref.json"


def test_adapter_files_are_checked(tmp_path):
    a = SelfRefAdapter.load(_files(tmp_path))
    assert a.fits("ab" * 32) and not a.fits("cd" * 32) and a.cn_token_id == 5 and len(a.sha256) == 64
    with pytest.raises(ModelNotFoundError):
        SelfRefAdapter.load(tmp_path / "nowhere.json")
    with pytest.raises(ModelCorruptError, match="SHA-256"):
        SelfRefAdapter.load(_files(tmp_path, adapter_sha256="00" * 32))
    with pytest.raises(ModelCorruptError, match="malformed"):
        SelfRefAdapter.load(_files(tmp_path, cn_token_id="five"))
    (tmp_path / "selfref.json").write_text("{broken")
    with pytest.raises(ModelCorruptError):
        SelfRefAdapter.load(tmp_path / "selfref.json")
    _files(tmp_path)
    (tmp_path / "selfref.gguf").unlink()
    with pytest.raises(ModelNotFoundError, match="missing"):
        SelfRefAdapter.load(tmp_path / "selfref.json")


# --- the shipped adapter on the real model -------------------------------------------------------------------
@pytest.fixture(scope="module")
def engines():
    from edgeroute.local.llama import LlamaCppModel

    adapter = SelfRefAdapter.shipped()
    assert adapter is not None, "models/selfref.json and selfref.gguf must ship"
    plain, scored = LlamaCppModel(), LlamaCppModel(selfref=adapter)
    yield plain, scored, adapter
    plain.close()
    scored.close()


def _answer(engine, prompt):
    from edgeroute.local.base import drain

    return drain(engine.stream([{"role": "user", "content": prompt}], max_tokens=32))


@pytest.mark.slow
def test_the_adapter_loads_and_leaves_every_answer_unchanged(engines):
    plain, scored, adapter = engines
    assert adapter.fits(plain.fingerprint)
    firsts = []
    for prompt in PROMPTS:
        base, adapted = _answer(plain, prompt), _answer(scored, prompt)
        assert adapted.text == base.text and adapted.token_ids == base.token_ids
        np.testing.assert_allclose(adapted.token_logprobs, base.token_logprobs, atol=1e-4)
        assert base.selfref_logits is None and adapted.selfref_logits is not None
        assert 0.0 <= selfref_confidence(*adapted.selfref_logits) <= 1.0
        firsts.append(adapted.selfref_logits)
    again = [_answer(scored, p).selfref_logits for p in PROMPTS]  # the slot leaves no trace in the cache
    np.testing.assert_allclose(np.array(again), np.array(firsts), atol=1e-3)
    assert len({round(selfref_confidence(*s), 4) for s in firsts}) > 1  # it tells answers apart


@pytest.mark.slow
def test_the_score_of_a_given_answer_matches_the_one_read_while_generating(engines):
    _, scored, _ = engines
    g = _answer(scored, PROMPTS[1])
    ids = scored.prompt_token_ids([{"role": "user", "content": PROMPTS[1]}]) + g.token_ids
    assert scored.selfref_score(ids) == pytest.approx(selfref_confidence(*g.selfref_logits), abs=2e-3)


@pytest.mark.slow
def test_llama_cpp_python_loads_the_adapter_with_lora_path(engines):
    import llama_cpp

    plain, _, adapter = engines
    llm = llama_cpp.Llama(model_path=str(plain.path), lora_path=str(adapter.path), n_ctx=256, verbose=False)
    try:
        assert llm._lora_adapter is not None
    finally:
        llm.close()


@pytest.mark.slow
def test_an_adapter_for_another_model_is_refused(engines, tmp_path):
    from dataclasses import replace

    plain, _, adapter = engines
    from edgeroute.local.llama import LlamaCppModel

    other = replace(adapter, base_model_sha256="00" * 32)
    with pytest.raises(ModelLoadError, match="another model"):
        LlamaCppModel(selfref=other)


@pytest.mark.slow
def test_router_selfref_option_reports_the_signal(real_model):
    with Router(local_only=True, selfref=True, trace=False, max_tokens=24) as router:
        a = router.ask("What is the capital of Italy?")
        assert 0.0 <= a.signals["selfref"] <= 1.0
