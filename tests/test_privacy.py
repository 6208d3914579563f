"""The privacy gate: sensitive data never leaves the device, and the answer says why (RELIABILITY row 34)."""

from __future__ import annotations

import pytest

from edgeroute import ConfigError, PrivacyDetector, Router
from edgeroute.bench.datasets import load_items
from edgeroute.testing import MockCloud, MockLocalModel

UNSURE = [-3.0] * 3


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("mail me at jane.doe+x@example.co.uk please", ["email"]),
        ("call +44 20 7946 0958 tonight", ["phone"]),
        ("call (020) 7946 0958", ["phone"]),
        ("call 555-123-4567", ["phone"]),
        ("my card is 4111 1111 1111 1111", ["card"]),
        ("my card is 4111-1111-1111-1111", ["card"]),
        ("card 4111 1111 1111 1112 (fails Luhn)", []),
        ("key sk-proj-abcdefghijklmnopqrstuvwx123", ["api_key"]),
        ("AWS AKIAIOSFODNN7EXAMPLE", ["api_key"]),
        ("token 9f8e7d6c5b4a39281706f5e4d3c2b1a0ffeeddcc", ["api_key"]),
        ("IBAN GB82 WEST 1234 5698 7654 32", ["iban"]),
        ("IBAN DE89370400440532013000", ["iban"]),
        ("IBAN GB82 WEST 1234 5698 7654 33 (fails mod-97)", []),
        ("What is 123 + 456? About 1,000,000 people live there.", []),
        ("internationalization-and-localization-guide-2024", []),
        ("reach me at a@b.io or +1 415 555 0100", ["email", "phone"]),
    ],
)
def test_detector(text, kinds):
    assert PrivacyDetector().kinds_in([text]) == kinds


def test_no_false_alarm_on_the_benchmark_questions():
    detector = PrivacyDetector()
    assert [i["id"] for i in load_items() if detector.kinds_in([i["question"]])] == []


def test_sensitive_prompt_never_reaches_the_cloud_and_the_answer_says_why(tmp_path):
    local, cloud = MockLocalModel(), MockCloud()
    local.enqueue("I cannot say", logprobs=UNSURE)
    router = Router(local_model=local, cloud=cloud, trace_path=str(tmp_path / "t.db"))
    a = router.ask("Is 4111 1111 1111 1111 a valid card number?")
    assert cloud.requests == [] and a.route == "local"
    assert "sensitive" in a.flags and "sensitive data detected (card): kept on the device" in a.reason
    row = router.store.get(a.id)
    # the number itself is stored nowhere (searched for as it was written: "4111" alone can occur inside a float)
    for stored in (a.to_json(), str(row)):
        assert "4111 1111" not in stored and "41111111" not in stored and "1111 1111" not in stored


def test_earlier_turns_count_and_the_gate_can_be_narrowed_or_turned_off():
    history = [{"role": "user", "content": "my email is jane@example.com"},
               {"role": "assistant", "content": "noted"}, {"role": "user", "content": "what is 2+2?"}]
    local, cloud = MockLocalModel(), MockCloud()
    local.enqueue("five", logprobs=[-3.0])
    a = Router(local_model=local, cloud=cloud, trace=False).ask(history)
    assert cloud.requests == [] and "email" in a.reason
    local.enqueue("five", logprobs=[-3.0])
    b = Router(local_model=local, cloud=cloud, trace=False, privacy_kinds=("card",)).ask(history)
    assert b.route == "cloud" and len(cloud.requests) == 1
    local.enqueue("five", logprobs=[-3.0])
    c = Router(local_model=local, cloud=cloud, trace=False, privacy_detect=False).ask(history)
    assert c.route == "cloud" and len(cloud.requests) == 2
    with pytest.raises(ConfigError, match="unknown privacy kind"):
        Router(local_model=local, cloud=cloud, trace=False, privacy_kinds=("ssn",))
