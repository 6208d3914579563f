"""Routing policies: the calibrated threshold, and the online LinUCB policy inside its guardrail."""

from .base import Decision, Policy
from .context import DeviceState, Situation
from .linucb import LinUCB
from .online import LinUCBPolicy
from .reward import Outcome, RewardWeights
from .threshold import ThresholdPolicy

__all__ = ["Decision", "DeviceState", "LinUCB", "LinUCBPolicy", "Outcome", "Policy", "RewardWeights", "Situation",
           "ThresholdPolicy"]
