"""Signals that judge a local answer."""

from __future__ import annotations

from ..local.base import LocalModel
from .base import Signal
from .perplexity import LogisticMap, PerplexitySignal
from .probe import PregenProbe, ProbeSignal, model_identity
from .selfref import SelfRefBlend, SelfRefSignal


def default_signals(model: LocalModel, *, probe: bool = True) -> list[Signal]:
    """The Router's default signals for ``model``: perplexity, Self-REF (silent unless the engine runs an adapter),
    plus the shipped hidden-state probe when it fits the model (its combined confidence is the Router's confidence).
    When the engine runs a Self-REF adapter and the probe fits, the blend of the two becomes the confidence."""
    signals: list[Signal] = [PerplexitySignal(model_sha256=model.fingerprint), SelfRefSignal()]
    if probe:
        p = ProbeSignal(**model_identity(model))
        if p.available:
            signals.append(p)
            adapter = getattr(model, "selfref", None)
            if adapter is not None:
                signals.append(SelfRefBlend(p.confidence_id, adapter.sha256))
    return signals


__all__ = ["LogisticMap", "PerplexitySignal", "PregenProbe", "ProbeSignal", "SelfRefBlend", "SelfRefSignal",
           "Signal", "default_signals"]
