import pytest

from edgeroute import EmptyPromptError, InvalidPromptError
from edgeroute.messages import normalize, prompt_hash


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t", [{"role": "user", "content": "  "}], []])
def test_empty_prompts_raise(prompt):
    with pytest.raises(EmptyPromptError):
        normalize(prompt)


@pytest.mark.parametrize(
    "prompt",
    [
        "nul\x00byte",
        "lone \ud800 surrogate",
        b"\xff\xfe invalid utf-8",
        42,
        [{"role": "wizard", "content": "hi"}],
        [{"content": "no role"}],
        [{"role": "user", "content": 5}],
        "x" * 1_000_001,
    ],
)
def test_invalid_prompts_raise(prompt):
    with pytest.raises(InvalidPromptError):
        normalize(prompt)


def test_string_becomes_one_user_message_and_hash_is_stable():
    msgs = normalize("What is 2+2?")
    assert msgs == [{"role": "user", "content": "What is 2+2?"}]
    assert prompt_hash(msgs) == prompt_hash(normalize(b"What is 2+2?"))
    assert prompt_hash(msgs) != prompt_hash(normalize("What is 2+3?"))
    assert len(prompt_hash(msgs)) == 64
