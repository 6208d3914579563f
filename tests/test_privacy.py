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


# The evasions reported against the gate in issue 18, each with what it must be found as.
REPORTED = [
    ("card 4111.1111.1111.1111", "card"), ("card 4111  1111  1111  1111", "card"), ("card 4111/1111/1111/1111", "card"),
    ("card 4111\u200b1111\u200b1111\u200b1111", "card"),
    ("card four one one one one one one one one one one one one one one one", "card"),
    ("mail jürgen.müller@beispiel.de", "email"), ("mail jane＠example.com", "email"),
    ("mail jane [at] example [dot] com", "email"), ("mail jane\u200b@example.com", "email"),
    ("call 555 123 4567", "phone"), ("key sk-abc1234567", "api_key"),
]


@pytest.mark.parametrize(("text", "kind"), REPORTED)
def test_every_reported_evasion_is_caught_and_its_span_is_in_the_original_text(text, kind):
    findings = PrivacyDetector().find(text)
    assert [f.kind for f in findings] == [kind]
    start = findings[0].start
    assert text[start:start + 3].lstrip()[:1] not in ("", " ")  # points at the value, as the user wrote it


def test_recall_and_false_positives_on_the_corpus_it_was_built_against():
    from edgeroute.bench.privacy import load_corpus, privacy_report

    rows = load_corpus()
    assert sum(r["sensitive"] for r in rows) >= 300 and sum(not r["sensitive"] for r in rows) >= 300
    splits = privacy_report()["splits"]
    for split in ("dev", "tuned"):  # the figures the detector was built to; the held-out one is reported, not tested
        assert splits[f"{split}:all"]["recall"] >= 0.98 and splits[f"{split}:all"]["false_positive_rate"] <= 0.005


def test_an_app_plugs_in_its_own_detector_by_name():
    from edgeroute.privacy import Detector, Finding
    from edgeroute.registry import DETECTORS

    class EmployeeIds(Detector):
        name = "employee-ids"

        def find(self, text):
            at = text.find("EMP-")
            return [Finding("employee_id", at, at + 10)] if at >= 0 else []

    DETECTORS.register("employee-ids", EmployeeIds.from_config)
    local, cloud = MockLocalModel(), MockCloud()
    local.enqueue("no idea", logprobs=UNSURE)
    router = Router(local_model=local, cloud=cloud, trace=False, privacy_detectors=("employee-ids",))
    answer = router.ask("Who is EMP-123456?")
    assert cloud.requests == [] and "employee_id" in answer.reason
    with pytest.raises(ConfigError, match="privacy_detectors"):
        Router(local_model=local, cloud=cloud, trace=False, privacy_detectors=("nope",))
