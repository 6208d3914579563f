"""Signals that judge a local answer (two stages: ``features`` from the decode, ``score`` from the features)."""

from __future__ import annotations

from ..local.base import LocalModel
from .base import Features, Signal, confidence_of, confidence_signal, evaluate, floats, rescore
from .perplexity import LogisticMap, PerplexitySignal
from .probe import PregenProbe, ProbeSignal, model_identity
from .query import QuerySignal
from .selfref import SelfRefBlend, SelfRefSignal
from .tokens import TOKEN_FEATURES, TokenStatsSignal


def default_signals(model: LocalModel, *, probe: bool = True) -> list[Signal]:
    """The Router's default signals for ``model``: perplexity, the training-free token statistics, the query
    features, Self-REF (silent unless the engine runs an adapter), plus the shipped hidden-state probe when it fits
    the model (its combined confidence is the Router's confidence). When the engine runs a Self-REF adapter and the
    probe fits, the blend of the two becomes the confidence."""
    signals: list[Signal] = [PerplexitySignal(model_sha256=model.fingerprint), TokenStatsSignal(), QuerySignal(),
                             SelfRefSignal()]
    if probe:
        p = ProbeSignal(**model_identity(model))
        if p.available:
            signals.append(p)
            adapter = getattr(model, "selfref", None)
            if adapter is not None:
                signals.append(SelfRefBlend(p.confidence_id, adapter.sha256))
    return signals


__all__ = ["Features", "LogisticMap", "PerplexitySignal", "PregenProbe", "ProbeSignal", "QuerySignal",
           "SelfRefBlend", "SelfRefSignal", "Signal", "TOKEN_FEATURES", "TokenStatsSignal", "confidence_of",
           "confidence_signal", "default_signals", "evaluate", "floats", "model_identity", "rescore"]
