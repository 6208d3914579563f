"""What the Router returns: an ``Answer``, and the events of a streamed one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Optional

from .energy.base import QueryEnergy

if TYPE_CHECKING:
    from .risk.control import RiskInfo

Route = Literal["local", "cloud", "local-offline"]


@dataclass
class Answer:
    """One routed answer.

    ``route`` is ``local`` (the local answer was accepted, or escalation is disabled), ``cloud`` (the cloud answered)
    or ``local-offline`` (escalation was wanted but the cloud was not configured or not reachable; ``reason`` says
    which). ``confidence`` is the estimated P(local answer correct) in [0, 1], or None when unknown;
    ``threshold_source`` says where the threshold came from (``default``, ``configured`` or the calibration).
    ``latency_ms`` holds per-stage milliseconds and ``total``; ``tokens`` holds token counts per side.
    ``energy`` is the device-side energy in joules with its method (``measured`` or ``estimated``, and from what),
    split into the local generation and the wait for the cloud, plus joules per local output token; for a cloud
    answer ``energy.cloud`` is the datacenter's side, always ``estimated`` from tokens (``energy.sides``: both).
    ``flags`` lists conditions worth a look: ``low_confidence``, ``truncated``, ``repetition``, ``handoff``, ``offline``,
    ``prompt_too_long``, ``history_cut`` (older turns left out to fit the local window), ``sticky`` (kept in the
    cloud after an earlier turn's escalation), ``uncalibrated`` (sampled, not greedy: the calibration does not cover it), ``drift`` (this
    device's traffic has moved from the calibration's, or its threshold was shown to break its promise: ``risk``).
    ``finish_reason`` is ``stop`` (the answer ended, or hit a stop sequence) or ``length`` (cut by the token
    budget). ``logprobs`` holds, when asked for, one entry per local answer token in OpenAI's shape (``token``,
    ``logprob`` in nats, ``bytes``, ``top_logprobs``); None otherwise, and for cloud answers.
    """

    id: str
    text: str
    route: Route
    confidence: Optional[float]
    signals: dict[str, float]
    threshold: Optional[float]
    latency_ms: dict[str, float]
    tokens: dict[str, int]
    energy: QueryEnergy
    reason: str = ""
    threshold_source: str = ""
    flags: list[str] = field(default_factory=list)
    model: str = ""
    cloud_model: str = ""
    created: float = 0.0
    warnings: list[str] = field(default_factory=list)
    finish_reason: str = "stop"
    logprobs: Optional[list[dict[str, Any]]] = None
    #: The cloud's choices as sent, when the request passed fields only the cloud honours (tool calls, ``n``).
    cloud_choices: tuple[dict[str, Any], ...] = ()
    risk: Optional["RiskInfo"] = None
    #: The conversation this answer is a turn of, and its 0-based turn index (None: a lone query).
    conversation: Optional[str] = None
    turn: Optional[int] = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "route": self.route,
            "confidence": self.confidence,
            "signals": dict(self.signals),
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "latency_ms": dict(self.latency_ms),
            "tokens": dict(self.tokens),
            "energy": self.energy.to_dict(),
            "reason": self.reason,
            "flags": list(self.flags),
            "model": self.model,
            "cloud_model": self.cloud_model,
            "created": self.created,
            "warnings": list(self.warnings),
            "finish_reason": self.finish_reason,
            "logprobs": self.logprobs,
            "cloud_choices": list(self.cloud_choices),
            "risk": self.risk.to_dict() if self.risk is not None else None,
            "conversation": self.conversation,
            "turn": self.turn,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False, **kwargs)


@dataclass(frozen=True)
class StreamEvent:
    """One event of ``Router.stream``.

    ``type`` is ``token`` (``text`` is the next piece, ``source`` says whose), ``handoff`` (the local decode was
    stopped early because its prefix looked hopeless; ``text`` is the reason; an ``escalate`` follows when the cloud
    answers), ``escalate`` (the local pieces sent so far are superseded by the cloud's answer that follows; ``text``
    is the reason) or ``done`` (``answer`` is set).
    """

    type: Literal["token", "handoff", "escalate", "done"]
    text: str = ""
    source: str = ""
    answer: Optional[Answer] = None
