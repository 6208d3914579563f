"""The last steps: tell the policy what the answer cost and how good it was, and write the trace row."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Optional

from .._errors import PolicyError, StoreError
from ..answer import Answer
from ..assembly import Parts
from ..messages import Message, prompt_hash
from ..policy.reward import Outcome
from .work import Work

log = logging.getLogger("edgeroute")

#: Grades an answer: (messages, answer text) -> quality in [0, 1], or None when it cannot tell.
Verifier = Callable[[Sequence[Message], str], Optional[float]]


def settle(parts: Parts, verifier: Optional[Verifier], work: Work, answer: Answer) -> None:
    """Tell the policy what the answer cost (J, s, US$) and, with a verifier, how good it was."""
    quality: Optional[float] = None
    if verifier is not None:
        try:
            quality = verifier(work.messages, answer.text)
            if quality is not None and not 0.0 <= float(quality) <= 1.0:
                raise PolicyError(f"the verifier returned {quality!r}, not a quality in [0, 1]")
        except Exception as exc:  # a user's callback: its failure must not lose the answer
            answer.warnings.append(f"verifier failed: {type(exc).__name__}: {exc}")
            quality = None
    cloud_tokens = work.tokens["cloud_prompt"] + work.tokens["cloud_completion"]
    dollars = parts.config.cloud_price_per_1k_usd * cloud_tokens / 1000.0 if answer.route == "cloud" else 0.0
    joules = answer.energy.joules_in(parts.config.energy_scope) or 0.0  # "both": the cloud's estimate counts too
    outcome = Outcome(answer.route, joules, work.latency_ms["total"] / 1000.0, dollars, quality)
    try:
        parts.policy.settle(work.id, outcome)
    except (StoreError, PolicyError) as exc:
        log.warning("edgeroute: the policy could not learn from %s: %s", work.id, exc)
        answer.warnings.append(f"policy not updated: {exc}")


#: Flags of an answer that is escalated whatever its confidence (outside the risk control's population).
_DEFECTS = ("repetition", "truncated", "prompt_too_long", "handoff")  # handoff: an unfinished prefix


def risk(parts: Parts, work: Work, answer: Answer, block: Optional[tuple[str, str]]) -> None:
    """The answer's ``risk``: record the locally judged answer for the control (a row; an escalation is labelled
    by the two answers at once; an accepted one may be queued for an audit), then say what the confidence rests
    on. Defective and sampled answers are not recorded: no threshold would accept them, or the calibration does
    not cover them."""
    if parts.risk is None:
        return
    judged = work.judged and work.confidence is not None
    if judged and work.sampling.plain and not any(f in work.flags for f in _DEFECTS):
        blocked = block[1] if block is not None else None
        offline = blocked is None and parts.cloud is not None and not parts.cloud.reachable
        if offline:
            blocked = "offline: the cloud is unreachable (circuit open)"
        escalated_answer = answer.route == "cloud" and work.escalated and "partial" not in work.flags
        try:
            parts.risk.record(work.id, confidence=float(work.confidence or 0.0), escalated=work.escalated,
                              blocked=blocked, novel=work.novel, question=work.messages, local_text=work.local_text,
                              cloud_text=answer.text if escalated_answer else None, max_tokens=work.max_tokens,
                              offline=offline)
        except StoreError as exc:
            log.warning("edgeroute: risk row not written: %s", exc)
            answer.warnings.append(f"risk row not written: {exc}")
    answer.risk = parts.risk.info(novel=work.novel, novelty=work.novelty, judged=judged)
    if answer.risk.drift and "drift" not in answer.flags:
        answer.flags.append("drift")


def trace(parts: Parts, work: Work, answer: Answer) -> None:
    """One row in the trace store (the prompt itself only with ``store_prompts``)."""
    if parts.store is None:
        return
    row = {
        "id": answer.id,
        "created": answer.created,
        "prompt_hash": prompt_hash(work.messages),
        "prompt": json.dumps(work.messages, ensure_ascii=False) if parts.config.store_prompts else None,
        "model": parts.local.fingerprint,
        "route": answer.route,
        "confidence": answer.confidence,
        "threshold": answer.threshold,
        "signals": answer.signals,
        "latency_ms": answer.latency_ms,
        "tokens": answer.tokens,
        "energy": answer.energy.to_dict(),
        "joules": answer.energy.joules,
        "energy_method": answer.energy.method,
        "reason": answer.reason,
        "error": work.error,
        "risk": answer.risk.to_dict() if answer.risk is not None else None,
        "conversation": answer.conversation,
        "turn": answer.turn,
    }
    try:
        parts.store.record(row)
    except StoreError as exc:
        log.warning("edgeroute: trace not written: %s", exc)
        answer.warnings.append(f"trace not written: {exc}")
