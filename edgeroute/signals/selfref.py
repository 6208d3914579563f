"""Self-REF: the model's own confidence token, read from the forced slot after its answer (never sampled)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..local.base import Generation
from ..local.selfref import selfref_confidence
from ..messages import Message
from .base import Features, Signal


class SelfRefSignal(Signal):
    """``selfref`` = P(<CN>) / (P(<CN>) + P(<UN>)) in [0, 1], when the engine ran a Self-REF adapter's slot
    (``Generation.selfref_logits``); nothing otherwise."""

    name = "selfref"

    def features(self, generation: Generation, messages: Sequence[Message]) -> Features:
        if generation.selfref_logits is None:
            return {}
        return {"selfref": selfref_confidence(*generation.selfref_logits)}

    def score(self, values: Mapping[str, Any], messages: Sequence[Message]) -> dict[str, float]:
        return {}


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1.0 - 1e-6)
    return math.log(p / (1.0 - p))


class SelfRefBlend(Signal):
    """``selfref_combined_confidence``: the probe's combined confidence and Self-REF's, blended without fitted
    weights: the mean of their log-odds. Becomes the Router's confidence when Self-REF is on; its threshold comes from
    its own calibration (``confidence_id`` names the two parts)."""

    name = "selfref_blend"
    provides_confidence = "selfref_combined_confidence"

    def __init__(self, base_confidence_id: str, adapter_sha256: str) -> None:
        self.confidence_id = hashlib.sha256(f"mean-logit|{base_confidence_id}|{adapter_sha256}".encode()).hexdigest()[:16]

    def score(self, values: Mapping[str, Any], messages: Sequence[Message]) -> dict[str, float]:
        if "combined_confidence" not in values or "selfref" not in values:
            return {}
        z = (_logit(values["combined_confidence"]) + _logit(values["selfref"])) / 2.0
        return {"selfref_combined_confidence": 1.0 / (1.0 + math.exp(-z))}
