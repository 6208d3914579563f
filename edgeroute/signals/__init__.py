"""Signals that judge a local answer."""

from __future__ import annotations

from typing import Optional

from .base import Signal
from .perplexity import LogisticMap, PerplexitySignal
from .probe import PregenProbe, ProbeSignal


def default_signals(model_sha256: str, n_embd: Optional[int], *, probe: bool = True) -> list[Signal]:
    """The Router's default signals: perplexity, plus the shipped hidden-state probe when it fits the model."""
    signals: list[Signal] = [PerplexitySignal(model_sha256=model_sha256)]
    if probe:
        p = ProbeSignal(model_sha256=model_sha256, n_embd=n_embd)
        if p.available:
            signals.append(p)
    return signals


__all__ = ["LogisticMap", "PerplexitySignal", "PregenProbe", "ProbeSignal", "Signal", "default_signals"]
