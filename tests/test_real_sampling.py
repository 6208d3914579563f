"""The request's decoding on the real engine: llama.cpp's sampler chain (seeded, reproducible), stop sequences,
logprobs with alternatives, and JSON schemas through the grammar sampler; the signals keep the model's own logprob."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeroute import InputError, Router, Sampling

pytestmark = pytest.mark.slow
MSGS = [{"role": "user", "content": "List three colours."}]


def test_stop_and_logprobs_keep_the_greedy_answer_and_its_logprobs(real_model):
    greedy = real_model.generate(MSGS, max_tokens=24)
    cut = real_model.generate(MSGS, max_tokens=24, sampling=Sampling(stop=(":",), logprobs=True, top_logprobs=3))
    assert greedy.text.startswith(cut.text) and ":" not in cut.text and cut.finish_reason == "stop"
    assert ":" in greedy.text[len(cut.text):len(cut.text) + 3]  # it stopped where the stop string began
    n = len(cut.token_logprobs)
    assert np.allclose(cut.token_logprobs, greedy.token_logprobs[:n])  # same tokens, same model logprobs
    for best, alts in zip(cut.token_logprobs, cut.token_top):
        assert len(alts) == 3 and alts[0][1] == pytest.approx(best, abs=1e-6)  # greedy: the chosen one is the best
        assert alts[0][1] >= alts[1][1] >= alts[2][1]


def test_seeded_sampling_is_reproducible_and_its_logprobs_are_the_models(real_model):
    knobs = dict(temperature=0.9, top_p=0.9, top_k=40, min_p=0.02)
    a = real_model.generate(MSGS, max_tokens=24, sampling=Sampling(seed=7, **knobs))
    b = real_model.generate(MSGS, max_tokens=24, sampling=Sampling(seed=7, **knobs))
    c = real_model.generate(MSGS, max_tokens=24, sampling=Sampling(seed=8, **knobs))
    assert a.text == b.text and a.token_ids == b.token_ids and a.text != c.text
    assert np.all(a.token_logprobs <= 0) and np.all(np.isfinite(a.token_entropies))


def test_a_json_schema_is_enforced_by_the_grammar_sampler(real_model):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    g = real_model.generate([{"role": "user", "content": "Give a person as JSON."}], max_tokens=64,
                            sampling=Sampling(json_schema=schema))
    value = json.loads(g.text)
    assert isinstance(value["name"], str) and isinstance(value["age"], int)


def test_the_router_flags_sampled_answers_uncalibrated(real_model):
    router = Router(local_model=real_model, local_only=True, trace=False)
    sampled = router.ask(MSGS, max_tokens=16, sampling=Sampling(temperature=0.8, seed=1))
    greedy = router.ask(MSGS, max_tokens=16)
    assert "uncalibrated" in sampled.flags and "uncalibrated" not in greedy.flags
    with pytest.raises(InputError) as bad:
        router.ask(MSGS, sampling=Sampling(json_schema={"type": "object", "properties": {"x": {"$ref": "#/nope"}}}))
    assert bad.value.field == "response_format"
