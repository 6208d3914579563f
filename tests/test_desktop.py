"""Desktop tasks (issue 22): the generators, each deterministic grader's table of cases, the long-answer signals,
the cloud-judge grader (with a test double for the cloud) and the value table's bookkeeping."""

import json

import pytest

from edgeroute.bench.desktop import graders
from edgeroute.bench.desktop.judge import agreement, judge, judge_prompt, verdict
from edgeroute.bench.desktop.report import TASKS_PATH, markdown
from edgeroute.bench.desktop.tasks import FAMILIES, generate
from edgeroute.bench.desktop.value import POLICIES, CloudProfile, Row, value_table
from edgeroute.policy.context import Situation
from edgeroute.signals.longform import asked_keys, first_json_object, format_valid, span_stats
from edgeroute.testing import MockCloud


def test_the_generators_are_seeded_and_the_shipped_set_is_what_they_make():
    assert list(generate(3, seed=1)) == list(generate(3, seed=1))
    assert list(generate(3, seed=1)) != list(generate(3, seed=2))
    shipped = [json.loads(line) for line in TASKS_PATH.read_text().splitlines()]
    assert shipped == [json.loads(json.dumps(t, sort_keys=True)) for t in generate(50, seed=0)]
    assert {t["family"] for t in shipped} == set(FAMILIES) and len(shipped) == 300
    turns = [len([m for m in t["messages"] if m["role"] == "user"]) for t in shipped if t["family"] == "conversation"]
    assert min(turns) >= 2 and max(turns) <= 5


LABELS = {"label": "billing", "labels": ["account", "billing", "shipping", "technical"]}
REWRITE_SRC = "our office in Oslo will close early on friday for maintenance"
CASES = [
    ("label", LABELS, "billing", True),
    ("label", LABELS, "Billing.", True),
    ("label", LABELS, "This is a billing issue, not shipping.", True),
    ("label", LABELS, "shipping (or maybe billing)", False),
    ("label", LABELS, "I cannot tell.", False),
    ("json_fields", {"fields": {"name": "Maria Lopez", "quantity": 3}}, '{"name": "Maria Lopez", "quantity": 3}', True),
    ("json_fields", {"fields": {"name": "Maria Lopez", "quantity": 3}}, '```json\n{"name": "maria lopez", '
                                                                        '"quantity": "3"}\n```', True),
    ("json_fields", {"fields": {"name": "Maria Lopez", "quantity": 3}}, '{"name": "Maria Lopez"}', False),
    ("json_fields", {"fields": {"name": "Maria Lopez", "quantity": 3}}, '{"name": "Maria", "quantity": 3}', False),
    ("json_fields", {"fields": {"name": "Maria Lopez", "quantity": 3}}, 'name: Maria Lopez, quantity: 3', False),
    ("json_fields", {"fields": {"city": "Oslo"}}, '{"city": "Oslo", "extra": 1}', False),
    ("rewrite", {"include": "urgently", "source": REWRITE_SRC},
     "Our office in Oslo will urgently close early on Friday for maintenance.", True),
    ("rewrite", {"include": "urgently", "source": REWRITE_SRC}, "Urgently!", False),  # the sentence is gone
    ("rewrite", {"avoid": "maintenance", "source": REWRITE_SRC},
     "Our Oslo office will close early on Friday for repairs.", True),
    ("rewrite", {"avoid": "maintenance", "source": REWRITE_SRC}, REWRITE_SRC, False),
    ("rewrite", {"max_words": 5, "source": REWRITE_SRC}, "Oslo office closes early Friday.", True),
    ("rewrite", {"max_words": 5, "source": REWRITE_SRC}, REWRITE_SRC, False),
    ("rewrite", {"upper": True, "source": REWRITE_SRC}, REWRITE_SRC.upper(), True),
    ("rewrite", {"upper": True, "source": REWRITE_SRC}, "Our OFFICE in Oslo will close", False),
    ("key_facts", {"facts": ["Olga", "Leeds", "October"], "min_facts": 2, "max_words": 40},
     "In October Olga showed the new lamp in Leeds.", True),
    ("key_facts", {"facts": ["Olga", "Leeds", "October"], "min_facts": 2, "max_words": 40},
     "Olga presented a product.", False),
    ("key_facts", {"facts": ["Olga", "Leeds", "October"], "min_facts": 2, "max_words": 5},
     "In October Olga showed the new lamp in Leeds.", False),
    ("number", {"number": 3500.0}, "3500", True),
    ("number", {"number": 3500.0}, "3,500 metres", True),
    ("number", {"number": 3500.0}, "3.5 km is 3500 m", False),  # the first number must be the answer
    ("number", {"number": 90.0}, "ninety", False),
    ("iso_date", {"date": "2011-12-19"}, "2011-12-19", True),
    ("iso_date", {"date": "2011-12-19"}, "The date is 2011-12-19.", True),
    ("iso_date", {"date": "2011-12-19"}, "19/12/2011", False),
    ("iso_date", {"date": "2011-12-19"}, "2011-19-12", False),
    ("contains", {"any": ["Fatima"]}, "Your name is Fatima.", True),
    ("contains", {"any": ["Oslo"]}, "You live in Osloville.", False),
]


@pytest.mark.parametrize("grader, expect, answer, right", CASES)
def test_each_deterministic_grader(grader, expect, answer, right):
    assert graders.grade({"grader": grader, "expect": expect}, answer) is right


def test_the_long_answer_signals():
    assert first_json_object('text {"a": {"b": 1}} more {"c": 2}') == {"a": {"b": 1}}
    assert first_json_object("{not json} [1, 2]") is None
    assert asked_keys("What is JSON?") is None
    assert asked_keys('Reply with one JSON object with "name" and "city".') == ["name", "city"]
    prompt = 'Extract "name". Reply with one JSON object.'
    assert format_valid('{"name": "A"}', prompt) == 1.0
    assert format_valid('{"who": "A"}', prompt) == 0.0 and format_valid("A", prompt) == 0.0
    assert format_valid("anything", "Summarise this.") is None
    flat = span_stats([-0.1] * 20)
    dip = span_stats([-0.1] * 10 + [-4.0] * 8 + [-0.1] * 10)
    assert flat["min_span_lp"] == pytest.approx(-0.1) and flat["low_span_share"] == 0.0
    assert dip["min_span_lp"] == pytest.approx(-4.0) and dip["low_span_share"] > 0
    assert span_stats([]) == {}
    s = Situation([{"role": "user", "content": prompt}], invalid_format=True)
    assert s.defect == "the local answer is not the JSON object the prompt asks for"


def test_an_answer_that_is_not_the_asked_json_escalates_through_the_router():
    from edgeroute import Router
    from edgeroute.testing import MockLocalModel

    local, cloud = MockLocalModel(), MockCloud()
    router = Router(local_model=local, cloud=cloud, threshold=0.1, trace=False, pregen=False)
    local.enqueue("name is Maria", logprobs=[-0.01] * 3)
    answer = router.ask('Extract "name" from: Maria called. Reply with one JSON object.')
    assert answer.route == "cloud" and "not the JSON object" in answer.reason
    assert answer.signals["format_valid"] == 0.0
    local.enqueue('{"name": "Maria"}', logprobs=[-0.01] * 2)
    assert router.ask('Extract "name" from: Maria called. Reply with one JSON object.').route == "local"


def test_the_cloud_judge_fills_a_fixed_rubric_and_reads_its_verdict():
    task = {"messages": [{"role": "user", "content": "Convert 2 km to metres."}], "expect": {"number": 2000}}
    prompt = judge_prompt(task, "2000")[0]["content"]
    assert "Convert 2 km to metres." in prompt and '"number": 2000' in prompt and prompt.endswith("Verdict:")
    assert verdict("CORRECT.") is True and verdict("incorrect") is False and verdict("maybe") is None
    cloud = MockCloud()
    cloud.enqueue("INCORRECT")
    assert judge(cloud, task, "2000") is False and cloud.requests[-1][0]["content"] == prompt
    stats = agreement([True, False, None, True], [True, True, False, True])
    assert stats["n"] == 3 and stats["unparsed"] == 1 and stats["agreement"] == pytest.approx(2 / 3)


def _row(family, correct, confidence, *, defect=False, i=0):
    return Row({"id": f"{family}-{i}", "family": family}, correct, defect, confidence,
               [1.0, confidence, 0.1, -0.1, 0.0, 0.5, 0.5, confidence], 0.5, 2.0, True, 1.0, 0.001)


def test_the_value_table_counts_each_policy_and_chooses_thresholds_on_other_families():
    rows = []
    for fam in ("a", "b", "c"):
        for i in range(60):
            right = i % 3 != 0
            rows.append(_row(fam, right, 0.9 if right else 0.2, i=i))
    rows.append(_row("a", True, 0.95, defect=True, i=99))
    report = value_table(rows, shipped_threshold=0.5, cloud=CloudProfile(accuracy=1.0, sigma=0.0))
    t = report["table"]
    assert set(t) == set(POLICIES)
    n = len(rows)
    assert t["always-local"]["all"]["local_share"] == 1.0 and t["always-cloud"]["all"]["local_share"] == 0.0
    assert t["oracle"]["all"]["accepted_error"] == 0.0 and t["oracle"]["all"]["retention"] == 1.0
    shipped = t["router-shipped"]["all"]
    assert shipped["local_share"] == pytest.approx(120 / n)  # the defective answer escalates
    assert shipped["accepted_error"] == 0.0 and shipped["quality"] == 1.0
    assert shipped["retention"] == pytest.approx(120 / 121)
    assert t["always-cloud"]["all"]["latency_ms_p50"] == pytest.approx(1000.0)
    assert t["router-shipped"]["all"]["cloud_usd_per_1k_queries"] == pytest.approx((n - 120) / n)
    assert set(report["thresholds"]["router-desktop"]) == {"a", "b", "c"}
    assert t["router-desktop"]["all"]["accepted_error"] == 0.0
    assert "| router-shipped |" in markdown({**report, "model": "m", "shipped_threshold_source": "configured"})
