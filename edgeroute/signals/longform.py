"""Evidence for long answers (summaries, rewrites, extractions), where one average over the answer hides the one
shaky claim: the lowest-confidence span, and whether an answer asked to be JSON is JSON with the asked keys.

- ``min_span_lp``: the lowest mean token logprob over a sliding window of ``SPAN_TOKENS`` tokens (the whole answer
  when shorter), nats. ``low_span_share``: the share of windows whose mean NLL is above ``LOW_SPAN_NLL`` nats.
- ``format_valid`` (only when the prompt asks for JSON): 1 when the answer holds a JSON object with exactly the keys
  the prompt names in double quotes (any keys when it names none), else 0. The policies treat 0 as a defect.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from ..local.base import Generation
from ..messages import Message
from .base import Features, Signal
from .query import last_user_text

SPAN_TOKENS = 8
LOW_SPAN_NLL = 2.0
#: A request for JSON output ("reply with one JSON object", "as JSON"), not a mention ("what is JSON?").
_JSON_ASK = re.compile(r"\b(?:reply|respond|answer|return|output|format|give|produce|write)\b[^.?!\n]{0,40}"
                       r"\bjson\b|\b(?:as|in) json\b", re.IGNORECASE)


def first_json_object(text: str) -> Optional[dict[str, Any]]:
    """The first ``{...}`` in ``text`` that parses as a JSON object (code fences around it allowed), or None."""
    for start in [m.start() for m in re.finditer(r"\{", text)]:
        depth = 0
        for end in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                try:
                    value = json.loads(text[start:end + 1])
                except ValueError:
                    break
                return value if isinstance(value, dict) else None
    return None


def span_stats(logprobs: Sequence[float], width: int = SPAN_TOKENS) -> dict[str, float]:
    """``min_span_lp`` and ``low_span_share`` of one answer's token logprobs (nats); {} for an empty answer."""
    lp = np.asarray(logprobs, dtype=np.float64)
    if lp.size == 0:
        return {}
    w = min(width, lp.size)
    means = np.convolve(lp, np.ones(w) / w, mode="valid")
    return {"min_span_lp": float(means.min()), "low_span_share": float(np.mean(-means > LOW_SPAN_NLL))}


def asked_keys(prompt: str) -> Optional[list[str]]:
    """The JSON keys a prompt asks for (double-quoted words), [] for any, or None when it does not ask for JSON."""
    if not _JSON_ASK.search(prompt):
        return None
    return re.findall(r'"([A-Za-z_][\w ]{0,40})"', prompt)


def format_valid(answer: str, prompt: str) -> Optional[float]:
    """1.0 / 0.0 as described above, or None when the prompt does not ask for JSON."""
    keys = asked_keys(prompt)
    if keys is None:
        return None
    obj = first_json_object(answer)
    return float(obj is not None and (not keys or set(obj) == set(keys)))


class LongFormSignal(Signal):
    """``min_span_lp``, ``low_span_share`` and (when JSON is asked for) ``format_valid``."""

    name = "longform"

    def features(self, generation: Generation, messages: Sequence[Message]) -> Features:
        out: Features = dict(span_stats(generation.token_logprobs))
        valid = format_valid(generation.text, last_user_text(messages))
        if valid is not None:
            out["format_valid"] = valid
        return out

    def score(self, values: Mapping[str, Any], messages: Sequence[Message]) -> dict[str, float]:
        return {}
