"""The policy seam: decide, from the signals, whether the local answer stands."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Optional


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
