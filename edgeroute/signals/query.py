"""Query features: cheap numbers about the question itself, known before any token is generated."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..local.base import Generation
from ..messages import Message
from .base import Features, Signal

QUERY_FEATURES = (
    "q_log_chars", "q_log_words", "q_digit_frac", "q_log_numbers", "q_upper_frac", "q_ends_question",
    "q_what", "q_which", "q_who", "q_how", "q_yes_no", "q_quoted", "q_log_turns",
)
_STARTS = {"q_what": "what", "q_which": "which", "q_who": "who", "q_how": "how"}
_YES_NO = re.compile(r"^(is|are|does|do|can|was|were|will|has|have)\b")


def last_user_text(messages: Sequence[Message]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


def query_features(messages: Sequence[Message]) -> list[float]:
    """``QUERY_FEATURES`` for the last user message (and the number of turns), in that order."""
    return list(features_of(last_user_text(messages), len(messages)))


@functools.lru_cache(maxsize=256)
def features_of(text: str, turns: int) -> tuple[float, ...]:
    """``QUERY_FEATURES`` of a question ``text`` asked at turn ``turns`` (cached: every decision point of one query
    reads them)."""
    lower = text.strip().lower()
    n = max(len(text), 1)
    out = {
        "q_log_chars": math.log1p(len(text)),
        "q_log_words": math.log1p(len(text.split())),
        "q_digit_frac": sum(c.isdigit() for c in text) / n,
        "q_log_numbers": math.log1p(len(re.findall(r"\d+", text))),
        "q_upper_frac": sum(c.isupper() for c in text) / n,
        "q_ends_question": 1.0 if "?" in text else 0.0,
        "q_yes_no": 1.0 if _YES_NO.match(lower) else 0.0,
        "q_quoted": 1.0 if re.search(r"['\"“‘].+['\"”’]", text) else 0.0,
        "q_log_turns": math.log1p(turns),
    }
    for key, word in _STARTS.items():
        out[key] = 1.0 if lower.startswith(word) else 0.0
    return tuple(float(out[k]) for k in QUERY_FEATURES)


class QuerySignal(Signal):
    """``QUERY_FEATURES`` of the question, as features (the probes read them)."""

    name = "query"

    def features(self, generation: Generation, messages: Sequence[Message]) -> Features:
        return dict(zip(QUERY_FEATURES, query_features(messages)))

    def score(self, values: Mapping[str, Any], messages: Sequence[Message]) -> dict[str, float]:
        return {}
