"""Mid-stream handoff: a running score of the answer decoded so far, and the rule that stops a hopeless decode.

Every ``every`` tokens (default 8) the engine's ``watch`` hook hands the prefix's evidence (token ids, logprobs and
entropies in nats) to ``HandoffWatch``, which asks, in order:

- ``repetition``: the prefix already ends in a loop of ``REPEAT_MIN_LOOP_TOKENS`` tokens (the Router escalates an
  answer that ends in one whatever its confidence, so going on is wasted);
- ``stats``: ``PrefixModel``, a logistic model of the running NLL and entropy statistics, estimates the chance
  that the finished answer will be accepted *and* correct; below ``floor`` the decode stops.

The floor is chosen by ``edgeroute bench handoff`` so that at most ``max_cut`` (default 2 %) of the calibration
split's accepted-and-correct answers would have been cut at any of their checkpoints (a conformal order statistic
of each answer's lowest prefix score), and saved with the calibration (``Calibration.handoff``). Like every
guarantee here it covers traffic drawn like that split. Offline, and for prompts that may not leave the device,
the Router does not watch at all: the answer completes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np

from .._constants import HANDOFF_EVERY_TOKENS, REPEAT_MIN_LOOP_TOKENS
from .._errors import ConfigError
from .repetition import loop_tail

#: The prefix statistics ``PrefixModel`` reads, in order.
PREFIX_FEATURES = ("mean_nll", "max_nll", "mean_entropy", "recent_nll", "recent_entropy", "high_entropy_frac",
                   "loop_frac", "distinct_frac", "log_tokens")
#: The components a handoff can use, in the order the benchmark's ablation adds them.
COMPONENTS = ("repetition", "stats")


def prefix_features(ids: Sequence[int], logprobs: Sequence[float], entropies: Sequence[float],
                    recent: int = HANDOFF_EVERY_TOKENS) -> np.ndarray:
    """``PREFIX_FEATURES`` of a prefix (at least one token): NLL and entropy in nats, shares in [0, 1]."""
    n = len(ids)
    nll = -np.asarray(logprobs[:n], dtype=np.float64)
    ent = np.asarray(entropies[:n], dtype=np.float64)
    tail = slice(max(0, n - recent), n)
    return np.array([nll.mean(), nll.max(), ent.mean(), nll[tail].mean(), ent[tail].mean(), float(np.mean(ent > 2.0)),
                     loop_tail(ids)[0] / n, len(set(ids)) / n, math.log(n)])


@dataclass(frozen=True)
class PrefixModel:
    """P(the finished answer is accepted and correct | the prefix so far): logistic in ``PREFIX_FEATURES``,
    standardised by ``mean`` / ``scale``."""

    weights: tuple[float, ...]
    intercept: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    features: tuple[str, ...] = PREFIX_FEATURES

    def __post_init__(self) -> None:
        d = len(self.features)
        if self.features != PREFIX_FEATURES:
            raise ConfigError(f"prefix model was fitted on features {list(self.features)}, this version computes "
                              f"{list(PREFIX_FEATURES)}")
        if not (len(self.weights) == len(self.mean) == len(self.scale) == d) or not all(
                math.isfinite(v) for v in (*self.weights, *self.mean, *self.scale, self.intercept)) or min(
                self.scale) <= 0:
            raise ConfigError("prefix model: weights, mean and scale must be finite, one per feature (scale > 0)")

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The score of each row of ``x`` (prefixes x ``PREFIX_FEATURES``), or of one feature vector."""
        z = (np.asarray(x, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-np.clip(z @ np.asarray(self.weights) + self.intercept, -40.0, 40.0)))

    def score(self, x: np.ndarray) -> float:
        return float(self.scores(x))


@dataclass(frozen=True)
class HandoffRule:
    """What ``Calibration.handoff`` holds: the components in use, the check interval (tokens), the floor on the
    prefix score (None: the stats component is off), its guarantee and the model."""

    components: tuple[str, ...]
    every: int = HANDOFF_EVERY_TOKENS
    floor: Optional[float] = None
    max_cut: float = 0.02
    model: Optional[PrefixModel] = None
    #: How the floor was chosen (calibration answers, the cut share measured there, the split it covers).
    basis: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.components) - set(COMPONENTS)
        if unknown or self.every < 1:
            raise ConfigError(f"handoff: unknown components {sorted(unknown)} (known: {COMPONENTS}) or every < 1")
        if "stats" in self.components and (self.model is None or self.floor is None):
            raise ConfigError("handoff: the stats component needs a prefix model and a floor")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["components"] = list(self.components)
        if self.model is not None:
            d["model"] = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.model).items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HandoffRule":
        """``ConfigError`` for a damaged section."""
        try:
            m = d.get("model")
            model = None if m is None else PrefixModel(
                tuple(float(v) for v in m["weights"]), float(m["intercept"]), tuple(float(v) for v in m["mean"]),
                tuple(float(v) for v in m["scale"]), tuple(str(f) for f in m.get("features", PREFIX_FEATURES)))
            return cls(tuple(str(c) for c in d["components"]), int(d.get("every", HANDOFF_EVERY_TOKENS)),
                       None if d.get("floor") is None else float(d["floor"]), float(d.get("max_cut", 0.02)), model,
                       dict(d.get("basis") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"unreadable handoff section: {exc}") from exc

    def check(self, ids: Sequence[int], logprobs: Sequence[float], entropies: Sequence[float]) -> Optional[str]:
        """Why to stop now (``None``: go on). Call it after token ``n``; it looks only every ``every`` tokens."""
        n = len(ids)
        if n == 0 or n % self.every:
            return None
        if "repetition" in self.components:
            loop = loop_tail(ids)[0]
            if loop >= REPEAT_MIN_LOOP_TOKENS:
                return f"a loop of {loop} repeated tokens"
        if "stats" in self.components and self.model is not None and self.floor is not None:
            s = self.model.score(prefix_features(ids, logprobs, entropies, self.every))
            if s < self.floor:
                return f"prefix score {s:.3f} < floor {self.floor:.3f}"
        return None


class HandoffWatch:
    """The engine's ``watch`` hook for one generation: remembers why (and after how many tokens) it stopped."""

    def __init__(self, rule: HandoffRule) -> None:
        self.rule = rule
        self.reason: Optional[str] = None
        self.tokens = 0

    def __call__(self, ids: Sequence[int], logprobs: Sequence[float], entropies: Sequence[float]) -> bool:
        why = self.rule.check(ids, logprobs, entropies)
        if why is None:
            return False
        self.reason, self.tokens = why, len(ids)
        return True
