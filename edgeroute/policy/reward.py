"""The online policy's reward: quality minus weighted energy, latency and cost, each in reference units.

``reward = quality - lambda_E * J / REF_J - lambda_L * s / REF_S - lambda_C * $ / REF_USD`` with quality in [0, 1]
and the references in ``_constants`` (5 J, 1 s, US$ 0.0001), so the lambdas are unitless and comparable: lambda 0.1
on energy means a 5 J answer costs as much as a 0.1 drop in the chance of being right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from .. import _constants as C
from .._errors import ConfigError, PolicyError


@dataclass(frozen=True)
class RewardWeights:
    """The lambdas: weight of energy (per ``REF_J``), latency (per ``REF_S``) and money (per ``REF_USD``)."""

    energy: float
    latency: float
    cost: float

    def __post_init__(self) -> None:
        for name in ("energy", "latency", "cost"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"lambda_{name} must be a finite number >= 0, got {value!r}")

    @classmethod
    def preset(cls, name: str, *, energy: Optional[float] = None, latency: Optional[float] = None,
               cost: Optional[float] = None) -> "RewardWeights":
        """A named preset (``balanced``, ``battery-saver``, ``quality-first``, ``cost-saver``), any lambda
        overridden."""
        if name not in C.REWARD_PRESETS:
            raise ConfigError(f"unknown preset {name!r}; presets: {sorted(C.REWARD_PRESETS)}")
        e, lat, c = C.REWARD_PRESETS[name]
        return cls(e if energy is None else energy, lat if latency is None else latency, c if cost is None else cost)


@dataclass(frozen=True)
class Outcome:
    """What one answer cost and how good it was: device joules, seconds until the answer, US dollars paid to the
    cloud, and quality in [0, 1] (None: not known yet)."""

    route: str
    joules: float
    seconds: float
    dollars: float
    quality: Optional[float] = None


#: The reward's parts, each in its reference unit: quality in [0, 1], joules / ``REF_J``, seconds / ``REF_S``,
#: dollars / ``REF_USD``.
COMPONENTS = ("quality", "energy", "latency", "cost")


def components(outcome: Outcome, quality: Optional[float] = None) -> dict[str, float]:
    """``outcome``'s reward parts in reference units (its own quality unless ``quality`` is given)."""
    q = outcome.quality if quality is None else quality
    if q is None or not 0.0 <= q <= 1.0:
        raise PolicyError(f"quality must be in [0, 1], got {q!r}")
    return {"quality": float(q), "energy": outcome.joules / C.REWARD_REF_J, "latency": outcome.seconds / C.REWARD_REF_S,
            "cost": outcome.dollars / C.REWARD_REF_USD}


def combine(parts: dict[str, float], weights: RewardWeights) -> float:
    """Quality minus the weighted costs, from parts in reference units (measured or predicted)."""
    return (parts["quality"] - weights.energy * parts["energy"] - weights.latency * parts["latency"]
            - weights.cost * parts["cost"])


def reward(outcome: Outcome, weights: RewardWeights, quality: Optional[float] = None) -> float:
    """The reward of ``outcome`` (its own quality unless ``quality`` is given)."""
    return combine(components(outcome, quality), weights)
