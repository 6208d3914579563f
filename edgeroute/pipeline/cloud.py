"""The cloud steps: whether this query may leave the device, and streaming the cloud's answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import Optional

from .._errors import CloudError, GenerationCancelled
from ..answer import Route, StreamEvent
from ..assembly import Parts
from ..cloud.base import CloudAnswer
from ..device import DeviceWatch
from ..energy.base import EnergyReading
from ..energy.cloud import cloud_rate
from ..scrub import scrub
from .work import Work, energy_begin, energy_end


def cloud_block(parts: Parts, work: Work) -> Optional[tuple[Route, str]]:
    """Why the cloud cannot be used for this query (route to report, reason), or None when it can."""
    if work.private:
        return "local", "private prompt: kept on the device"
    if parts.privacy is not None:
        kinds = parts.privacy.kinds_in([m["content"] for m in work.messages])
        if kinds:
            work.flags.append("sensitive")
            return "local", f"sensitive data detected ({', '.join(kinds)}): kept on the device"
    if parts.config.local_only:
        return "local", "local_only: escalation disabled"
    if parts.cloud is None:
        if parts.cloud_disabled:
            return "local-offline", parts.cloud_disabled
        return "local-offline", "cloud not configured (set cloud_url or $EDGEROUTE_CLOUD_URL)"
    why = parts.cloud.blocked()
    if why:
        work.flags.append("cloud_capped")
        return "local", f"{why}: kept on the device"
    return None


def cloud_stream(
    parts: Parts, device: DeviceWatch, work: Work, escalating: Optional[str],
    cancel: Optional[threading.Event] = None,
) -> Generator[StreamEvent, None, tuple[Optional[CloudAnswer], list[str], Optional[CloudError]]]:
    """Stream the cloud's answer to the caller: (answer, pieces sent, error). ``escalating`` (the reason) is
    announced with an ``escalate`` event just before the first piece, so a cloud that fails before answering
    leaves the local text standing. A failure after a piece was sent is not retried; it is flagged ``partial``."""
    assert parts.cloud is not None
    t = time.perf_counter()
    window = energy_begin(parts.energy, "thread")
    pieces: list[str] = []
    reply: Optional[CloudAnswer] = None
    error: Optional[CloudError] = None
    temperature = work.sampling.temperature if not work.sampling.plain else parts.config.temperature
    if work.cloud_extra:  # fields sent on verbatim (tools, n, ...): one complete answer, its choices kept
        stream = _completed(parts, work, temperature)
    else:
        stream = parts.cloud.stream(work.messages, max_tokens=work.max_tokens, temperature=temperature)
    try:
        while True:
            try:
                piece = next(stream)
            except StopIteration as stop:
                reply = stop.value
                break
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled("cancelled by the caller during the cloud's answer")
            if not pieces and escalating is not None:
                yield StreamEvent("escalate", text=escalating, source="cloud")
            pieces.append(piece)
            yield StreamEvent("token", text=piece, source="cloud")
    except CloudError as exc:
        error = exc
        work.error = scrub(f"{type(exc).__name__}: {exc}")
        if pieces:
            work.flags.append("partial")
    finally:
        stream.close()
        work.latency_ms["cloud"] = (time.perf_counter() - t) * 1000.0
        work.energy_cloud = energy_end(parts.energy, window)
    if reply is not None:
        work.finish_reason = "length" if reply.finish_reason == "length" else "stop"
        work.cloud_choices = reply.choices
        device.cloud_answered(work.latency_ms["cloud"] / 1000.0)
        work.tokens["cloud_prompt"] = reply.prompt_tokens
        work.tokens["cloud_completion"] = reply.completion_tokens
        work.energy_datacenter = datacenter_energy(parts, work, reply)
    elif pieces:
        work.energy_datacenter = EnergyReading.unmeasured("the cloud's stream broke before it reported its tokens")
    return reply, pieces, error


def datacenter_energy(parts: Parts, work: Work, reply: CloudAnswer) -> EnergyReading:
    """The cloud's side of the answer's energy: an estimate from its tokens (``energy.cloud``), labelled so. A
    stream reports no usage: its input is counted as the prompt's characters / 4 (and the output as its pieces)."""
    cfg = parts.config
    rate = cloud_rate(reply.model or cfg.cloud_model, cfg.cloud_energy_class, cfg.cloud_energy_j_per_output_token,
                      cfg.cloud_energy_j_per_input_token)
    if reply.prompt_tokens:
        return rate.estimate(reply.prompt_tokens, reply.completion_tokens)
    chars = sum(len(str(m.get("content") or "")) for m in work.messages)
    return rate.estimate(-(-chars // 4), reply.completion_tokens, input_counted="approximated as characters / 4 "
                         "(the provider reported none)")


def _completed(parts: Parts, work: Work, temperature: float) -> Generator[str, None, CloudAnswer]:
    """The cloud's whole answer with ``work.cloud_extra`` sent on, as a one-piece stream."""
    assert parts.cloud is not None
    answer = parts.cloud.complete(work.messages, max_tokens=work.max_tokens, temperature=temperature,
                                  extra=dict(work.cloud_extra))  # type: ignore[call-arg]
    if answer.text:
        yield answer.text
    return answer
