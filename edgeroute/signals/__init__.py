"""Signals that judge a local answer (two stages: ``features`` from the decode, ``score`` from the features)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from ..local.base import LocalModel
from ..registry import DEFAULT_SIGNALS, SIGNALS
from .base import Features, Signal, confidence_of, confidence_signal, evaluate, floats, rescore
from .perplexity import LogisticMap, PerplexitySignal
from .probe import PregenProbe, ProbeSignal, model_identity
from .query import QuerySignal
from .selfref import SelfRefBlend, SelfRefSignal
from .tokens import TOKEN_FEATURES, TokenStatsSignal


def build_signals(model: LocalModel, config: Any = None, names: Optional[Sequence[str]] = None) -> list[Signal]:
    """The signals named in ``names`` (default: ``DEFAULT_SIGNALS``), built by their registry factories for
    ``model``. Names that do not apply to the model (the probe for a model it was not fitted on) drop out."""
    out: list[Signal] = []
    for name in names if names is not None else DEFAULT_SIGNALS:
        made = SIGNALS.get(name)(model, config)
        out.extend(made if isinstance(made, list) else [made] if made is not None else [])
    return out


def default_signals(model: LocalModel, *, probe: bool = True) -> list[Signal]:
    """The Router's default signals for ``model``: perplexity, the training-free token statistics, the query
    features, Self-REF (silent unless the engine runs an adapter), plus the shipped hidden-state probe when it fits
    the model (its combined confidence is the Router's confidence). When the engine runs a Self-REF adapter and the
    probe fits, the blend of the two becomes the confidence."""
    return build_signals(model, None, [n for n in DEFAULT_SIGNALS if probe or n != "probe"])


__all__ = ["Features", "LogisticMap", "PerplexitySignal", "PregenProbe", "ProbeSignal", "QuerySignal",
           "SelfRefBlend", "SelfRefSignal", "Signal", "TOKEN_FEATURES", "TokenStatsSignal", "build_signals",
           "confidence_of", "confidence_signal", "default_signals", "evaluate", "floats", "model_identity", "rescore"]
