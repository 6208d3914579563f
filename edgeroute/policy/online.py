"""The GreenServ-style online policy: LinUCB at two decision points, learning from quality, energy, latency and cost.

Before generation one bandit picks ``local`` (generate on the device) or ``cloud`` (send the query straight to the
cloud); after generation another picks ``accept`` or ``escalate``. Each decision's context is built by
``policy.context``; once the answer's quality is known (``feedback``, a verifier, or the cloud prior for cloud
answers) the reward of ``policy.reward`` updates the arms that were actually used, once per answer.

Warm-up: until ``warmup`` local answers have been learned from, the policy decides like the calibrated threshold
policy (and leaves the pre-generation decision to the pre-generation probe's threshold) while learning from every
answer: without it, an early run of bad local answers can lock the bandits onto the cloud.

Each decision point learns the reward's parts separately (``policy.components``) and combines them with the current
lambdas, so a preset change applies at once; costs are learned with a short memory, quality with a long one and a
change detector.

Guardrail: a local answer whose confidence is below the calibrated threshold is never accepted unless
``allow_below_threshold`` is set; the bandit only chooses above it. When the cloud cannot be reached the bandits
still decide, but greedily (no exploration), and an escalation then falls back to the flagged local answer.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Optional

import numpy as np

from .. import _constants as C
from .._errors import ConfigError, PolicyError
from ..store import TraceStore
from .base import Decision, Policy
from .components import ComponentBandits, component_key
from .context import POST_FEATURES, PRE_FEATURES, PRE_PREGEN, Situation, post_context, pre_context
from .linucb import LinUCB
from .reward import COMPONENTS, Outcome, RewardWeights, components
from .state import PolicyState, Update

PRE_ARMS = ("local", "cloud")
POST_ARMS = ("accept", "escalate")


def _with_pregen(x: np.ndarray, value: float) -> np.ndarray:
    """``x`` with the pre-generation probe's value set (and flagged known)."""
    out = x.copy()
    out[PRE_PREGEN[0]], out[PRE_PREGEN[1]] = min(max(value, 0.0), 1.0), 1.0
    return out


class LinUCBPolicy(Policy):
    """Online routing inside the calibrated guardrail. ``threshold`` is the calibrated confidence threshold.

    ``store`` (a ``TraceStore``) keeps the learned state per ``model_key`` (the local model's hash) and the decisions
    waiting for feedback; without one, learning lives in memory only. ``cloud_quality_prior`` is the quality credited
    to a cloud answer at once (None: wait for feedback like local answers).
    """

    @classmethod
    def from_config(cls, threshold: float, config: Any, *, store: Optional[TraceStore] = None,
                    model_key: str = "") -> "LinUCBPolicy":
        """The policy registry's factory: the reward from ``preset`` and the lambdas; it learns from feedback kept
        in ``store`` (required)."""
        if store is None:
            raise ConfigError("routing='linucb' learns from feedback kept in the trace store: it needs trace=True")
        return cls(
            threshold,
            weights=RewardWeights.preset(config.preset, energy=config.lambda_energy, latency=config.lambda_latency,
                                         cost=config.lambda_cost),
            model_key=model_key,
            store=store,
            allow_below_threshold=config.allow_below_threshold,
            cloud_quality_prior=config.cloud_quality_prior if config.cloud_quality_prior >= 0 else None,
            on_unknown=config.on_unknown,
        )

    def __init__(
        self,
        threshold: float,
        *,
        weights: Optional[RewardWeights] = None,
        model_key: str = "",
        store: Optional[TraceStore] = None,
        allow_below_threshold: bool = False,
        cloud_quality_prior: Optional[float] = C.DEFAULT_CLOUD_QUALITY_PRIOR,
        on_unknown: str = "escalate",
        alpha: float = C.LINUCB_ALPHA,
        ridge: float = C.LINUCB_RIDGE,
        discount: float = C.LINUCB_DISCOUNT,
        cost_discount: float = C.LINUCB_COST_DISCOUNT,
        change: Optional[tuple[float, float, float]] = C.LINUCB_CHANGE,
        cost_change: Optional[tuple[float, float, float]] = C.LINUCB_COST_CHANGE,
        warmup: int = C.POLICY_WARMUP_ANSWERS,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {threshold}")
        if cloud_quality_prior is not None and not 0.0 <= cloud_quality_prior <= 1.0:
            raise ConfigError(f"cloud_quality_prior must be in [0, 1] or None, got {cloud_quality_prior}")
        if on_unknown not in ("escalate", "accept"):
            raise ConfigError(f"on_unknown must be 'escalate' or 'accept', got {on_unknown!r}")
        self.threshold: float = float(threshold)
        self.weights = weights or RewardWeights.preset(C.DEFAULT_PRESET)
        self.allow_below_threshold = allow_below_threshold
        self.cloud_quality_prior = cloud_quality_prior
        self.on_unknown = on_unknown
        self.warmup = warmup
        self.keys = {"pre": f"{model_key}:pre", "post": f"{model_key}:post"}

        def fresh(arms: tuple[str, ...], dim: int, part: str) -> LinUCB:
            if part == "quality":
                return LinUCB(arms, dim, alpha=alpha, ridge=ridge, discount=discount, change=change)
            return LinUCB(arms, dim, alpha=0.0, ridge=ridge, discount=cost_discount, change=cost_change)

        self._state = PolicyState(store) if store is not None else None
        self.bandits: dict[str, ComponentBandits] = {}
        for point, arms, features in (("pre", PRE_ARMS, PRE_FEATURES), ("post", POST_ARMS, POST_FEATURES)):
            models = {}
            for part in COMPONENTS:
                make = lambda a=arms, d=len(features), c=part: fresh(a, d, c)  # noqa: E731
                key = component_key(self.keys[point], part)
                models[part] = self._state.attach(key, features, make) if self._state else make()
            self.bandits[point] = ComponentBandits(models)
        self._pending: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.RLock()

    # --- decisions ------------------------------------------------------------------------------------------
    def decide(self, confidence: Optional[float], *, truncated: bool = False) -> Decision:
        """Without a context: the guardrail alone (escalate below the threshold)."""
        return self.judge("", Situation(messages=[], confidence=confidence, truncated=truncated))

    @property
    def warming_up(self) -> bool:
        """True until ``warmup`` local answers have been learned from (the threshold rules decide meanwhile)."""
        return self.bandits["post"].learned() < self.warmup

    def before(self, answer_id: str, situation: Situation,
               probe: Optional[Callable[[], Optional[float]]] = None) -> Optional[Decision]:
        """Local or cloud. The pre-generation probe runs only when its value could change the choice: the scores
        are linear (and the exploration bonus convex) in the probe's value, so when the cloud wins at both ends of
        [0, 1] it wins for any value, and the prefill is saved."""
        explore = situation.device.cloud_reachable
        mode = "" if explore else ", cloud unreachable: no exploration"
        x = pre_context(situation)
        with self._lock:
            warming = self.warming_up
            if probe is not None and not warming and self._cloud_dominates(x, explore):
                self._remember(answer_id, "pre", x)
                return Decision(True, f"LinUCB before generation: the cloud wins whatever the pre-generation probe "
                                      f"says (probe skipped){mode}")
        if probe is not None and "pregen_confidence" not in situation.signals:
            score = probe()
            if score is not None and math.isfinite(score):
                x = _with_pregen(x, score)
        with self._lock:
            self._remember(answer_id, "pre", x)
            if warming:
                return None
            scores = self.bandits["pre"].scores(x, self.weights, explore=explore)
        arm = max(PRE_ARMS, key=lambda a: scores[a])
        detail = f"LinUCB before generation: cloud {scores['cloud']:.3f} vs local {scores['local']:.3f}{mode}"
        return Decision(arm == "cloud", detail)

    def _cloud_dominates(self, x: np.ndarray, explore: bool) -> bool:
        """The cloud's estimate beats local's upper bound (optimism for local only, so a cloud that looks good only
        through its own uncertainty never stops the probe from running) at both ends of the probe's range."""
        for value in (0.0, 1.0):
            b = self.bandits["pre"].bounds(_with_pregen(x, value), self.weights)
            if b["cloud"][0] <= b["local"][0] + (b["local"][1] if explore else 0.0):
                return False
        return True

    def judge(self, answer_id: str, situation: Situation) -> Decision:
        conf = situation.confidence
        forced: Optional[Decision] = None
        if situation.defect is not None:
            forced = Decision(True, situation.defect)
        elif conf is None:
            forced = Decision(self.on_unknown == "escalate", "confidence unknown (no scored tokens)")
        elif conf < self.threshold and not self.allow_below_threshold:
            forced = Decision(True, f"confidence {conf:.3f} < calibrated threshold {self.threshold:.3f} (guardrail)")
        if not answer_id:
            return forced or Decision(False, f"confidence {conf:.3f} >= threshold {self.threshold:.3f}")
        x = post_context(situation)
        with self._lock:
            self._remember(answer_id, "post", x)
            if forced is not None:
                return forced
            if self.warming_up:
                return Decision(False, f"confidence {conf:.3f} >= threshold {self.threshold:.3f} (LinUCB warming "
                                       f"up: {self.bandits['post'].learned()}/{self.warmup})")
            explore = situation.device.cloud_reachable
            scores = self.bandits["post"].scores(x, self.weights, explore=explore)
        arm = max(POST_ARMS, key=lambda a: scores[a])
        mode = "" if explore else ", cloud unreachable: no exploration"
        return Decision(arm == "escalate", f"LinUCB: escalate {scores['escalate']:.3f} vs accept "
                                           f"{scores['accept']:.3f} at confidence {conf:.3f}{mode}")

    def _remember(self, answer_id: str, point: str, x: Any) -> None:
        entry = self._pending.setdefault(answer_id, {"contexts": {}})
        entry["contexts"][point] = [float(v) for v in x]
        while len(self._pending) > C.POLICY_PENDING_MAX:
            self._pending.popitem(last=False)

    # --- learning -------------------------------------------------------------------------------------------
    def settle(self, answer_id: str, outcome: Outcome) -> None:
        """Attach the answer's costs; learn at once when its quality is known (a verifier's, or the cloud prior)."""
        with self._lock:
            entry = self._pending.pop(answer_id, None)
            if entry is None:
                return
            entry["outcome"] = {"route": outcome.route, "joules": outcome.joules, "seconds": outcome.seconds,
                                "dollars": outcome.dollars}
            quality = outcome.quality
            if quality is None and outcome.route == "cloud":
                quality = self.cloud_quality_prior
            if quality is not None:
                self._learn(answer_id, entry, quality)
            elif self._state is not None:
                self._state.put_pending(answer_id, entry)
            else:
                self._pending[answer_id] = entry

    def feedback(self, answer_id: str, quality: float) -> bool:
        """Learn from ``quality`` (in [0, 1]) for a settled answer; False when it has no pending decision (already
        learned from, unknown, expired, or decided without context)."""
        if not 0.0 <= quality <= 1.0:
            raise PolicyError(f"quality must be in [0, 1], got {quality!r}")
        with self._lock:
            entry = self._pending.get(answer_id)
            if entry is not None and "outcome" not in entry:
                return False  # not settled yet (still being answered)
            if entry is None and self._state is not None:
                entry = self._state.get_pending(answer_id)
            if entry is None:
                return False
            self._pending.pop(answer_id, None)
            self._learn(answer_id, entry, quality)
            return True

    def _learn(self, answer_id: str, entry: dict[str, Any], quality: float) -> None:
        o = entry["outcome"]
        outcome = Outcome(o["route"], float(o["joules"]), float(o["seconds"]), float(o["dollars"]), quality)
        parts = components(outcome)
        dims = {"pre": len(PRE_FEATURES), "post": len(POST_FEATURES)}
        # a decision kept from before a release added features: those features were 0 (a lone query)
        contexts = {p: list(x) + [0.0] * (dims[p] - len(x)) for p, x in entry["contexts"].items() if p in dims}
        local_ran = "post" in contexts
        taken: list[tuple[str, str]] = []
        if "pre" in contexts:
            taken.append(("pre", "local" if local_ran or outcome.route != "cloud" else "cloud"))
        if local_ran:
            taken.append(("post", "escalate" if outcome.route == "cloud" else "accept"))
        if self._state is not None:
            self._state.learn(answer_id, [Update(component_key(self.keys[point], c), arm, contexts[point], parts[c])
                                          for point, arm in taken for c in COMPONENTS])
        else:
            for point, arm in taken:
                self.bandits[point].update(arm, contexts[point], parts)
