"""The local steps: the pre-generation probe (prefill only), local generation, and judging the answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from typing import Optional

from ..answer import StreamEvent
from ..assembly import Parts
from ..local.base import Generation
from ..policy.base import Decision
from ..policy.context import Situation
from ..signals.base import confidence_of, evaluate, floats
from ..signals.prefix import HandoffWatch
from ..signals.repetition import ends_in_loop
from .work import Work, energy_begin, energy_end, openai_logprobs

#: (work, generation or None) -> what the policy sees of the query now.
SituationOf = Callable[[Work, Optional[Generation]], Situation]


def pregen_score(parts: Parts, gate: threading.Lock, work: Work) -> Optional[float]:
    """Run the pre-generation probe (prefill only): P(local answer correct), or None without a probe."""
    probe = parts.pregen
    if probe is None:
        return None
    if "pregen_confidence" in work.signals:  # probed already for this query (the sticky release)
        return work.signals["pregen_confidence"]
    t = time.perf_counter()
    with gate:
        window = energy_begin(parts.energy, "process")
        try:
            hidden = parts.local.prompt_hidden(work.local_messages)
            score = probe.score(hidden, work.local_messages) if hidden is not None else None
        finally:
            work.energy_pregen = energy_end(parts.energy, window)
    work.latency_ms["pregen"] = (time.perf_counter() - t) * 1000.0
    if score is not None:
        work.signals["pregen_confidence"] = score
    return score


def handoff_watch(parts: Parts, work: Work) -> Optional[HandoffWatch]:
    """The mid-stream handoff's watch for this query, or None: no rule, the cloud cannot take the query (private,
    sensitive, none configured) or is unreachable (offline, breaker open), or the decoding is not the greedy one
    the rule was chosen on."""
    cloud = parts.cloud
    if parts.handoff is None or not work.cloud_ok or cloud is None or not cloud.reachable:
        return None
    if not work.sampling.plain or parts.config.temperature > 0:
        return None
    return HandoffWatch(parts.handoff)


def generate(parts: Parts, gate: threading.Lock, work: Work,
             cancel: Optional[threading.Event]) -> Generator[StreamEvent, None, Generation]:
    """Stream the local answer as ``token`` events; the generator returns the ``Generation``. ``gate`` serialises
    generations (the model has one context); the energy window opens inside it, so a query waiting for the model
    is not charged for another query's compute. When the handoff's watch stops the decode, a ``handoff`` event
    follows the last local token."""
    watch = handoff_watch(parts, work)
    with gate:
        window = energy_begin(parts.energy, "process")
        sampling = work.sampling
        extra: dict[str, object] = {"sampling": sampling} if not sampling.plain else {}
        if watch is not None:
            extra["watch"] = watch
        stream = parts.local.stream(work.local_messages, max_tokens=work.max_tokens,
                                    temperature=sampling.temperature or parts.config.temperature, cancel=cancel,
                                    **extra)
        try:
            while True:
                try:
                    piece = next(stream)
                except StopIteration as stop:
                    generation: Generation = stop.value
                    break
                yield StreamEvent("token", text=piece, source="local")
        finally:
            stream.close()
            work.energy_local = energy_end(parts.energy, window)
    work.latency_ms["prefill"] = generation.prefill_s * 1000.0
    work.latency_ms["decode"] = generation.decode_s * 1000.0
    if generation.n_threads:
        work.latency_ms["threads"] = float(generation.n_threads)  # the count, beside the times it produced
        reading = work.energy_local
        if reading is not None and reading.kind == "measured" and reading.joules:
            parts.local.record_energy(generation.n_threads, reading.joules, generation.completion_tokens)
    work.tokens["prompt"] = generation.prompt_tokens
    work.tokens["completion"] = generation.completion_tokens
    # an answer stopped for a handoff is unfinished: "length" in OpenAI's terms, should it be returned (cloud failed)
    work.finish_reason = "length" if generation.finish_reason == "handoff" else generation.finish_reason
    if work.sampling.logprobs:
        work.logprobs = openai_logprobs(generation.token_texts, list(generation.token_logprobs), generation.token_top)
    if work.sampling.sampled or parts.config.temperature > 0:
        work.flags.append("uncalibrated")
    if generation.truncated:
        work.flags.append("truncated")
    if ends_in_loop(generation.token_ids):
        work.flags.append("repetition")
    if generation.finish_reason == "handoff" and watch is not None and watch.reason is not None:
        work.handoff = f"handoff after {watch.tokens} tokens: {watch.reason}"
        work.flags.append("handoff")
        yield StreamEvent("handoff", text=work.handoff, source="local")
    return generation


def judge(parts: Parts, work: Work, generation: Generation, situation: SituationOf) -> Decision:
    """Compute the signals and the confidence, then ask the policy."""
    t = time.perf_counter()
    values = evaluate(parts.signals, generation, work.local_messages)
    work.signals.update(floats(values))
    work.confidence = confidence_of(parts.signals, values)
    decision = parts.policy.judge(work.id, situation(work, generation))  # an online policy keeps the context
    work.latency_ms["signals"] = (time.perf_counter() - t) * 1000.0
    if work.handoff is not None:  # stopped early: the unfinished answer is never accepted
        return Decision(True, work.handoff)
    return decision
