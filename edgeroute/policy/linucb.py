"""Disjoint LinUCB (Li et al., 2010), the learner of the GreenServ-style online policy.

Each arm ``a`` keeps ``A_a = ridge * I + sum x x^T`` and ``b_a = sum r x``. For a context ``x`` (d floats) its score is
``theta_a . x + alpha * sqrt(x^T A_a^-1 x)`` with ``theta_a = A_a^-1 b_a``; the highest score wins. Defaults follow
GreenServ: ``alpha = 0.1``, ``ridge = 0.05``. With ``discount`` gamma < 1 past evidence fades (D-LinUCB, Russac et
al., 2019): ``A <- gamma (A - ridge I) + ridge I + x x^T`` and ``b <- gamma b + r x``, so the policy follows a
change of prices or preferences within about ``1 / (1 - gamma)`` updates while the ridge never fades. With gamma = 1
the inverse is kept by Sherman-Morrison in O(d^2) per update; otherwise it is recomputed at the update, so a
decision is always a few matrix-vector products.
With ``change = (k, h, keep)`` each arm also runs a two-sided CUSUM on its prediction errors (Page, 1954): the sums
``g+ = max(0, g+ + e - k)`` and ``g- = max(0, g- - e - k)`` of the error ``e = r - theta . x`` (taken before the
update) less the allowance ``k``; when one passes ``h`` the arm's evidence is scaled by ``keep`` at once (as if
``log keep / log gamma`` updates had passed), the sums restart and ``changes`` counts it. The detector rests for
``dim`` updates after a change (and on a fresh arm): a model re-fitted on a handful of points errs by much, and
would otherwise fire on every update and never learn the new level. The detector is part of
the state, so replaying the same updates reproduces it.
Non-finite contexts or rewards are rejected before anything changes, so the model state always stays valid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .._errors import PolicyError

DEFAULT_ALPHA = 0.1
DEFAULT_RIDGE = 0.05


@dataclass
class ArmState:
    """One arm: ``a`` = A (d x d, symmetric positive definite), ``b`` (d) and how many updates it has had."""

    a: np.ndarray
    b: np.ndarray
    n: int = 0
    #: The CUSUM sums (g+, g-) of the change detector, and how many changes it has acted on.
    drift: tuple[float, float] = (0.0, 0.0)
    changes: int = 0
    #: Updates since the last change (or since the start): the detector runs once there are ``dim`` of them.
    since: int = 0
    _inv: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    _theta: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    @property
    def a_inv(self) -> np.ndarray:
        if self._inv is None:
            self._inv = np.linalg.inv(self.a)
        return self._inv

    @property
    def theta(self) -> np.ndarray:
        if self._theta is None:
            self._theta = self.a_inv @ self.b
        return self._theta


class LinUCB:
    """Disjoint LinUCB over named arms with ``dim``-dimensional contexts."""

    def __init__(self, arms: Iterable[str], dim: int, *, alpha: float = DEFAULT_ALPHA,
                 ridge: float = DEFAULT_RIDGE, discount: float = 1.0,
                 change: Optional[tuple[float, float, float]] = None) -> None:
        if dim < 1 or not alpha >= 0 or not ridge > 0 or not 0 < discount <= 1:
            raise PolicyError(f"need dim >= 1, alpha >= 0, ridge > 0 and 0 < discount <= 1 "
                              f"(got {dim}, {alpha}, {ridge}, {discount})")
        if change is not None and not (len(change) == 3 and change[0] >= 0 and change[1] > 0
                                       and 0 <= change[2] < 1):
            raise PolicyError(f"change must be (allowance >= 0, threshold > 0, 0 <= keep < 1), got {change!r}")
        self.dim, self.alpha, self.ridge, self.discount = dim, float(alpha), float(ridge), float(discount)
        self.change = None if change is None else (float(change[0]), float(change[1]), float(change[2]))
        self.arms: dict[str, ArmState] = {}
        for name in arms:
            self.add_arm(name)
        if not self.arms:
            raise PolicyError("LinUCB needs at least one arm")

    def add_arm(self, name: str) -> None:
        """A new arm starts from the prior (it is explored first, as its uncertainty is largest)."""
        if name in self.arms:
            raise PolicyError(f"arm {name!r} exists already")
        self.arms[name] = ArmState(self.ridge * np.eye(self.dim), np.zeros(self.dim))

    def context(self, x: Sequence[float]) -> np.ndarray:
        """``x`` as a float64 vector; ``PolicyError`` when it is misshapen or holds NaN or inf."""
        v = np.asarray(x, dtype=np.float64)
        if v.shape != (self.dim,):
            raise PolicyError(f"context has shape {v.shape}, expected ({self.dim},)")
        if not np.all(np.isfinite(v)):
            raise PolicyError("context holds NaN or inf; rejected")
        return v

    def bounds(self, x: Sequence[float]) -> dict[str, tuple[float, float]]:
        """Every arm's (estimate ``theta . x``, exploration bonus ``alpha * sqrt(x^T A^-1 x)``) for context ``x``."""
        v = self.context(x)
        return {name: (float(arm.theta @ v), self._bonus(arm, v)) for name, arm in self.arms.items()}

    def bonuses(self, x: Sequence[float]) -> dict[str, float]:
        """Every arm's exploration bonus ``alpha * sqrt(x^T A^-1 x)`` alone (no estimate computed)."""
        v = self.context(x)
        return {name: self._bonus(arm, v) for name, arm in self.arms.items()}

    def _bonus(self, arm: ArmState, v: np.ndarray) -> float:
        return self.alpha * math.sqrt(max(float(v @ arm.a_inv @ v), 0.0))

    def scores(self, x: Sequence[float], *, explore: bool = True) -> dict[str, float]:
        """Upper confidence bound of every arm for context ``x`` (``explore=False``: the estimate alone)."""
        return {name: est + (bonus if explore else 0.0) for name, (est, bonus) in self.bounds(x).items()}

    def select(self, x: Sequence[float], allowed: Optional[Iterable[str]] = None, *, explore: bool = True) -> str:
        """The arm with the highest score among ``allowed`` (default: all); ties go to the first listed."""
        scores = self.scores(x, explore=explore)
        names = [a for a in (allowed if allowed is not None else scores) if a in scores]
        if not names:
            raise PolicyError("no allowed arm")
        return max(names, key=lambda a: scores[a])

    def update(self, arm: str, x: Sequence[float], reward: float) -> None:
        """Learn that ``arm`` earned ``reward`` in context ``x``. Validates everything before changing anything."""
        if arm not in self.arms:
            raise PolicyError(f"unknown arm {arm!r}")
        v = self.context(x)
        if not math.isfinite(reward):
            raise PolicyError("reward is NaN or inf; rejected")
        state = self.arms[arm]
        if self.change is not None:
            self._detect(state, v, reward)
        if self.discount == 1.0:
            av = state.a_inv @ v
            inv = state.a_inv - np.outer(av, av) / (1.0 + float(v @ av))  # Sherman-Morrison
            state.a, state.b, state._inv = state.a + np.outer(v, v), state.b + reward * v, inv
            state._theta = None
        else:
            ridge = self.ridge * np.eye(self.dim)
            state.a = self.discount * (state.a - ridge) + ridge + np.outer(v, v)
            state.b, state._inv, state._theta = self.discount * state.b + reward * v, None, None
        state.theta  # invert and solve now, so the next decision does not pay for it
        state.n += 1

    def _detect(self, state: ArmState, v: np.ndarray, reward: float) -> None:
        """The CUSUM step for one update; on a change, scale the arm's evidence by ``keep`` (ridge kept)."""
        assert self.change is not None
        k, h, keep = self.change
        state.since += 1
        if state.since <= self.dim:
            return
        err = reward - float(state.theta @ v)
        up, down = max(0.0, state.drift[0] + err - k), max(0.0, state.drift[1] - err - k)
        if up <= h and down <= h:
            state.drift = (up, down)
            return
        ridge = self.ridge * np.eye(self.dim)
        state.a, state.b = keep * (state.a - ridge) + ridge, keep * state.b
        state._inv, state._theta, state.drift, state.changes = None, None, (0.0, 0.0), state.changes + 1
        state.since = 0

    def to_dict(self) -> dict[str, Any]:
        return {"dim": self.dim, "alpha": self.alpha, "ridge": self.ridge, "discount": self.discount,
                "change": None if self.change is None else list(self.change),
                "arms": {k: {"a": a.a.tolist(), "b": a.b.tolist(), "n": a.n, "drift": list(a.drift),
                             "changes": a.changes, "since": a.since} for k, a in self.arms.items()}}

    @staticmethod
    def widened(d: dict[str, Any], dim: int) -> dict[str, Any]:
        """A saved state (``to_dict``) with features appended up to ``dim``: each new one starts at the prior, so
        predictions for contexts whose new features are 0 are unchanged (a release adds context features)."""
        old = int(d["dim"])
        out = {**d, "dim": dim, "arms": {}}
        for name, arm in d["arms"].items():
            a = np.asarray(arm["a"], dtype=np.float64)
            wide = float(d["ridge"]) * np.eye(dim)
            wide[:old, :old] = a
            out["arms"][name] = {**arm, "a": wide.tolist(), "b": list(arm["b"]) + [0.0] * (dim - old)}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LinUCB":
        """The inverse of ``to_dict``; ``PolicyError`` for a state that is misshapen, not finite or not positive
        definite (a corrupt save)."""
        try:
            change = d.get("change")
            model = cls(d["arms"].keys(), int(d["dim"]), alpha=float(d["alpha"]), ridge=float(d["ridge"]),
                        discount=float(d.get("discount", 1.0)),
                        change=None if change is None else tuple(float(c) for c in change))
            for name, arm in d["arms"].items():
                a, b = np.asarray(arm["a"], dtype=np.float64), np.asarray(arm["b"], dtype=np.float64)
                if a.shape != (model.dim, model.dim) or b.shape != (model.dim,) or not (
                        np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
                    raise PolicyError(f"arm {name!r}: state does not fit dimension {model.dim} or is not finite")
                np.linalg.cholesky(a)  # symmetric positive definite, or LinAlgError
                drift = tuple(float(g) for g in arm.get("drift", (0.0, 0.0)))
                if len(drift) != 2 or not all(math.isfinite(g) and g >= 0 for g in drift):
                    raise PolicyError(f"arm {name!r}: change detector state {drift!r} is not two sums >= 0")
                model.arms[name] = ArmState(a, b, int(arm["n"]), (drift[0], drift[1]), int(arm.get("changes", 0)),
                                         int(arm.get("since", arm["n"])))
        except (KeyError, TypeError, ValueError, AttributeError, np.linalg.LinAlgError) as exc:
            if isinstance(exc, PolicyError):
                raise
            raise PolicyError(f"unreadable LinUCB state: {exc}") from exc
        return model
