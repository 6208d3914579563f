"""Risk on the user's own traffic: the answers' ``risk`` field, audits, the online control and the drift alarm.

``Risk`` is the part the pipeline talks to: it gives the threshold in force, measures each prompt's novelty, and
after each answer records the row the bounds are built from (``control``), labels an escalation from the two
answers at once and hands a sampled accepted answer to the background ``Auditor``.
"""

from __future__ import annotations

import calendar
import time
from typing import Any, Optional

import numpy as np

from .control import RiskController, RiskInfo
from .grader import Agreement, agree
from .novelty import NoveltyMap
from .state import RiskState

__all__ = ["Agreement", "Risk", "RiskController", "RiskInfo", "RiskState", "agree"]


class Risk:
    """The risk part of one Router; ``auditor`` (``risk.audit.Auditor``) runs its background work, and audits only
    when ``can_audit`` (a cloud is configured). Without ``state`` (``trace=False``) nothing is recorded or measured,
    and every answer says so."""

    def __init__(self, control: RiskController, state: Optional[RiskState], novelty: Optional[NoveltyMap], *,
                 auditor: Any = None, can_audit: bool = False, budget_calls: Optional[int] = None,
                 budget_usd: Optional[float] = None, judge: bool = False) -> None:
        self.control, self.state, self.novelty, self.auditor = control, state, novelty, auditor
        self.can_audit = can_audit and state is not None
        self.budget_calls, self.budget_usd, self.judge = budget_calls, budget_usd, judge
        self.budget_spent: Optional[str] = None
        self._budget_day = -1
        self.check_budget()

    @property
    def threshold(self) -> float:
        return self.control.threshold

    def novelty_of(self, hidden: Optional[np.ndarray]) -> tuple[Optional[bool], Optional[float]]:
        if self.novelty is None or hidden is None or len(hidden) != self.novelty.n_embd:
            return None, None
        distance = self.novelty.distance(hidden)
        return distance > self.novelty.tau, round(distance, 4)

    def check_budget(self) -> None:
        """Whether today's audit budget (UTC day, across processes) is spent; run by the worker after audits."""
        if self.state is None or (self.budget_calls is None and self.budget_usd is None):
            return
        day_start = calendar.timegm(time.gmtime()[:3] + (0, 0, 0, 0, 0, 0))
        calls, usd = self.state.spend_today(day_start)
        if self.budget_calls is not None and calls >= self.budget_calls:
            self.budget_spent = f"today's audit budget is spent ({calls} of {self.budget_calls} calls)"
        elif self.budget_usd is not None and usd >= self.budget_usd:
            self.budget_spent = f"today's audit budget is spent (US${usd:.4f} of US${self.budget_usd:g})"
        else:
            self.budget_spent = None

    def record(self, answer_id: str, *, confidence: float, escalated: bool, blocked: Optional[str],
               novel: Optional[bool], question: list[dict[str, str]], local_text: str, cloud_text: Optional[str],
               max_tokens: int, offline: bool = False) -> None:
        """The row of one locally judged answer, and its label or audit (``blocked``: why it may not leave the
        device; ``offline``: because the cloud is unreachable, which marks the estimate stale; ``cloud_text``: the
        cloud's answer when it was escalated and answered)."""
        from .audit import AuditJob

        if self.state is None:
            return
        control = self.control
        if blocked is None and escalated and cloud_text is None:
            blocked, offline = "offline: the escalation got no cloud answer", True
        if offline:
            control.offline_since = time.time()
        pi, audit, why = control.plan(accepted=not escalated, blocked=blocked, audit_spent=self.budget_spent)
        if audit and not self.can_audit:
            pi, audit, why = 0.0, False, "no cloud to audit with"
        if audit and (self.budget_calls is not None or self.budget_usd is not None):
            self.check_budget()  # a hard cap across processes: counted before each audit (one SQLite read)
            if self.budget_spent:
                pi, audit, why = 0.0, False, self.budget_spent
        row: dict[str, Any] = dict(answer_id=answer_id, key=control.key, epoch=control.epoch, created=time.time(),
                                   confidence=float(confidence), threshold=control.threshold,
                                   accepted=int(not escalated), pi=pi, novel=None if novel is None else int(novel),
                                   why=why, status="ineligible" if pi <= 0 else ("pending" if audit else "unlabelled"))
        job = None
        if pi >= 1.0 and cloud_text is not None:
            verdict = agree(question[-1]["content"] if question else "", local_text, cloud_text).verdict
            if verdict is not None:
                row.update(status="labelled", wrong=int(not verdict), label_source="escalation")
            elif self.judge and self.can_audit:
                row["status"] = "pending"
                job = AuditJob(answer_id, question, local_text, max_tokens, reference=cloud_text)
            else:
                row["status"] = "dropped"
        elif audit:
            job = AuditJob(answer_id, question, local_text, max_tokens)
        self.state.add(row)
        if self.auditor is not None:
            self.auditor.submit(job)  # None: only fold the new row in, off the answer path

    def info(self, *, novel: Optional[bool] = None, novelty: Optional[float] = None, judged: bool = True) -> RiskInfo:
        unmeasured = None if self.state is not None else "trace=False: no answer is recorded, so nothing is measured"
        return self.control.info(novel=novel, novelty=novelty, judged=judged, auditable=self.can_audit,
                                 unmeasured=unmeasured)

    def close(self) -> None:
        if self.auditor is not None:
            self.auditor.close()
            self.auditor = None
