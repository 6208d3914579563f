"""The JSON the endpoint sends: completions, stream chunks and errors in OpenAI's shapes, with edgeroute's routing
decision in an ``edgeroute`` field and ``X-Edgeroute-*`` headers."""

from __future__ import annotations

from typing import Any, Optional

from ..answer import Answer


def completion_id(answer_id: str) -> str:
    """The ``id`` a completion and all of its stream chunks carry (feedback accepts it as well as the bare id)."""
    return f"chatcmpl-{answer_id}"


def routing_metadata(answer: Answer) -> dict[str, Any]:
    """The ``edgeroute`` field of a completion: where it ran, why, how sure, and what it cost the device (and, for a
    cloud answer, the datacenter's estimated joules)."""
    return {
        "id": answer.id,
        "route": answer.route,
        "reason": answer.reason,
        "confidence": answer.confidence,
        "threshold": answer.threshold,
        "threshold_source": answer.threshold_source,
        "flags": list(answer.flags),
        "latency_ms": dict(answer.latency_ms),
        "energy": {"joules": answer.energy.joules, "method": answer.energy.method, "source": answer.energy.source,
                   "cloud": None if answer.energy.cloud is None else {
                       "joules": answer.energy.cloud.joules, "method": answer.energy.cloud.method,
                       "source": answer.energy.cloud.source}},
        "risk": answer.risk.to_dict() if answer.risk is not None else None,
        "conversation": answer.conversation,
        "turn": answer.turn,
    }


def headers_of(answer: Answer) -> dict[str, str]:
    e = answer.energy
    return {
        "X-Edgeroute-Id": answer.id,
        "X-Edgeroute-Route": answer.route,
        "X-Edgeroute-Confidence": "" if answer.confidence is None else f"{answer.confidence:.4f}",
        "X-Edgeroute-Energy-J": "" if e.joules is None else f"{e.joules:.4f}",
        "X-Edgeroute-Energy-Method": e.method,
    }


def usage_of(answer: Answer) -> dict[str, int]:
    t = answer.tokens
    if answer.route == "cloud":
        prompt, completion = t.get("cloud_prompt", 0) or t.get("prompt", 0), t.get("cloud_completion", 0)
    else:
        prompt, completion = t.get("prompt", 0), t.get("completion", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def logprobs_of(answer: Answer) -> Optional[dict[str, Any]]:
    return {"content": answer.logprobs, "refusal": None} if answer.logprobs is not None else None


def completion(answer: Answer, model: str) -> dict[str, Any]:
    choices = [dict(c, index=k) for k, c in enumerate(answer.cloud_choices)] or [
        {"index": 0, "message": {"role": "assistant", "content": answer.text}, "logprobs": logprobs_of(answer),
         "finish_reason": answer.finish_reason}]
    return {
        "id": completion_id(answer.id),
        "object": "chat.completion",
        "created": int(answer.created),
        "model": model,
        "choices": choices,
        "usage": usage_of(answer),
        "edgeroute": routing_metadata(answer),
    }


def chunk(cid: str, created: int, model: str, delta: dict[str, Any], finish: Optional[str] = None, *,
          extra: Optional[dict[str, Any]] = None, logprobs: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
    """One ``chat.completion.chunk``."""
    choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs, "refusal": None}
    payload: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                               "choices": [choice]}
    if extra:
        payload["edgeroute"] = extra
    return payload


def choice_chunks(cid: str, created: int, model: str, choices: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """A pass-through answer's choices (tool calls, several choices) as stream chunks: one delta per choice."""
    out = []
    for k, choice in enumerate(choices):
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        delta: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            delta["tool_calls"] = [dict(c, index=i) for i, c in enumerate(calls) if isinstance(c, dict)]
        payload = chunk(cid, created, model, delta, choice.get("finish_reason") or "stop")
        payload["choices"][0]["index"] = k
        out.append(payload)
    return out


def error_body(message: str, kind: str = "invalid_request_error", param: Optional[str] = None,
               code: Optional[str] = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
