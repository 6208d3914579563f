"""One decision point of the online policy: a LinUCB model per reward part, combined by the current lambdas.

Each arm learns its quality, energy, latency and cost (``reward.COMPONENTS``, in reference units) as four linear
models of the same context, and an arm's score is ``combine(predicted parts, weights) + quality bonus``. So a change
of lambdas (a preset) changes the choice at once, with nothing to unlearn; costs, which are nearly noise-free, are
learned with a short memory (``cost_discount``: a price or latency change is followed within about
``1 / (1 - cost_discount)`` answers); quality, which is noisy, with a long one plus a change detector
(``LinUCB.change``: when an arm's quality moves, its old quality evidence is dropped). Exploration comes from the
quality model's uncertainty only (an arm never tried predicts zero cost, so it is tried).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Optional

import numpy as np

from .._errors import PolicyError
from .linucb import LinUCB
from .reward import COMPONENTS, RewardWeights, combine


def component_key(point_key: str, component: str) -> str:
    """The store key of ``component``'s model at the decision point ``point_key`` (``<model sha>:<point>``)."""
    return f"{point_key}/{component}"


class ComponentBandits:
    """The per-part models of one decision point (``models[component]``, all with the same arms and dimension)."""

    def __init__(self, models: dict[str, LinUCB]) -> None:
        if set(models) != set(COMPONENTS):
            raise ValueError(f"need one model per reward part {COMPONENTS}, got {sorted(models)}")
        self.models = models

    @classmethod
    def fresh(cls, make: Callable[[str], LinUCB]) -> "ComponentBandits":
        return cls({c: make(c) for c in COMPONENTS})

    @property
    def quality(self) -> LinUCB:
        return self.models["quality"]

    @property
    def arms(self) -> Sequence[str]:
        return tuple(self.quality.arms)

    def learned(self) -> int:
        """Answers learned from at this point (quality updates, over all arms)."""
        return sum(arm.n for arm in self.quality.arms.values())

    def predict(self, x: Sequence[float]) -> dict[str, dict[str, float]]:
        """Every arm's predicted parts for context ``x``."""
        v = self.quality.context(x)
        return {arm: {c: float(m.arms[arm].theta @ v) for c, m in self.models.items()} for arm in self.arms}

    def bounds(self, x: Sequence[float], weights: RewardWeights) -> dict[str, tuple[float, float]]:
        """Every arm's (predicted reward under ``weights``, exploration bonus) for context ``x``."""
        bonus = self.quality.bonuses(x)
        return {arm: (combine(parts, weights), bonus[arm]) for arm, parts in self.predict(x).items()}

    def scores(self, x: Sequence[float], weights: RewardWeights, *, explore: bool = True) -> dict[str, float]:
        return {arm: est + (b if explore else 0.0) for arm, (est, b) in self.bounds(x, weights).items()}

    def select(self, x: Sequence[float], weights: RewardWeights, *, explore: bool = True,
               allowed: Optional[Sequence[str]] = None) -> str:
        scores = self.scores(x, weights, explore=explore)
        return max([a for a in (allowed or self.arms)], key=lambda a: scores[a])

    def update(self, arm: str, x: Sequence[float], parts: dict[str, float]) -> None:
        """Learn ``parts`` (one value per reward part) for ``arm`` in context ``x``, validated before any change."""
        v = self.quality.context(x)
        missing = set(COMPONENTS) - set(parts)
        if missing or not all(np.isfinite(parts[c]) for c in COMPONENTS) or arm not in self.quality.arms:
            raise PolicyError(f"update for arm {arm!r}: parts {parts!r} (missing {sorted(missing)}) rejected")
        for c in COMPONENTS:
            self.models[c].update(arm, v, float(parts[c]))
