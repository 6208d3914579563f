"""Signals that judge a local answer."""

from .base import Signal
from .perplexity import LogisticMap, PerplexitySignal

__all__ = ["LogisticMap", "PerplexitySignal", "Signal"]
