"""How a local answer is decoded: ``Sampling`` (the request's knobs), ``StopScanner`` (stop sequences, streamed
without ever showing a stop string) and the llama.cpp sampler chain that honours them.

Greedy decoding (temperature 0, no schema) is what the shipped calibration was fitted on; anything else is
``Sampling.sampled`` and its answers are flagged ``uncalibrated``. The signals always read the model's unmodified
distribution: samplers change which token is chosen, never the logprob recorded for it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, Optional

import numpy as np

from .._errors import InputError

#: At most this many alternatives per token (OpenAI's limit for ``top_logprobs``).
MAX_TOP_LOGPROBS = 20
#: A request may send at most 4 stop strings (OpenAI's limit); the engine adds its own (a completion format's).
MAX_STOP_SEQUENCES = 4
_MAX_STOPS_IN_ALL = 16


@dataclass(frozen=True)
class Sampling:
    """The decoding knobs of one request. ``temperature`` 0 is greedy; ``top_k`` 0, ``top_p`` 1 and ``min_p`` 0 are
    off; ``seed`` None draws a fresh one; ``stop`` ends the answer before any of its strings (a request sends at most 4);
    ``logprobs`` returns each token's logprob (nats) with ``top_logprobs`` alternatives (0-20); ``json_schema``
    constrains the answer to JSON matching it (llama.cpp's grammar sampler)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: Optional[int] = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    json_schema: Optional[dict[str, Any]] = None

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> InputError:
            return InputError(f"{field} {why}", field=field)

        for name in ("temperature", "top_p", "min_p"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise bad(name, f"must be a finite number, got {value!r}")
        if not 0.0 <= self.temperature <= 2.0:
            raise bad("temperature", f"must be in [0, 2], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise bad("top_p", f"must be in (0, 1], got {self.top_p}")
        if not 0.0 <= self.min_p <= 1.0:
            raise bad("min_p", f"must be in [0, 1], got {self.min_p}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise bad("top_k", f"must be an integer >= 0, got {self.top_k!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise bad("seed", f"must be an integer, got {self.seed!r}")
        if not isinstance(self.stop, tuple) or not all(isinstance(s, str) and s for s in self.stop):
            raise bad("stop", "must be a string or a list of non-empty strings")
        if len(self.stop) > _MAX_STOPS_IN_ALL:
            raise bad("stop", f"holds at most {_MAX_STOPS_IN_ALL} sequences, got {len(self.stop)}")
        if not isinstance(self.logprobs, bool):
            raise bad("logprobs", f"must be true or false, got {self.logprobs!r}")
        k = self.top_logprobs
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_TOP_LOGPROBS:
            raise bad("top_logprobs", f"must be an integer in 0..{MAX_TOP_LOGPROBS}, got {k!r}")
        if k and not self.logprobs:
            raise bad("top_logprobs", "needs logprobs: true")
        if self.json_schema is not None and not isinstance(self.json_schema, dict):
            raise bad("response_format.json_schema.schema", "must be a JSON object")

    @property
    def sampled(self) -> bool:
        """True when the answer is not the greedy one the calibration was fitted on."""
        return self.temperature > 0.0 or self.json_schema is not None

    @property
    def plain(self) -> bool:
        """True when nothing beyond greedy decoding was asked for (the engine's fast path)."""
        return self == GREEDY


GREEDY = Sampling()


class StopScanner:
    """Cuts a streamed text before the first stop string. ``feed`` returns what may be shown now (it holds back a
    tail that could begin a stop string); ``stopped`` is set once one was seen; ``flush`` returns the held tail."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self._hold = max((len(s) for s in stops), default=1) - 1
        self.text = ""  # everything fed, cut at the stop once seen
        self._shown = 0
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        start = max(0, len(self.text) - self._hold)
        self.text += piece
        cut = min((i for i in (self.text.find(s, start) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.text, self.stopped = self.text[:cut], True
            out = self.text[self._shown:]
            self._shown = len(self.text)
            return out
        safe = len(self.text) - self._hold if self.stops else len(self.text)
        out = self.text[self._shown:max(safe, self._shown)]
        self._shown += len(out)
        return out

    def flush(self) -> str:
        out = self.text[self._shown:]
        self._shown = len(self.text)
        return out


def top_alternatives(logits: Any, token: int, logprob: float, k: int,
                     piece: Callable[[int], bytes]) -> list[tuple[str, float]]:
    """The ``k`` likeliest tokens of one step and their logprobs (nats), from the unmodified ``logits``;
    ``logprob`` is the chosen ``token``'s (it gives the softmax's normaliser), ``piece`` a token id's bytes."""
    if k <= 0:
        return []
    log_z = float(logits[token]) - logprob
    best = np.argpartition(logits, -k)[-k:]
    best = best[np.argsort(-logits[best], kind="stable")]
    return [(piece(int(t)).rstrip(b"\x00").decode("utf-8", errors="replace"), float(logits[t]) - log_z)
            for t in best]


def tokens_within(texts: list[str], n_chars: int) -> int:
    """How many leading token texts start before character ``n_chars`` (the tokens an answer cut there keeps)."""
    at = 0
    for i, text in enumerate(texts):
        if at >= n_chars:
            return i
        at += len(text)
    return len(texts)


def sampler_chain(llama: Any, sampling: Sampling) -> Any:
    """llama.cpp's own sampler chain for ``sampling`` (grammar, top-k, top-p, min-p, temperature, then a seeded
    draw; greedy at temperature 0). ``InputError`` when the JSON schema cannot be turned into a grammar."""
    from llama_cpp._internals import LlamaSampler
    from llama_cpp.llama_grammar import LlamaGrammar

    chain = LlamaSampler()
    if sampling.json_schema is not None:
        try:
            grammar = LlamaGrammar.from_json_schema(json.dumps(sampling.json_schema), verbose=False)
        except Exception as exc:  # the converter raises plain ValueError / KeyError / RecursionError
            chain.close()
            raise InputError(f"response_format's JSON schema cannot be enforced locally: {type(exc).__name__}: "
                             f"{str(exc)[:200]}", field="response_format") from None
        chain.add_grammar(llama._model, grammar)
    if sampling.temperature <= 0.0:
        chain.add_greedy()
        return chain
    if sampling.top_k > 0:
        chain.add_top_k(sampling.top_k)
    if sampling.top_p < 1.0:
        chain.add_top_p(sampling.top_p, 1)
    if sampling.min_p > 0.0:
        chain.add_min_p(sampling.min_p, 1)
    chain.add_temp(sampling.temperature)
    seed = sampling.seed if sampling.seed is not None else 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: a fresh one
    chain.add_dist(seed & 0xFFFFFFFF)
    return chain


__all__ = ["GREEDY", "MAX_TOP_LOGPROBS", "Sampling", "StopScanner", "sampler_chain"]
