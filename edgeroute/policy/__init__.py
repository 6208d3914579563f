"""Routing policies."""

from .base import Decision, Policy
from .threshold import ThresholdPolicy

__all__ = ["Decision", "Policy", "ThresholdPolicy"]
