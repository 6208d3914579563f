"""What the online policy looks at: the situation of one query, turned into LinUCB context vectors.

Two decision points, each with its own feature layout (names listed so a saved state can be checked against it):
``PRE_FEATURES`` before generation (the pre-generation probe, query features, device state) and ``POST_FEATURES``
after it (the response-level signals added). Every feature is scaled to about [0, 1]; an unknown signal is 0.5 with
its ``*_known`` flag 0, so a missing probe or Self-REF adapter never produces NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..messages import Message
from ..signals.query import QUERY_FEATURES, features_of, last_user_text


@dataclass(frozen=True)
class DeviceState:
    """``on_battery`` (None: no battery or unknown), ``cloud_reachable`` (False while the circuit breaker is open or
    there is no cloud) and ``cloud_latency_s``, the running average of recent cloud answers (None: none yet)."""

    on_battery: Optional[bool] = None
    cloud_reachable: bool = True
    cloud_latency_s: Optional[float] = None


@dataclass
class Situation:
    """One query at a decision point. ``signals`` holds what is known so far (``pregen_confidence`` before
    generation; every signal after it); ``confidence`` is the Router's combined confidence (after generation)."""

    messages: Sequence[Message]
    signals: Mapping[str, float] = field(default_factory=dict)
    confidence: Optional[float] = None
    truncated: bool = False
    device: DeviceState = field(default_factory=DeviceState)
    #: The local answer ends in a loop of repeated tokens (``signals.repetition``).
    repeating: bool = False
    #: In a conversation: this turn's 0-based index, and the turns since the cloud last answered (None: never).
    turn: int = 0
    since_cloud: Optional[int] = None
    #: The prompt's prefill time estimated before it runs, seconds (None: unknown).
    prefill_s: Optional[float] = None
    #: The prompt asked for JSON and the answer is not a JSON object with the asked keys (``signals.longform``).
    invalid_format: bool = False

    @property
    def defect(self) -> Optional[str]:
        """Why the local answer cannot stand whatever its confidence (cut off, or stuck in a loop), or None."""
        if self.truncated:
            return "the local answer was cut off by the context window"
        if self.repeating:
            return "the local answer ends in a loop of repeated tokens"
        if self.invalid_format:
            return "the local answer is not the JSON object the prompt asks for"
        return None


_QUERY = ("q_log_chars", "q_digit_frac", "q_log_numbers", "q_yes_no", "q_what", "q_which", "q_who", "q_how")
_QUERY_INDEX = [QUERY_FEATURES.index(q) for q in _QUERY]
_QUERY_SCALE = {"q_log_chars": 8.0, "q_log_numbers": 3.0}
_DEVICE = ("on_battery", "cloud_reachable", "cloud_latency_s")
#: Added after the first releases, so last (saved states are widened, ``LinUCB.widened``): the log turn index (0
#: for a lone query), 1 / turns since the cloud last answered (0: never), the log estimated prefill seconds.
_CONVERSATION = ("turn", "recent_cloud", "prefill_s")
#: Optional probabilities: (signal name, context name); each adds the value and a ``*_known`` flag.
_PROBS_PRE = (("pregen_confidence", "pregen"),)
_PROBS_POST = (("pregen_confidence", "pregen"), ("perplexity_confidence", "perplexity"),
               ("probe_confidence", "probe"), ("selfref", "selfref"))


def _names(probs: Sequence[tuple[str, str]], post: bool) -> tuple[str, ...]:
    out = ["bias"]
    if post:
        out += ["confidence", "mean_nll", "log_answer_tokens"]
    for _, short in probs:
        out += [short, f"{short}_known"]
    return tuple(out + list(_QUERY) + list(_DEVICE) + list(_CONVERSATION))


PRE_FEATURES = _names(_PROBS_PRE, post=False)
POST_FEATURES = _names(_PROBS_POST, post=True)
#: Where the pre-generation probe's value and flag sit in a ``PRE_FEATURES`` context.
PRE_PREGEN = (PRE_FEATURES.index("pregen"), PRE_FEATURES.index("pregen_known"))


def _clip01(v: float) -> float:
    return min(max(v, 0.0), 1.0) if math.isfinite(v) else 0.5


def _context(s: Situation, probs: Sequence[tuple[str, str]], post: bool) -> np.ndarray:
    values: list[float] = [1.0]
    if post:
        conf = s.confidence if s.confidence is not None else 0.0
        values += [_clip01(conf), _clip01(s.signals.get("mean_nll", 0.0) / 5.0),
                   _clip01(s.signals.get("log_answer_tokens", 0.0) / 6.0)]
    for name, _ in probs:
        v = s.signals.get(name)
        values += [0.5, 0.0] if v is None or not math.isfinite(v) else [_clip01(v), 1.0]
    q = features_of(last_user_text(s.messages), len(s.messages))
    values += [_clip01(q[i] / _QUERY_SCALE.get(name, 1.0)) for i, name in zip(_QUERY_INDEX, _QUERY)]
    d = s.device
    latency = d.cloud_latency_s if d.cloud_latency_s is not None else 1.0
    values += [1.0 if d.on_battery else 0.0, 1.0 if d.cloud_reachable else 0.0, _clip01(latency / 10.0)]
    values += [_clip01(math.log1p(s.turn) / math.log(16.0)), 1.0 / s.since_cloud if s.since_cloud else 0.0,
               _clip01(math.log1p(s.prefill_s or 0.0) / math.log(61.0))]
    return np.asarray(values, dtype=np.float64)


def pre_context(s: Situation) -> np.ndarray:
    """The context before generation, laid out as ``PRE_FEATURES``."""
    return _context(s, _PROBS_PRE, post=False)


def post_context(s: Situation) -> np.ndarray:
    """The context after generation, laid out as ``POST_FEATURES``."""
    return _context(s, _PROBS_POST, post=True)
