"""The state of one query while it moves through the pipeline, the energy window helpers, and the Answer it
becomes."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

from ..answer import Answer, Route
from ..energy.base import EnergyReading, QueryEnergy, combine
from ..energy.cputime import CpuScope
from ..energy.monitor import EnergyMonitor, EnergyWindow
from ..local.sampling import GREEDY, Sampling
from ..messages import Message
from ..policy.sticky import ConversationState

ENERGY_OFF = "energy metering disabled (energy=False)"


@dataclass
class Work:
    """Mutable state of one query. Times in ms (``latency_ms``), token counts per side (``tokens``)."""

    messages: list[Message]
    max_tokens: int
    private: bool
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: float = field(default_factory=time.time)
    t0: float = field(default_factory=time.perf_counter)
    latency_ms: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=lambda: dict(prompt=0, completion=0, cloud_prompt=0, cloud_completion=0))
    signals: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    confidence: Optional[float] = None
    error: Optional[str] = None
    energy_local: Optional[EnergyReading] = None
    energy_pregen: Optional[EnergyReading] = None
    energy_cloud: Optional[EnergyReading] = None  # this device, while it waits for the cloud
    energy_datacenter: Optional[EnergyReading] = None  # the cloud's side (an estimate from tokens)
    cloud_ok: bool = False  # the cloud may be used for this query (not private, configured, not disabled)
    sampling: Sampling = GREEDY
    finish_reason: str = "stop"
    logprobs: Optional[list[dict[str, Any]]] = None
    cloud_extra: dict[str, Any] = field(default_factory=dict)  # request fields only the cloud can honour
    cloud_choices: tuple[dict[str, Any], ...] = ()
    # what the risk step needs: the local answer and whether the policy escalated it; the prompt's novelty
    local_text: str = ""
    judged: bool = False
    escalated: bool = False
    novel: Optional[bool] = None
    novelty: Optional[float] = None
    #: Why the local decode was stopped early and handed to the cloud (``handoff after N tokens: ...``), or None.
    handoff: Optional[str] = None
    #: What the local model gets: ``messages`` with the history fitted to its window (``edgeroute.history``).
    local_messages: list[Message] = field(default_factory=list)
    #: The conversation this turn belongs to (``policy.sticky``), or None for a lone query.
    conversation: Optional[ConversationState] = None
    #: How stickiness shaped this turn (appended to the reason), or "".
    sticky_note: str = ""
    #: The prompt's prefill time as estimated before it ran, seconds (None: not estimated).
    prefill_estimate_s: Optional[float] = None


def energy_begin(monitor: Optional[EnergyMonitor], cpu: CpuScope) -> Optional[EnergyWindow]:
    return monitor.begin(cpu) if monitor is not None else None


def energy_end(monitor: Optional[EnergyMonitor], window: Optional[EnergyWindow]) -> EnergyReading:
    if monitor is None or window is None:
        return EnergyReading.unmeasured(ENERGY_OFF)
    return monitor.end(window)


def answer_of(work: Work, *, route: Route, text: str, reason: str, cloud_model: str, threshold: float,
              threshold_source: str, model: str) -> Answer:
    """The finished query as the caller sees it."""
    work.latency_ms["total"] = (time.perf_counter() - work.t0) * 1000.0
    local = [e for e in (work.energy_pregen, work.energy_local) if e is not None]
    return Answer(
        id=work.id,
        text=text,
        route=route,
        confidence=work.confidence,
        signals=work.signals,
        threshold=threshold,
        threshold_source=threshold_source,
        latency_ms=work.latency_ms,
        tokens=work.tokens,
        energy=QueryEnergy(
            local=combine(local) if local else EnergyReading.unmeasured(ENERGY_OFF),
            cloud_wait=work.energy_cloud,
            local_tokens=work.tokens["completion"],
            cloud=work.energy_datacenter if route == "cloud" else None,
        ),
        reason=reason,
        flags=work.flags,
        model=model,
        cloud_model=cloud_model,
        created=work.created,
        warnings=work.warnings,
        finish_reason=work.finish_reason,
        logprobs=work.logprobs if route != "cloud" else None,
        cloud_choices=work.cloud_choices,
        conversation=work.conversation.id if work.conversation is not None else None,
        turn=work.conversation.turn if work.conversation is not None else None,
    )


def openai_logprobs(texts: list[str], logprobs: list[float], top: list[list[tuple[str, float]]]) -> list[dict[str, Any]]:
    """Per-token logprobs in OpenAI's ``choices[].logprobs.content`` shape (nats)."""
    def entry(text: str, lp: float) -> dict[str, Any]:
        return {"token": text, "logprob": lp, "bytes": list(text.encode("utf-8"))}

    return [{**entry(t, float(lp)), "top_logprobs": [entry(a, b) for a, b in alts]}
            for t, lp, alts in zip(texts, logprobs, top)]
