"""Disjoint LinUCB (Li et al., 2010), the learner of the GreenServ-style online policy.

Each arm ``a`` keeps ``A_a = ridge * I + sum x x^T`` (kept as its inverse, updated with Sherman-Morrison in O(d^2))
and ``b_a = sum r x``. For a context ``x`` (d floats) its score is ``theta_a . x + alpha * sqrt(x^T A_a^-1 x)`` with
``theta_a = A_a^-1 b_a``; the highest score wins. Defaults follow GreenServ: ``alpha = 0.1``, ``ridge = 0.05``.
Non-finite contexts or rewards are rejected before anything changes, so the model state always stays valid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .._errors import PolicyError

DEFAULT_ALPHA = 0.1
DEFAULT_RIDGE = 0.05


@dataclass
class ArmState:
    """One arm: ``a_inv`` = A^-1 (d x d), ``b`` (d), and how many updates it has had."""

    a_inv: np.ndarray
    b: np.ndarray
    n: int = 0

    @property
    def theta(self) -> np.ndarray:
        return self.a_inv @ self.b


class LinUCB:
    """Disjoint LinUCB over named arms with ``dim``-dimensional contexts."""

    def __init__(self, arms: Iterable[str], dim: int, *, alpha: float = DEFAULT_ALPHA,
                 ridge: float = DEFAULT_RIDGE) -> None:
        if dim < 1 or not alpha >= 0 or not ridge > 0:
            raise PolicyError(f"need dim >= 1, alpha >= 0 and ridge > 0 (got {dim}, {alpha}, {ridge})")
        self.dim, self.alpha, self.ridge = dim, float(alpha), float(ridge)
        self.arms: dict[str, ArmState] = {}
        for name in arms:
            self.add_arm(name)
        if not self.arms:
            raise PolicyError("LinUCB needs at least one arm")

    def add_arm(self, name: str) -> None:
        """A new arm starts from the prior (it is explored first, as its uncertainty is largest)."""
        if name in self.arms:
            raise PolicyError(f"arm {name!r} exists already")
        self.arms[name] = ArmState(np.eye(self.dim) / self.ridge, np.zeros(self.dim))

    def _context(self, x: Sequence[float]) -> np.ndarray:
        v = np.asarray(x, dtype=np.float64)
        if v.shape != (self.dim,):
            raise PolicyError(f"context has shape {v.shape}, expected ({self.dim},)")
        if not np.all(np.isfinite(v)):
            raise PolicyError("context holds NaN or inf; rejected")
        return v

    def scores(self, x: Sequence[float]) -> dict[str, float]:
        """Upper confidence bound of every arm for context ``x``."""
        v = self._context(x)
        out = {}
        for name, arm in self.arms.items():
            width = float(v @ arm.a_inv @ v)
            out[name] = float(arm.theta @ v) + self.alpha * math.sqrt(max(width, 0.0))
        return out

    def select(self, x: Sequence[float], allowed: Optional[Iterable[str]] = None) -> str:
        """The arm with the highest score among ``allowed`` (default: all); ties go to the first listed."""
        scores = self.scores(x)
        names = [a for a in (allowed if allowed is not None else scores) if a in scores]
        if not names:
            raise PolicyError("no allowed arm")
        return max(names, key=lambda a: scores[a])

    def update(self, arm: str, x: Sequence[float], reward: float) -> None:
        """Learn that ``arm`` earned ``reward`` in context ``x``. Validates everything before changing anything."""
        if arm not in self.arms:
            raise PolicyError(f"unknown arm {arm!r}")
        v = self._context(x)
        if not math.isfinite(reward):
            raise PolicyError("reward is NaN or inf; rejected")
        state = self.arms[arm]
        av = state.a_inv @ v
        state.a_inv = state.a_inv - np.outer(av, av) / (1.0 + float(v @ av))  # Sherman-Morrison
        state.b = state.b + reward * v
        state.n += 1

    def to_dict(self) -> dict[str, Any]:
        return {"dim": self.dim, "alpha": self.alpha, "ridge": self.ridge,
                "arms": {k: {"a_inv": a.a_inv.tolist(), "b": a.b.tolist(), "n": a.n} for k, a in self.arms.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LinUCB":
        model = cls(d["arms"].keys(), int(d["dim"]), alpha=float(d["alpha"]), ridge=float(d["ridge"]))
        for name, a in d["arms"].items():
            a_inv, b = np.asarray(a["a_inv"], dtype=np.float64), np.asarray(a["b"], dtype=np.float64)
            if a_inv.shape != (model.dim, model.dim) or b.shape != (model.dim,) or not (
                    np.all(np.isfinite(a_inv)) and np.all(np.isfinite(b))):
                raise PolicyError(f"arm {name!r}: state does not fit dimension {model.dim} or is not finite")
            model.arms[name] = ArmState(a_inv, b, int(a["n"]))
        return model
