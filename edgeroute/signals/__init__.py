"""Signals that judge a local answer."""

from __future__ import annotations

from typing import Optional

from .base import Signal
from .perplexity import LogisticMap, PerplexitySignal
from .probe import PregenProbe, ProbeSignal
from .selfref import SelfRefBlend, SelfRefSignal


def default_signals(model_sha256: str, n_embd: Optional[int], *, probe: bool = True,
                    selfref_adapter: Optional[str] = None) -> list[Signal]:
    """The Router's default signals: perplexity, Self-REF (silent unless the engine runs an adapter), plus the
    shipped hidden-state probe when it fits the model (its combined confidence is the Router's confidence). With
    ``selfref_adapter`` (the adapter's SHA-256) and the probe, the blend of the two becomes the confidence."""
    signals: list[Signal] = [PerplexitySignal(model_sha256=model_sha256), SelfRefSignal()]
    if probe:
        p = ProbeSignal(model_sha256=model_sha256, n_embd=n_embd)
        if p.available:
            signals.append(p)
            if selfref_adapter:
                signals.append(SelfRefBlend(p.confidence_id, selfref_adapter))
    return signals


__all__ = ["LogisticMap", "PerplexitySignal", "PregenProbe", "ProbeSignal", "SelfRefBlend", "SelfRefSignal",
           "Signal", "default_signals"]
