"""Training-free evidence from the decode itself: token logprob, entropy and margin statistics, over the whole
answer and over its answer span.

Everything comes from values the engine records at every step anyway (``Generation.token_logprobs``,
``token_entropies``, ``token_margins``, ``token_texts``), so it costs a few microseconds per answer. Units: nats
(logprobs, NLL, entropy, margin), tokens (lengths), fractions in [0, 1].

The **answer span** is the answer without the words that restate the question or only frame the answer ("The
capital of France is ..."): words found in the question, a few function words, and punctuation. The **first content
token** is the span's first token. When nothing is left (the answer only restates the question), the span is the
whole answer and ``span_empty`` is 1.

Published work finds these training-free signals the most robust across tasks: unnormalised sequence NLL
(arXiv 2412.15176), the first content token's entropy (2605.05166) and token-level quantiles (2404.10136).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..local.base import Generation
from ..messages import Message
from .base import Features, Signal
from .query import last_user_text
from .repetition import loop_tail

#: The features, in a fixed order (names are what ``Answer.signals`` and the probes' layouts use).
TOKEN_FEATURES = (
    "sum_nll", "lp_min", "lp_q10", "lp_q25", "lp_median", "max_entropy", "mean_margin", "min_margin",
    "first_lp", "first_entropy", "first_margin",
    "span_mean_nll", "span_sum_nll", "span_min_lp", "span_mean_entropy", "span_log_tokens", "span_empty",
    "distinct_frac", "loop_frac", "cut_by_length",
)

_FRAMING = frozenset(
    "a an the is are was were be been it its this that these those of in on at to for by with from as and or "
    "answer answers final correct option letter choice i think my so therefore thus would will which what who "
    "s t".split()
)
_WORD = re.compile(r"[a-z0-9]+")


def _fold(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text)
    return "".join(c for c in folded if not unicodedata.combining(c)).lower()


def span_mask(token_texts: Sequence[str], question: str) -> np.ndarray:
    """True for the tokens of the answer span: tokens of words that neither appear in ``question`` nor only frame
    the answer, and that hold a letter or a digit. Words are rebuilt from the token pieces (a piece starting with
    a space or punctuation starts a new word)."""
    asked = set(_WORD.findall(_fold(question)))
    n = len(token_texts)
    mask = np.zeros(n, dtype=bool)
    word_tokens: list[int] = []
    word = ""

    def close() -> None:
        words = _WORD.findall(_fold(word))
        if words and not all(w in asked or w in _FRAMING for w in words):
            for i in word_tokens:
                if _WORD.search(_fold(token_texts[i])):
                    mask[i] = True

    for i, piece in enumerate(token_texts):
        starts_word = not piece or piece[0].isspace() or not piece[0].isalnum()
        if starts_word and word_tokens:
            close()
            word_tokens, word = [], ""
        word_tokens.append(i)
        word += piece
    if word_tokens:
        close()
    return mask


def token_features(generation: Generation, question: str) -> dict[str, float]:
    """``TOKEN_FEATURES`` of ``generation`` (an answer to ``question``); {} when no token was scored."""
    lp = np.asarray(generation.token_logprobs, dtype=np.float64)
    ent = np.asarray(generation.token_entropies, dtype=np.float64)
    if lp.size == 0 or not (np.all(np.isfinite(lp)) and np.all(np.isfinite(ent))):
        return {}
    margin = np.asarray(generation.token_margins, dtype=np.float64)
    if margin.size != lp.size or not np.all(np.isfinite(margin)):
        margin = np.zeros_like(lp)  # an engine without margins: a constant, so it carries no evidence
    texts = list(generation.token_texts)
    mask = span_mask(texts, question) if len(texts) == lp.size else np.ones(lp.size, dtype=bool)
    empty = not mask.any()
    if empty:
        mask = np.ones(lp.size, dtype=bool)
    first = int(np.argmax(mask))
    ids = generation.token_ids
    loop_tokens, _ = loop_tail(ids)
    q10, q25, q50 = np.quantile(lp, [0.1, 0.25, 0.5])
    return {
        "sum_nll": float(-lp.sum()),
        "lp_min": float(lp.min()),
        "lp_q10": float(q10),
        "lp_q25": float(q25),
        "lp_median": float(q50),
        "max_entropy": float(ent.max()),
        "mean_margin": float(margin.mean()),
        "min_margin": float(margin.min()),
        "first_lp": float(lp[first]),
        "first_entropy": float(ent[first]),
        "first_margin": float(margin[first]),
        "span_mean_nll": float(-lp[mask].mean()),
        "span_sum_nll": float(-lp[mask].sum()),
        "span_min_lp": float(lp[mask].min()),
        "span_mean_entropy": float(ent[mask].mean()),
        "span_log_tokens": math.log1p(int(mask.sum())),
        "span_empty": 1.0 if empty else 0.0,
        "distinct_frac": len(set(ids)) / len(ids) if ids else 1.0,
        "loop_frac": loop_tokens / len(ids) if ids else 0.0,
        "cut_by_length": 1.0 if generation.finish_reason == "length" else 0.0,
    }


class TokenStatsSignal(Signal):
    """``TOKEN_FEATURES``: training-free statistics of the decode (no fitted parameters, no confidence of its own;
    the probes read them)."""

    name = "tokens"

    def features(self, generation: Generation, messages: Sequence[Message]) -> Features:
        return dict(token_features(generation, last_user_text(messages)))

    def score(self, values: Mapping[str, Any], messages: Sequence[Message]) -> dict[str, float]:
        return {}
