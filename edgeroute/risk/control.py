"""Online risk control: the accepted-answer error on this device's own traffic, bounded, and the threshold kept to it.

**What is bounded.** ``R(t)``: the share of wrong answers among the local answers a threshold ``t`` accepts, over
this device's queries that could be audited (private, sensitive, strict-local and offline queries never leave the
device, so they are outside it). "Wrong" is disagreement with the cloud (``risk.grader``), which can itself be
wrong; user feedback overrides a label.

**How.** Every locally judged answer is a row with its confidence ``c`` and the probability ``pi`` it is labelled
with: 1 when it was escalated (both answers exist), the audit rate when it was accepted. For any grid threshold
``g``, each row with ``c >= g`` contributes ``x = wrong * labelled / pi`` (0 when not labelled), whose expectation
is the row's error whatever the threshold in force was (inverse-probability weighting with ``pi`` fixed before the
coin is tossed). ``risk.bounds.Sequences`` turns these into an upper and a lower confidence sequence per grid
threshold, by betting: anytime-valid (Ville's inequality), so reading them after every answer, stopping at any
time and changing the threshold on what they show leave them valid. Each grid threshold gets ``delta / 2 / |grid|``
(a union bound, so the bounds hold for all thresholds at once, including the one the data chose) for each side.

**The rule.** The threshold in force is raised when the *lower* bound at it exceeds epsilon (the data show the
promise broken), to the next grid threshold not shown broken (1.0 accepts nothing); that starts a new epoch (the
bounds restart on the traffic after the alarm; epoch ``k`` spends ``delta * 6 / (pi^2 k^2)``, so all epochs
together spend at most delta). It is lowered only when the *upper* bounds certify every grid threshold from the one
in force down to the lower one at <= epsilon (Learn-then-Test's fixed sequence). The drift flag goes up on a raise
or when the lower bound of the share of novel prompts (``risk.novelty``) exceeds twice the share the novelty map
expects; it goes down when the upper bound certifies the threshold in force.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np

from .. import _constants as C
from .._errors import EdgeRouteError
from ..policy.calibration import clopper_pearson_upper
from .bounds import Sequences, epoch_delta
from .state import RESOLVED, RiskState

log = logging.getLogger("edgeroute")

#: The control's grid: the source threshold and 0, 0.05, ..., 1.0 (1.0 accepts nothing in practice).
GRID_STEP = 0.05


@dataclass(frozen=True)
class RiskInfo:
    """What an answer's confidence rests on. ``status``: ``unknown`` (audits off: nothing accepted is checked),
    ``collecting`` (no label yet at the threshold in force), ``estimated``, ``stale`` (offline since the last
    label) or ``not judged`` (no local confidence). ``estimate`` / ``upper`` / ``lower``: this device's error rate
    among accepted answers at the threshold in force and its anytime-valid bounds, from ``labels`` labelled answers
    among ``answers``. ``novel``: whether this prompt lies outside the calibration distribution (None: no novelty
    map for this model); ``novel_share``: the share of novel prompts this epoch."""

    threshold: Optional[float]
    threshold_source: str
    epsilon: float
    delta: float
    status: str
    why: str
    estimate: Optional[float] = None
    upper: Optional[float] = None
    lower: Optional[float] = None
    labels: int = 0
    answers: int = 0
    novel: Optional[bool] = None
    novelty: Optional[float] = None
    novel_share: Optional[float] = None
    audit_rate: float = 0.0
    drift: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RiskController:
    """The control for one model key, its rows in ``state`` (None: in memory only, as in the replay)."""

    def __init__(self, state: Optional[RiskState], key: str, *, threshold: float, source: str, epsilon: float,
                 delta: float, audit_rate: float = 0.0, expected_novel: Optional[float] = None,
                 control: bool = True, seed: Optional[int] = None, readonly: bool = False) -> None:
        self.state, self.key = state, key
        self.epsilon, self.delta, self.audit_rate, self.control = epsilon, delta, audit_rate, control
        self.expected_novel = expected_novel
        self.readonly = readonly  # a report: fold, move nothing, write nothing
        self.control = control and not readonly
        self.base_threshold, self.base_source = float(threshold), source
        self.grid = np.array(sorted({round(k * GRID_STEP, 4) for k in range(int(1 / GRID_STEP) + 1)}
                                    | {round(float(threshold), 4)}))
        self.threshold, self.source, self.epoch, self.drift, self._revision = float(threshold), source, 1, None, 0
        self.offline_since: Optional[float] = None
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._warned = False
        self._novel_seen = self._novel_hits = 0  # all prompts with a novelty since the control began
        self._block = [0, 0]  # the current block: prompts, novel ones
        self._blocks = 0
        self._novel_drift: Optional[str] = None
        self._error_drift: Optional[str] = None
        self._novel_upto = 0  # rows whose novelty is counted (a recomputation folds rows again)
        self._reset(1)
        if state is not None:
            try:
                self._load(state, key)
            except (EdgeRouteError, ValueError, TypeError) as exc:
                self._reinitialise(exc)

    def _reinitialise(self, exc: BaseException) -> None:
        """A damaged saved state: warn, forget it, start from the source threshold."""
        assert self.state is not None
        warnings.warn(f"edgeroute: the saved risk state {self.key!r} in {self.state.store.path} was unreadable "
                      f"({type(exc).__name__}: {exc}); re-initialised", RuntimeWarning, stacklevel=3)
        self.state.reset(self.key)
        self.threshold, self.source, self._error_drift, self.drift, self._revision = (
            self.base_threshold, self.base_source, None, None, 0)
        self._novel_upto = 0
        self._reset(1)
        try:
            self._load(self.state, self.key)
        except (EdgeRouteError, ValueError, TypeError) as again:  # e.g. a read-only disk: keep going in memory
            warnings.warn(f"edgeroute: the risk state cannot be kept in {self.state.store.path} ({again}); "
                          "this session measures in memory only", RuntimeWarning, stacklevel=3)
            self.state = None

    def _load(self, state: RiskState, key: str) -> None:
        saved = state.control(key)
        if saved is not None and self._fits(saved[0]):
            self.threshold, self.source, self.epoch, self._error_drift, self._revision = saved
            self.drift = self._error_drift
            self._reset(self.epoch)
        elif not self.readonly:
            state.set_control(key, self.threshold, self.source, self.epoch, None,
                              settings=(self.epsilon, self.delta, self.audit_rate))
        self._refresh()

    def _fits(self, threshold: float) -> bool:
        return bool(np.any(np.isclose(self.grid, threshold)))

    def _reset(self, epoch: int) -> None:
        self.epoch = epoch
        alpha = epoch_delta(self.delta, epoch) / 2.0
        self._seq = Sequences(len(self.grid), alpha / len(self.grid))
        self._labels = np.zeros(len(self.grid), dtype=np.int64)
        self._cur = Sequences(1, alpha)  # the threshold in force, fixed for the epoch: no union bound needed
        self._cur_labels = 0
        self._upto = 0
        self._last_label = 0.0

    # --- recording answers -------------------------------------------------------------------------------------
    def plan(self, *, accepted: bool, blocked: Optional[str], audit_spent: Optional[str] = None) -> tuple[float, bool, str]:
        """(pi, audit it?, why) for a locally judged answer: ``blocked`` says why it may not leave the device."""
        if blocked:
            return 0.0, False, blocked
        if not accepted:
            return 1.0, False, "escalated: labelled by the cloud's answer"
        if self.audit_rate <= 0:
            return 0.0, False, "audits are off"
        if audit_spent:
            return 0.0, False, audit_spent
        return self.audit_rate, self._rng.random() < self.audit_rate, "audit sample"

    def observe(self, confidence: float, accepted: bool, pi: float, x: Optional[float],
                novel: Optional[bool] = None, labelled: bool = False) -> None:
        """Fold one resolved answer into the bounds (the replay's entry; the store's rows come through
        ``refresh``). ``x``: wrong / pi when labelled, 0 when sampled but not labelled, None when ineligible."""
        with self._lock:
            self._fold(confidence, pi, x, novel, labelled)
            self._decide()

    def _fold(self, confidence: float, pi: float, x: Optional[float], novel: Optional[bool], labelled: bool) -> None:
        if novel is not None:
            self._count_novel(bool(novel))
        if x is None or pi <= 0:
            return
        rows = self.grid <= confidence + 1e-12
        self._seq.add(x, 1.0 / pi, rows)
        if labelled:
            self._labels[rows] += 1
        if confidence + 1e-12 >= self.threshold:
            self._cur.add(x, 1.0 / pi, np.array([True]))
            self._cur_labels += int(labelled)

    def refresh(self) -> None:
        """Fold in the rows resolved since the last call (this process's and others'), then apply the rule. A
        damaged saved state is re-initialised with a warning."""
        if self.state is None:
            return
        with self._lock:
            try:
                self._refresh()
            except (EdgeRouteError, ValueError, TypeError) as exc:
                self._reinitialise(exc)

    def _refresh(self) -> None:
        assert self.state is not None
        saved = self.state.control(self.key)
        if saved is not None and (saved[2] != self.epoch or saved[4] != self._revision) and self._fits(saved[0]):
            self.threshold, self.source, epoch, self._error_drift, self._revision = saved
            self._reset(epoch)
        self.state.expire(self.key, time.time() - C.AUDIT_TIMEOUT_S)
        for rowid, conf, pi, status, wrong, novel, created in self.state.rows(self.key, self.epoch, self._upto):
            if status not in RESOLVED:
                break  # a pending audit: later rows wait, so every process folds the same sequence
            labelled = status == "labelled"
            usable = pi > 0 and status in ("unlabelled", "labelled")
            x = (float(wrong) / pi if labelled else 0.0) if usable else None
            fresh = rowid > self._novel_upto and novel is not None
            self._fold(conf, pi, x, bool(novel) if fresh else None, labelled and usable)
            self._novel_upto = max(self._novel_upto, rowid)
            if labelled:
                self._last_label = max(self._last_label, created)
            self._upto = rowid
        self._decide()

    # --- the rule ----------------------------------------------------------------------------------------------
    def _at(self, threshold: float) -> int:
        return int(np.argmin(np.abs(self.grid - threshold)))

    def _decide(self) -> None:
        j = self._at(self.threshold)
        before = (self.threshold, self.epoch, self.drift)
        history: Optional[dict[str, Any]] = None
        if self.control and self._cur.lower(0) > self.epsilon:
            up = next((i for i in range(j + 1, len(self.grid)) if self._seq.lower(i) <= self.epsilon),
                      len(self.grid) - 1)
            why = (f"raised: the accepted-answer error at {self.threshold:.2f} is above {self.epsilon:g} "
                   f"(lower bound {self._cur.lower(0):.3f}, {self._cur_labels} labels)")
            history = self._history(j, why)
            self._error_drift = why
            self.threshold, self.source = float(self.grid[up]), f"online control ({why})"
            self._reset(self.epoch + 1)
        elif self.control and (self._cur.n[0] == 0 or self._cur_labels > 0 and self._cur.upper(0) <= self.epsilon):
            # Learn-then-Test: from the threshold in force (certified, or accepting nothing yet) down, each
            # certified (a threshold no answer reached passes through, but is never the one chosen), stop at the
            # first that is not
            low = j
            for i in range(j - 1, -1, -1):
                if self._seq.n[i] == 0:
                    continue
                if not self._certified(i):
                    break
                low = i
            if low < j:
                why = (f"lowered: {self.grid[low]:.2f} certified <= {self.epsilon:g} on this device's labels "
                       f"(upper bound {self._seq.upper(low):.3f}, {int(self._labels[low])} labels)")
                history = self._history(j, why)
                self.threshold, self.source = float(self.grid[low]), f"online control ({why})"
                self._reset(self.epoch + 1)
            if self._cur_labels > 0 or low < j:
                self._error_drift = None
        self.drift = self._error_drift or self._novel_drift
        if (self.threshold, self.epoch, self.drift) != before and not self.readonly:
            if self.drift and not self._warned:
                self._warned = True
                log.warning("edgeroute: drift: %s", self.drift)
            if self.state is not None:
                self.state.set_control(self.key, self.threshold, self.source, self.epoch, self._error_drift, history,
                                       settings=(self.epsilon, self.delta, self.audit_rate))

    def _certified(self, i: int) -> bool:
        return self._labels[i] > 0 and self._seq.upper(i) <= self.epsilon

    def _count_novel(self, novel: bool) -> None:
        """Novel prompts are counted in consecutive blocks of ``NOVELTY_BLOCK``; block ``k`` is tested at
        ``delta / 2 * 6 / (pi^2 k^2)`` (alpha-spending: at most delta / 2 of false alarms over all blocks) with the
        Clopper-Pearson lower bound of its novel share against ``NOVELTY_ALARM_FACTOR`` x the expected share."""
        self._novel_seen += 1
        self._novel_hits += int(novel)
        self._block[0] += 1
        self._block[1] += int(novel)
        if self._block[0] < C.NOVELTY_BLOCK or self.expected_novel is None:
            return
        self._blocks += 1
        n, k = self._block
        self._block = [0, 0]
        low = 1.0 - clopper_pearson_upper(n - k, n, epoch_delta(self.delta / 2.0, self._blocks))
        level = C.NOVELTY_ALARM_FACTOR * self.expected_novel
        if low > level:
            self._novel_drift = (f"novel prompts: {k} of the last {n} lie outside the calibration distribution "
                                 f"(share above {low:.2f}; the calibration expects {self.expected_novel:.2f})")
        elif self._novel_drift is not None and k / n <= level:
            self._novel_drift = None

    def _novel_alarm(self) -> Optional[str]:
        return self._novel_drift

    def _history(self, j: int, why: str) -> dict[str, Any]:
        return {"why": why, "estimate": self._cur.estimate(0), "upper": self._cur.upper(0),
                "lower": self._cur.lower(0), "labels": self._cur_labels}

    # --- what an answer reports --------------------------------------------------------------------------------
    def info(self, *, novel: Optional[bool] = None, novelty: Optional[float] = None,
             judged: bool = True, auditable: bool = True, unmeasured: Optional[str] = None) -> RiskInfo:
        with self._lock:
            labels, answers = self._cur_labels, int(self._cur.n[0])
            share = self._novel_hits / self._novel_seen if self._novel_seen else None
            common = dict(threshold=self.threshold, threshold_source=self.source, epsilon=self.epsilon,
                          delta=self.delta, labels=labels, answers=answers, novel=novel, novelty=novelty,
                          novel_share=share, audit_rate=self.audit_rate, drift=self.drift)
            if not judged:
                return RiskInfo(status="not judged", why="no local confidence for this answer", **common)
            if unmeasured:
                return RiskInfo(status="unknown", why=f"{unmeasured}; the threshold rests on {self.base_source}",
                                **common)
            if not auditable:
                return RiskInfo(status="unknown", why=(
                    "no cloud to audit with (local_only, or none configured): the error rate among accepted "
                    f"answers on this device's traffic is unknown; the threshold rests on {self.base_source}"),
                    **common)
            if self.audit_rate <= 0:
                return RiskInfo(status="unknown", why=(
                    "audits are off (audit_rate = 0): no accepted answer is checked against the cloud, so the "
                    "error rate among accepted answers on this device's traffic is unknown; the threshold rests "
                    f"on {self.base_source}"), **common)
            est, upper, lower = self._cur.estimate(0), self._cur.upper(0), self._cur.lower(0)
            if labels == 0:
                est = upper = lower = None
            if self.offline_since is not None and self.offline_since > self._last_label:
                return RiskInfo(status="stale", why="offline since the last label: no audit could run",
                                estimate=est, upper=upper, lower=lower, **common)
            if labels == 0:
                return RiskInfo(status="collecting", why="no labelled answer at this threshold yet", **common)
            return RiskInfo(status="estimated", why=(
                f"{labels} labelled of {answers} answers at this threshold since epoch {self.epoch} began; labels "
                "are agreement with the cloud"), estimate=est, upper=upper, lower=lower, **common)
