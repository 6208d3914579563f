"""The order of the steps for one query, and the decisions between them."""

from __future__ import annotations

import threading
from dataclasses import fields
from collections.abc import Generator
from typing import Any, Optional

from .._errors import InputError, PromptTooLongError
from ..answer import Answer, Route, StreamEvent
from ..assembly import Parts
from ..cloud.base import CloudAnswer
from ..device import DeviceWatch
from ..local.base import Generation
from ..local.sampling import GREEDY, Sampling
from ..messages import PromptLike, normalize
from ..policy.base import Decision
from ..policy.context import Situation
from ..policy.sticky import ConversationState
from . import cloud as cloud_step
from . import local as local_step
from .record import Verifier, risk, settle, trace
from .work import Work, answer_of


class Pipeline:
    """Runs queries over ``parts``. ``verifier`` grades every answer for a learning policy. Thread-safe: local
    generations are serialised by one gate (the model has one context)."""

    def __init__(self, parts: Parts, verifier: Optional[Verifier] = None) -> None:
        self.parts = parts
        self.verifier = verifier
        #: What the online policy knows of the device (power source, cloud latency).
        self.device = DeviceWatch()
        self.gate = threading.Lock()

    def run(
        self, prompt: PromptLike, *, max_tokens: Optional[int], private: bool, cancel: Optional[threading.Event],
        sampling: Optional[Sampling] = None, answer_id: Optional[str] = None,
        cloud_extra: Optional[dict[str, Any]] = None, conversation: Optional[ConversationState] = None,
    ) -> Generator[StreamEvent, None, Answer]:
        """Yield the query's ``StreamEvent``s; the generator returns the ``Answer`` (also in the ``done`` event).
        ``sampling`` is the request's decoding; a field the local model does not honour sends it to the cloud
        (``InputError`` naming the field when the cloud cannot be used). ``conversation``: the state of the
        conversation this is a turn of (stickiness, the turn index in the trace)."""
        parts = self.parts
        work = Work(normalize(prompt), max_tokens or parts.config.max_tokens, private)
        work.local_messages, work.conversation = work.messages, conversation
        if answer_id is not None:
            work.id = answer_id
        if sampling is not None:
            work.sampling = sampling
        work.cloud_extra = dict(cloud_extra or {})
        block = cloud_step.cloud_block(parts, work)
        work.cloud_ok = block is None
        if parts.risk is not None:  # the threshold in force (the online control may have moved it)
            parts.policy.threshold = parts.risk.threshold
        route: Route
        needs = unhonoured(work.sampling, parts.local.honours) + sorted(work.cloud_extra)
        if work.cloud_extra and block is None and parts.cloud is not None:
            missing = sorted(set(work.cloud_extra) - parts.cloud.passes)
            if missing:
                raise InputError(f"the configured cloud ({parts.cloud.name}) cannot take {', '.join(missing)}",
                                 field=missing[0])
        if needs and block is not None:
            raise InputError(f"the local model cannot honour {', '.join(needs)} and the cloud cannot be used: "
                             f"{block[1]}", field=needs[0])
        if needs:
            skip: Optional[str] = f"the local model cannot honour {', '.join(needs)}"
        else:
            self._fit_history(work)
            long = self._prefill_skip(work) if block is None else None
            sticky = self._sticky_skip(work, probe=long is None) if block is None else None
            skip = sticky or long or (self._pregen_skip(work) if block is None else None)
        reply: Optional[CloudAnswer] = None
        pieces: list[str] = []
        if skip is not None:
            reply, pieces, cloud_exc = yield from cloud_step.cloud_stream(parts, self.device, work, None, cancel)
            if cloud_exc is not None and not pieces:
                if needs:
                    raise cloud_exc
                work.warnings.append(f"{skip}, but the cloud failed ({work.error}): answered locally")
        if reply is not None or pieces:
            route, text = "cloud", reply.text if reply is not None else "".join(pieces)
            cloud_model = reply.model if reply is not None else ""
            reason = f"{skip}: local generation skipped"
            if reply is None:
                reason += f"; the cloud's stream broke ({work.error}): partial answer"
            work.flags.append("needs_cloud" if needs else "sticky" if sticky else "pregen_skip")
        else:
            route, text, reason, cloud_model = yield from self._local_first(work, block, cancel)
        if work.sticky_note:
            reason = f"{reason}; {work.sticky_note}"
        source = parts.risk.control.source if parts.risk is not None else parts.threshold_source
        answer = answer_of(work, route=route, text=text, reason=reason, cloud_model=cloud_model,
                           threshold=parts.policy.threshold, threshold_source=source, model=parts.local.name)
        risk(parts, work, answer, block)
        trace(parts, work, answer)
        settle(parts, self.verifier, work, answer)
        if conversation is not None:
            conversation.settle(route, sticky_turn="sticky" in work.flags, sticky_turns=parts.config.sticky_turns)
        yield StreamEvent("done", answer=answer)
        return answer

    def situation(self, work: Work, generation: Optional[Generation] = None) -> Situation:
        """What the policy sees of this query now."""
        cloud = self.parts.cloud
        reachable = work.cloud_ok and (cloud is None or cloud.reachable)
        conv = work.conversation
        return Situation(work.messages, work.signals, work.confidence,
                         bool(generation is not None and generation.truncated), self.device.state(reachable),
                         repeating="repetition" in work.flags, turn=conv.turn if conv is not None else 0,
                         since_cloud=conv.since_cloud if conv is not None else None,
                         prefill_s=work.prefill_estimate_s,
                         invalid_format=work.signals.get("format_valid") == 0.0)

    def _fit_history(self, work: Work) -> None:
        """Fit the conversation to the local window (``parts.history``); flag the answer when turns were cut."""
        strategy = self.parts.history
        if strategy is None or len(work.messages) < 2:
            return
        with self.gate:  # ``summarize`` runs the local model
            fitted = strategy.fit(work.messages, work.max_tokens)
        work.local_messages = fitted.messages
        if fitted.cut:
            work.flags.append("history_cut")
            work.warnings.append(fitted.note)

    def _sticky_skip(self, work: Work, probe: bool) -> Optional[str]:
        """The reason this conversation turn stays in the cloud, or None; a pre-generation P(correct) at the
        release level ends the sticky run (probed only when ``probe``: the prefill is within its budget)."""
        state, cfg = work.conversation, self.parts.config
        if state is None or not state.sticky:
            return None
        if self.parts.pregen is not None and probe:
            level = cfg.sticky_release if cfg.sticky_release is not None else self.parts.policy.threshold
            score = local_step.pregen_score(self.parts, self.gate, work)
            if score is not None and score >= level:
                state.release()
                work.sticky_note = (f"sticky run released: pre-generation P(correct) {score:.3f} >= {level:.3f}")
                return None
        return state.sticky_reason(cfg.sticky_turns)

    def _prefill_skip(self, work: Work) -> Optional[str]:
        """The reason to send a long prompt straight to the cloud: its prefill would take over ``prefill_budget_s``
        on this device (the estimate is in ``latency_ms["prefill_estimate"]``), or None."""
        budget = self.parts.config.prefill_budget_s
        tokens = self.parts.local.uncached_prompt_tokens(work.local_messages)  # a conversation's cache is reused
        seconds, basis = self.device.prefill_estimate_s(tokens)
        work.latency_ms["prefill_estimate"] = seconds * 1000.0
        work.prefill_estimate_s = seconds
        if budget is None or seconds <= budget:
            return None
        return (f"the prompt's prefill would take ~{seconds:.1f} s here ({tokens} tokens at {basis}), over "
                f"prefill_budget_s={budget:g}")

    def _pregen_skip(self, work: Work) -> Optional[str]:
        """The reason to skip local generation, or None: the policy's pre-generation decision, else the
        pre-generation probe's threshold."""
        parts = self.parts
        probed: list[Optional[float]] = []

        def probe() -> Optional[float]:  # runs the prefill at most once
            if not probed:
                probed.append(local_step.pregen_score(parts, self.gate, work))
                self.device.prefill_done(*parts.local.last_prefill)
            return probed[0]


        decision = parts.policy.before(work.id, self.situation(work), probe if parts.pregen is not None else None)
        if decision is not None:
            return decision.reason if decision.escalate else None
        score = probe() if parts.pregen is not None else None
        if score is not None and parts.pregen is not None and score < parts.pregen.threshold:
            return f"pre-generation probe: P(correct) {score:.3f} < {parts.pregen.threshold:.3f}"
        return None

    def _local_first(
        self, work: Work, block: Optional[tuple[Route, str]], cancel: Optional[threading.Event]
    ) -> Generator[StreamEvent, None, tuple[Route, str, str, str]]:
        """Generate locally, judge, and escalate when the policy says so and the cloud can be used:
        (route, text, reason, cloud model)."""
        parts = self.parts
        generation: Optional[Generation] = None
        try:
            generation = yield from local_step.generate(parts, self.gate, work, cancel)
            self.device.prefill_done(*parts.local.last_prefill)
            decision = local_step.judge(parts, work, generation, self.situation)
            work.local_text, work.judged, work.escalated = generation.text, True, decision.escalate
            if parts.risk is not None:
                work.novel, work.novelty = parts.risk.novelty_of(generation.prompt_hidden)
        except PromptTooLongError as exc:
            work.flags.append("prompt_too_long")
            work.tokens["prompt"] = exc.prompt_tokens
            if block is not None:
                raise PromptTooLongError(
                    f"{exc}; cannot escalate: {block[1]}", prompt_tokens=exc.prompt_tokens, n_ctx=exc.n_ctx,
                    over_tokens=exc.over_tokens) from None
            decision = Decision(True, str(exc))

        text = generation.text if generation is not None else ""
        if not decision.escalate:
            return "local", text, decision.reason, ""
        if block is not None:
            route, why = block
            work.flags.append("low_confidence")
            if route == "local-offline":
                work.flags.append("offline")
            return route, text, f"{decision.reason}; not escalated: {why}", ""
        reply, pieces, cloud_exc = yield from cloud_step.cloud_stream(parts, self.device, work, decision.reason, cancel)
        if reply is not None:
            return "cloud", reply.text, f"escalated: {decision.reason}", reply.model
        if pieces:  # the caller has seen part of the cloud's answer: no silent retry, flagged
            return ("cloud", "".join(pieces),
                    f"escalated: {decision.reason}; the cloud's stream broke ({work.error}): partial answer", "")
        if generation is None:
            raise PromptTooLongError(
                f"{decision.reason}; and the cloud failed: {cloud_exc}",
                prompt_tokens=work.tokens["prompt"],
                n_ctx=parts.local.n_ctx,
            ) from cloud_exc
        if parts.config.cloud_required and cloud_exc is not None:
            raise cloud_exc  # strict mode: the caller asked for the cloud's answer or an error
        work.flags += ["low_confidence", "offline"]
        return "local-offline", text, f"{decision.reason}; cloud failed: {work.error}", ""


def unhonoured(sampling: Sampling, honours: frozenset[str]) -> list[str]:
    """The fields of ``sampling`` set away from greedy defaults that an engine honouring ``honours`` cannot."""
    return [f.name for f in fields(Sampling)
            if getattr(sampling, f.name) != getattr(GREEDY, f.name) and f.name not in honours]
