"""The engine's fingerprint on a fixed prompt, recorded with every fitted artifact and checked at load.

Hidden-state capture and the logprob-based artifacts (probes, perplexity map, calibrations) depend on llama.cpp
internals: a new engine release can shift logits or hidden states without any error. Each artifact records the
engine version it was fitted with and this golden measurement (the greedy first token of a fixed prompt, its
logprob and the step's entropy in nats, and the norm of the prompt's hidden state). At load the Router measures
the same on the engine it runs; when they disagree beyond ``TOLERANCE`` the artifact is refused with one warning
naming both versions. A different version whose outputs agree is accepted.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from ..messages import Message

GOLDEN_MESSAGES: list[Message] = [{"role": "user", "content": "What is the capital of France?"}]
#: Largest accepted differences: logprob and entropy in nats; the hidden-state norm relative.
TOLERANCE = {"logprob": 0.05, "entropy": 0.05, "hidden_norm": 0.02}


def measure(model: Any) -> dict[str, Any]:
    """The golden measurement of ``model`` (a ``LocalModel``) with its ``engine_version``."""
    gen = model.generate(GOLDEN_MESSAGES, max_tokens=1, temperature=0.0)
    hidden = gen.prompt_hidden
    return {
        "engine": model.engine_version,
        "token": int(gen.token_ids[0]) if gen.token_ids else None,
        "logprob": round(float(gen.token_logprobs[0]), 5) if gen.token_ids else None,
        "entropy": round(float(gen.token_entropies[0]), 5) if gen.token_ids else None,
        "hidden_norm": round(float(math.sqrt(float((hidden.astype("float64") ** 2).sum()))), 4)
        if hidden is not None else None,
    }


def mismatch(recorded: dict[str, Any], now: dict[str, Any]) -> Optional[str]:
    """Why ``now`` differs from the ``recorded`` measurement (None when they agree within ``TOLERANCE``). A value
    either side lacks is not compared (a model without hidden states has no norm)."""
    if recorded.get("token") != now.get("token"):
        return f"first token {recorded.get('token')} vs {now.get('token')}"
    for key, tol in TOLERANCE.items():
        a, b = recorded.get(key), now.get(key)
        if a is None or b is None:
            continue
        diff = abs(a - b) / (abs(a) if key == "hidden_norm" and a else 1.0)
        if diff > tol:
            return f"{key.replace('_', ' ')} {a:g} vs {b:g}"
    return None


__all__ = ["GOLDEN_MESSAGES", "TOLERANCE", "measure", "mismatch"]
