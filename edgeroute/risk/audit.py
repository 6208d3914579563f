"""Audits: a sampled share of accepted local answers is also asked of the cloud, in the background, and graded.

The caller already has the local answer: an audit never blocks it and never changes it. One worker thread per
Router runs the audits in order; each writes its label (and its cost, latency and device energy, traced as audit)
in one transaction, then refreshes the control. A process killed mid-audit leaves the row ``pending``; it is
dropped from the bounds after ``AUDIT_TIMEOUT_S`` (the labels already written stay).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, Optional

from .._errors import CloudError, EdgeRouteError
from ..cloud.base import CloudBackend
from ..energy.monitor import EnergyMonitor
from ..messages import Message
from .control import RiskController
from .grader import agree, judge_verdict
from .state import RiskState

log = logging.getLogger("edgeroute")


@dataclass(frozen=True)
class AuditJob:
    """One answer to label: ask the cloud (``reference`` None) or only judge against ``reference``."""

    answer_id: str
    messages: list[Message]
    local_text: str
    max_tokens: int
    reference: Optional[str] = None


class Auditor:
    """Runs ``AuditJob``s on one daemon thread (and folds new rows into the control between them);
    ``price_per_1k_usd`` prices the cloud's tokens; ``after`` runs after each job (the budget check). Without a
    ``cloud`` only the folding runs."""

    def __init__(self, cloud: Optional[CloudBackend], state: RiskState, control: RiskController, *,
                 price_per_1k_usd: float, judge_prompt: Optional[str] = None, energy: Optional[EnergyMonitor] = None,
                 after: Optional[Callable[[], None]] = None) -> None:
        self.cloud, self.state, self.control, self.after = cloud, state, control, after
        self.price_per_1k_usd, self.judge_prompt, self.energy = price_per_1k_usd, judge_prompt, energy
        self._jobs: "queue.Queue[Optional[AuditJob]]" = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._outstanding = 0
        self._count = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="edgeroute-audit", daemon=True)
        self._thread.start()

    def submit(self, job: Optional[AuditJob]) -> None:
        """Queue ``job`` (None: only refresh the control)."""
        with self._count:
            self._outstanding += 1
            self._idle.clear()
        self._jobs.put(job)

    def wait(self, timeout_s: float) -> bool:
        """True once every queued job is done (tests, and ``close``)."""
        return self._idle.wait(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Finish the queued audits (up to ``timeout_s``), then stop the worker."""
        self._jobs.put(_STOP)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                self._idle.set()
                return
            try:
                if job is not None:
                    self._audit(job)
                    if self.after is not None:
                        self.after()
                self.control.refresh()
            except EdgeRouteError as exc:  # a damaged store or a broken cloud must not kill the worker
                log.warning("edgeroute: audit of %s failed: %s", getattr(job, "answer_id", "-"), exc)
            except Exception as exc:  # noqa: BLE001 - the worker outlives any one job
                log.warning("edgeroute: audit worker error: %s: %s", type(exc).__name__, exc)
            with self._count:
                self._outstanding -= 1
                if self._outstanding == 0:
                    self._idle.set()

    def _audit(self, job: AuditJob) -> None:
        t = time.perf_counter()
        window = self.energy.begin("thread") if self.energy is not None else None
        tokens, usd, source = 0, 0.0, "escalation" if job.reference is not None else "audit"
        verdict: Optional[bool] = None
        try:
            reference = job.reference
            if reference is None:
                assert self.cloud is not None
                reply = self.cloud.complete(job.messages, max_tokens=job.max_tokens, temperature=0.0)
                reference = reply.text
                tokens += reply.prompt_tokens + reply.completion_tokens
            question = job.messages[-1]["content"] if job.messages else ""
            verdict = agree(question, job.local_text, reference).verdict
            if verdict is None and self.judge_prompt and self.cloud is not None:
                prompt = self.judge_prompt.format(question=question, answer=job.local_text, reference=reference)
                judged = self.cloud.complete([{"role": "user", "content": prompt}], max_tokens=8, temperature=0.0)
                tokens += judged.prompt_tokens + judged.completion_tokens
                verdict, source = judge_verdict(judged.text), "judge"
        except CloudError as exc:
            log.info("edgeroute: audit of %s got no cloud answer: %s", job.answer_id, exc)
            self.control.offline_since = time.time()
        finally:
            usd = self.price_per_1k_usd * tokens / 1000.0
            joules = None
            if window is not None and self.energy is not None:
                joules = self.energy.end(window).joules
        wrong = None if verdict is None else not verdict
        self.state.label(job.answer_id, wrong, source, audit_ms=(time.perf_counter() - t) * 1000.0, audit_usd=usd,
                         audit_j=joules, audit_tokens=tokens)


_STOP: Any = object()
