"""A chat-completion request, checked field by field: every wrong type or range is a ``RequestError`` naming the
field (rendered as OpenAI's 400 with ``param``)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from .._constants import CONVERSATION_HEADER
from ..local.sampling import MAX_STOP_SEQUENCES, MAX_TOP_LOGPROBS, Sampling
from ..messages import Message

#: The largest ``max_tokens`` a request may ask for.
MAX_REQUEST_TOKENS = 32768
#: Roles OpenAI clients send; ``developer`` is read as ``system``.
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
STREAM_MODES = ("hold", "live")
#: Fields accepted and safely ignored (they change nothing an answer depends on).
IGNORED = frozenset({"model", "user", "metadata", "store", "service_tier", "parallel_tool_calls", "modalities"})


class RequestError(ValueError):
    """A field of the request is wrong: ``param`` names it; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, param: Optional[str] = None, status: int = 400) -> None:
        super().__init__(message)
        self.param, self.status = param, status


@dataclass(frozen=True)
class ChatRequest:
    """What the endpoint will do for one request."""

    messages: list[Message]
    max_tokens: Optional[int]
    stream: bool
    sampling: Sampling
    private: bool = False
    stream_mode: str = "hold"
    include_usage: bool = False
    model: str = ""
    #: Fields only the cloud honours (``tools``, ``n`` > 1, penalties): sent on verbatim, the request needs it.
    extra: dict[str, Any] = field(default_factory=dict)
    #: The conversation this request is a turn of (header or ``edgeroute.conversation``), or None.
    conversation: Optional[str] = None


def parse_json(raw: bytes) -> Any:
    """The request body as JSON; ``RequestError`` when it is not (invalid UTF-8, syntax, or nested too deep)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise RequestError("the JSON body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"the body is not valid JSON: {str(exc)[:120]}") from None


def _number(body: dict[str, Any], name: str, lo: float, hi: float) -> Optional[float]:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"'{name}' must be a number, got {json.dumps(value)[:40]}", name)
    if not lo <= value <= hi:
        raise RequestError(f"'{name}' must be between {lo:g} and {hi:g}, got {value}", name)
    return float(value)


def _integer(body: dict[str, Any], name: str, lo: int, hi: int) -> Optional[int]:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"'{name}' must be an integer, got {json.dumps(value)[:40]}", name)
    if not lo <= value <= hi:
        raise RequestError(f"'{name}' must be between {lo} and {hi}, got {value}", name)
    return value


def _boolean(body: dict[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(f"'{name}' must be true or false, got {json.dumps(value)[:40]}", name)
    return value


def _content(value: Any, where: str) -> str:
    """A message's content: a string, or a list of text parts (joined); other part types are refused."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for k, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RequestError(f"{where}[{k}] is a {kind!r} part; only text parts are supported", where)
            texts.append(part["text"])
        return "\n".join(texts)
    if value is None:
        return ""
    raise RequestError(f"{where} must be a string or a list of text parts", where)


def _messages(value: Any) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise RequestError("'messages' must be a non-empty list of {role, content} objects", "messages")
    out: list[Message] = []
    for i, m in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise RequestError(f"{where} must be an object with 'role' and 'content'", where)
        role = m.get("role")
        if role == "tool" or m.get("tool_calls"):
            raise RequestError(f"{where}: tool messages need tools, which this endpoint does not run", where)
        if role not in ROLES:
            raise RequestError(f"{where}.role must be one of {sorted(ROLES)}, got {json.dumps(role)[:40]}",
                               f"{where}.role")
        out.append({"role": ROLES[role], "content": _content(m.get("content"), f"{where}.content")})
    return out


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise RequestError("'stop' must be a string or a list of non-empty strings", "stop")
    if len(stops) > MAX_STOP_SEQUENCES:
        raise RequestError(f"'stop' holds at most {MAX_STOP_SEQUENCES} sequences", "stop")
    return tuple(stops)


def _schema(value: Any) -> Optional[dict[str, Any]]:
    """The JSON schema ``response_format`` asks for (``json_object``: any object), or None for text."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in ("text", "json_object", "json_schema"):
        raise RequestError("'response_format' must be {\"type\": \"text\" | \"json_object\" | \"json_schema\"}",
                           "response_format")
    if value["type"] == "text":
        return None
    if value["type"] == "json_object":
        return {"type": "object"}
    spec = value.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise RequestError("'response_format.json_schema.schema' must be a JSON schema object",
                           "response_format.json_schema")
    return schema


def _edgeroute(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError("'edgeroute' must be an object, e.g. {\"private\": true, \"stream\": \"live\"}", "edgeroute")
    unknown = sorted(set(value) - {"private", "stream", "conversation"})
    if unknown:
        raise RequestError(f"unknown 'edgeroute' field(s) {unknown}; known: conversation, private, stream",
                           "edgeroute")
    if not isinstance(value.get("private", False), bool):
        raise RequestError("'edgeroute.private' must be true or false", "edgeroute.private")
    if value.get("stream", "hold") not in STREAM_MODES:
        raise RequestError(f"'edgeroute.stream' must be one of {list(STREAM_MODES)}", "edgeroute.stream")
    return value


def _conversation(field_value: Any, header: Optional[str]) -> Optional[str]:
    """The conversation id from ``edgeroute.conversation`` or the header (they must agree when both are given)."""
    for value, where in ((field_value, "edgeroute.conversation"), (header, CONVERSATION_HEADER)):
        if value is not None and not (isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable()):
            raise RequestError(f"'{where}' must be a printable string of 1-128 characters", where)
    if field_value is not None and header is not None and field_value != header:
        raise RequestError(f"'edgeroute.conversation' and the {CONVERSATION_HEADER} header name different "
                           "conversations", "edgeroute.conversation")
    return field_value if field_value is not None else header


def parse_chat_request(body: Any, conversation_header: Optional[str] = None) -> ChatRequest:
    """Check ``body`` (decoded JSON) and return the request; ``RequestError`` names the first bad field.
    ``conversation_header``: the request's conversation header, if any."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object with a 'messages' list")
    if "model" in body and not isinstance(body["model"], str):
        raise RequestError("'model' must be a string", "model")
    messages = _messages(body.get("messages"))
    max_tokens = _integer(body, "max_completion_tokens", 1, MAX_REQUEST_TOKENS)
    legacy = _integer(body, "max_tokens", 1, MAX_REQUEST_TOKENS)
    max_tokens = max_tokens if max_tokens is not None else legacy
    stream = _boolean(body, "stream")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool)):
        raise RequestError("'stream_options' must be {\"include_usage\": true|false}", "stream_options")
    n = _integer(body, "n", 1, 16)
    for name in ("presence_penalty", "frequency_penalty"):
        _number(body, name, -2.0, 2.0)
    extra: dict[str, Any] = {}
    if body.get("tools"):
        if not isinstance(body["tools"], list) or not all(isinstance(t, dict) for t in body["tools"]):
            raise RequestError("'tools' must be a list of tool objects", "tools")
        extra["tools"] = body["tools"]
        for name in ("tool_choice", "parallel_tool_calls"):
            if body.get(name) is not None:
                extra[name] = body[name]
    if n is not None and n > 1:
        extra["n"] = n
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name):
            extra[name] = body[name]
    logprobs = _boolean(body, "logprobs")
    top_p = _number(body, "top_p", 0.0, 1.0)
    if top_p == 0.0:
        raise RequestError("'top_p' must be above 0", "top_p")
    sampling = Sampling(
        temperature=_number(body, "temperature", 0.0, 2.0) or 0.0,
        top_p=1.0 if top_p is None else top_p,
        top_k=_integer(body, "top_k", 0, 1_000_000) or 0,
        min_p=_number(body, "min_p", 0.0, 1.0) or 0.0,
        seed=_integer(body, "seed", -(2**63), 2**63 - 1),
        stop=_stop(body.get("stop")),
        logprobs=logprobs,
        top_logprobs=(_integer(body, "top_logprobs", 0, MAX_TOP_LOGPROBS) or 0) if logprobs else 0,
        json_schema=_schema(body.get("response_format")),
    )
    if body.get("top_logprobs") and not logprobs:
        raise RequestError("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    ours = _edgeroute(body.get("edgeroute"))
    return ChatRequest(
        messages=messages, max_tokens=max_tokens, stream=stream, sampling=sampling,
        private=bool(ours.get("private", False)), stream_mode=str(ours.get("stream", "hold")),
        include_usage=bool((options or {}).get("include_usage", False)), model=str(body.get("model") or ""),
        extra=extra, conversation=_conversation(ours.get("conversation"), conversation_header),
    )
