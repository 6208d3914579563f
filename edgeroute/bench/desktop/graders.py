"""Deterministic graders for desktop tasks, by the task's ``grader`` name. Each returns True / False; none calls a
model. Case, accents and punctuation are ignored where the task allows (``bench.grading.normalize``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ...signals.longform import first_json_object
from ..grading import normalize, numbers_in

_ISO = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")


def label(answer: str, expect: Mapping[str, Any]) -> bool:
    """The first of the given labels named in the answer is the right one."""
    text = normalize(answer)
    found = [(m.start(), lab) for lab in expect["labels"] for m in [re.search(rf"\b{re.escape(lab)}\b", text)] if m]
    return bool(found) and min(found)[1] == expect["label"]


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        try:
            return float(got) == float(want)
        except (TypeError, ValueError):
            return False
    return isinstance(got, str) and normalize(got) == normalize(str(want))


def json_fields(answer: str, expect: Mapping[str, Any]) -> bool:
    """A JSON object with exactly the asked keys, each value equal to the record's."""
    obj = first_json_object(answer)
    want = expect["fields"]
    return obj is not None and set(obj) == set(want) and all(_same(obj[k], v) for k, v in want.items())


def _content_words(text: str) -> set[str]:
    return {w for w in normalize(text).split() if len(w) > 3}


def rewrite(answer: str, expect: Mapping[str, Any]) -> bool:
    """The constraint holds, the answer is one line, and it keeps at least half the source's content words (or,
    shortened, a third): an answer that drops the sentence does not pass."""
    text = answer.strip().strip('"').strip()
    if not text or "\n" in text.strip():
        return False
    words = normalize(text).split()
    source = _content_words(expect["source"])
    keep = len(source & _content_words(text)) / max(len(source), 1)
    if "include" in expect:
        ok = expect["include"].lower() in words
    elif "avoid" in expect:
        ok = expect["avoid"].lower() not in words
    elif "max_words" in expect:
        ok = len(text.split()) <= expect["max_words"]
    else:
        letters = [c for c in text if c.isalpha()]
        ok = bool(letters) and all(c.isupper() for c in letters)
    return ok and keep >= (1 / 3 if "max_words" in expect else 0.5)


def key_facts(answer: str, expect: Mapping[str, Any]) -> bool:
    """At least ``min_facts`` of the passage's key facts appear, within ``max_words``."""
    text = normalize(answer)
    hits = sum(1 for f in expect["facts"] if re.search(rf"\b{re.escape(normalize(f))}\b", text))
    return hits >= expect["min_facts"] and 0 < len(answer.split()) <= expect["max_words"]


def number(answer: str, expect: Mapping[str, Any]) -> bool:
    """The first number in the answer equals the expected one (within 1e-6 relative)."""
    found = numbers_in(answer)
    want = float(expect["number"])
    return bool(found) and abs(found[0] - want) <= 1e-6 * max(1.0, abs(want))


def iso_date(answer: str, expect: Mapping[str, Any]) -> bool:
    """The first ISO date in the answer is the expected day."""
    m = _ISO.search(answer)
    return m is not None and f"{int(m[1]):04d}-{int(m[2]):02d}-{int(m[3]):02d}" == expect["date"]


def contains(answer: str, expect: Mapping[str, Any]) -> bool:
    """Any accepted value appears as a whole word or phrase."""
    text = normalize(answer)
    return any(re.search(rf"\b{re.escape(normalize(v))}\b", text) for v in expect["any"])


GRADERS: dict[str, Callable[[str, Mapping[str, Any]], bool]] = {
    "label": label, "json_fields": json_fields, "rewrite": rewrite, "key_facts": key_facts, "number": number,
    "iso_date": iso_date, "contains": contains,
}


def grade(task: Mapping[str, Any], answer: str) -> bool:
    """``answer`` graded by ``task["grader"]`` against ``task["expect"]``; ``KeyError`` for an unknown grader."""
    return GRADERS[task["grader"]](answer, task["expect"])
