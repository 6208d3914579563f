"""The policy seam: decide, from the signals, whether to answer locally and whether the local answer stands.

A policy answers at two points: ``before`` generation (``None``: no opinion, generate locally) and ``judge`` after it.
Policies that learn also hear how each answer went (``settle``: its costs, and its quality when known at once) and
later feedback on its quality (``feedback``). Simple policies implement ``decide`` alone.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from collections.abc import Callable
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .context import Situation
    from .reward import Outcome


@dataclass(frozen=True)
class Decision:
    """``escalate`` True sends the query to the cloud; ``reason`` says why, in words a user can read."""

    escalate: bool
    reason: str


class Policy(abc.ABC):
    """Decides accept-local vs escalate for one answer."""

    #: The confidence threshold in force (reported on every Answer), or None when the policy has none.
    threshold: Optional[float] = None

    @abc.abstractmethod
    def decide(self, confidence: Optional[float], *, truncated: bool = False) -> Decision:
        """``confidence`` is P(local answer correct) in [0, 1], or None when unknown."""

    def before(self, answer_id: str, situation: "Situation",
               probe: Optional[Callable[[], Optional[float]]] = None) -> Optional[Decision]:
        """Before generation: ``escalate`` True sends the query straight to the cloud; None: no opinion (the
        pre-generation probe's threshold decides). ``probe()`` runs the pre-generation probe (a prefill, tens of
        ms) and returns its P(correct), or None; a policy calls it only when the answer matters."""
        return None

    def judge(self, answer_id: str, situation: "Situation") -> Decision:
        """After generation: accept the local answer or escalate (default: escalate a defective answer, else
        ``decide`` on the confidence)."""
        if (situation.repeating or situation.invalid_format) and not situation.truncated:
            return Decision(True, str(situation.defect))
        return self.decide(situation.confidence, truncated=situation.truncated)

    def settle(self, answer_id: str, outcome: "Outcome") -> None:
        """The answer ``answer_id`` was delivered with ``outcome`` (costs, and quality when already known)."""

    def feedback(self, answer_id: str, quality: float) -> bool:
        """Quality in [0, 1] for an earlier answer; True when the policy learned from it."""
        return False
