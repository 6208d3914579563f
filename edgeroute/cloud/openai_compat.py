"""OpenAI-compatible chat completions over httpx (OpenAI, vLLM, llama.cpp server, Ollama, ...)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator, Mapping, Sequence
from typing import Any, Callable, Optional, TypeVar

import httpx

from .._constants import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_READ_TIMEOUT_S, ENV_CLOUD_API_KEY
from .._errors import CloudAuthError, CloudResponseError, CloudStreamError, CloudTimeoutError
from ..messages import Message
from ..scrub import scrub
from ._http import Deadline, check_status, make_client, post_json, timeout_of, transport_error
from .base import CloudAnswer, CloudBackend
from .tokens import BearerTokens, TokenProvider, command_provider

T = TypeVar("T")


def parse_chat_completion(body: Any, allow_empty: bool = False) -> tuple[str, str, int, int, str]:
    """(text, model, prompt_tokens, completion_tokens, finish_reason) from a chat-completion body;
    ``allow_empty``: a null content is "" (a tool call's message has none)."""
    try:
        choice = body["choices"][0]
        text = choice["message"]["content"]
        if text is None and allow_empty and isinstance(choice["message"], dict):
            text = ""
        if not isinstance(text, str):
            raise TypeError("content is not a string")
        usage = body.get("usage") or {}
        return (
            text,
            str(body.get("model", "")),
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            str(choice.get("finish_reason") or ""),
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise CloudResponseError(f"the cloud's answer is not a chat completion ({exc!r})") from None


def chunk_pieces(chunk: dict[str, Any], base_url: str) -> list[tuple[str, str]]:
    """(text piece, finish_reason) per choice of one stream chunk; ``CloudResponseError`` when its shape is wrong
    (``choices`` not a list, a delta that is not an object, content that is not a string)."""
    choices = chunk.get("choices")
    if choices is None:
        return []
    if not isinstance(choices, list):
        raise CloudResponseError(f"{base_url}: a stream chunk's 'choices' is not a list")
    out = []
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(choice, dict) or not isinstance(delta, (dict, type(None))):
            raise CloudResponseError(f"{base_url}: a stream chunk's choice is not an object with a delta")
        content = (delta or {}).get("content")
        finish = choice.get("finish_reason")
        if not isinstance(content, (str, type(None))) or not isinstance(finish, (str, type(None))):
            raise CloudResponseError(f"{base_url}: a stream chunk's content or finish_reason is not a string")
        out.append((content or "", finish or ""))
    return out


class OpenAICompatBackend(CloudBackend):
    """POSTs ``{base_url}/chat/completions``. ``base_url`` includes the API prefix, e.g. ``.../v1``.

    The API key is read from ``api_key`` or the environment variable ``api_key_env``; it is sent only in the
    Authorization header and never logged or stored. ``transport`` exists for fault-injection tests. It makes
    exactly one request per call: retries belong to ``RetryingBackend``.
    """

    name = "openai-compatible"

    @classmethod
    def from_config(cls, config: Any) -> "OpenAICompatBackend":
        """``cloud_url``, ``cloud_model``, ``cloud_api_key_env`` and the timeouts of a ``RouterConfig``."""
        provider = command_provider(config.cloud_token_command) if config.cloud_token_command else None
        return cls(config.cloud_url, config.cloud_model, api_key_env=config.cloud_api_key_env,
                   connect_timeout_s=config.connect_timeout_s, read_timeout_s=config.read_timeout_s,
                   token_provider=provider)

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: Optional[str] = None,
        api_key_env: str = ENV_CLOUD_API_KEY,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        transport: Optional[httpx.BaseTransport] = None,
        token_provider: Optional[TokenProvider] = None,
    ) -> None:
        self.model = model
        self._tokens = BearerTokens(token_provider) if token_provider is not None else None
        self.renews_credentials = self._tokens is not None
        key = None if self._tokens is not None else api_key if api_key is not None else os.environ.get(api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._key_secrets: tuple[str, ...] = (key,) if key else ()
        self.base_url, self._client = make_client(base_url, headers, connect_timeout_s, read_timeout_s, transport)

    @property
    def _secrets(self) -> tuple[str, ...]:
        return self._key_secrets + tuple(self._tokens.seen if self._tokens is not None else ())

    def _auth(self) -> dict[str, str]:
        """The Authorization header for the next request (a provider's current token), or none: the client's."""
        return {"Authorization": f"Bearer {self._tokens.get()}"} if self._tokens is not None else {}

    def _with_fresh_token(self, call: Callable[[], T]) -> T:
        """``call()``; after a 401 with a provider's token, once more with a fresh token."""
        try:
            return call()
        except CloudAuthError as exc:
            if self._tokens is None or exc.status_code != 401:
                raise
            self._tokens.invalidate()
            return call()

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAICompatBackend(base_url={self.base_url!r}, model={self.model!r})"

    #: OpenAI request fields sent on verbatim (``extra``).
    passes = frozenset({"tools", "tool_choice", "parallel_tool_calls", "n", "presence_penalty", "frequency_penalty",
                        "response_format", "logprobs", "top_logprobs", "top_p", "seed", "stop"})

    def complete(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0, timeout_s: Optional[float] = None,
        extra: Optional[Mapping[str, Any]] = None,
    ) -> CloudAnswer:
        payload = {"model": self.model, "messages": list(messages), "max_tokens": max_tokens, "temperature": temperature}
        payload.update({k: v for k, v in (extra or {}).items() if k in self.passes})
        t0 = time.perf_counter()
        body = self._with_fresh_token(lambda: post_json(self._client, self.base_url, "/chat/completions", payload,
                                                        timeout_s, self._secrets, self._auth()))
        text, model, n_in, n_out, finish = parse_chat_completion(body, allow_empty=bool(extra))
        choices = tuple(body["choices"]) if extra else ()
        return CloudAnswer(text, model or self.model, n_in, n_out, time.perf_counter() - t0, finish, choices)

    def stream(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0,
        timeout_s: Optional[float] = None
    ) -> Generator[str, None, CloudAnswer]:
        """Server-sent events (``"stream": true``). Errors before the first piece are the usual typed ones; after
        it, a dropped connection, an SSE error event or an unreadable chunk is a ``CloudStreamError``. A 401 with a
        provider's token is retried once with a fresh token (nothing has been sent yet)."""
        try:
            return (yield from self._stream(messages, max_tokens, temperature, timeout_s))
        except CloudAuthError as exc:
            if self._tokens is None or exc.status_code != 401:
                raise
            self._tokens.invalidate()
            return (yield from self._stream(messages, max_tokens, temperature, timeout_s))

    def _stream(
        self, messages: Sequence[Message], max_tokens: int, temperature: float, timeout_s: Optional[float]
    ) -> Generator[str, None, CloudAnswer]:
        payload = {"model": self.model, "messages": list(messages), "max_tokens": max_tokens,
                   "temperature": temperature, "stream": True}
        t0 = time.perf_counter()
        pieces: list[str] = []
        model, finish, done = self.model, "", False
        deadline = Deadline(self.base_url, timeout_s)  # the whole call, a trickling stream included
        try:
            with self._client.stream("POST", "/chat/completions", json=payload, timeout=timeout_of(timeout_s),
                                     headers=self._auth()) as r:
                if not r.is_success:
                    r.read()
                    check_status(r, self.base_url, self._secrets)
                if "text/event-stream" not in r.headers.get("content-type", ""):
                    # a server that ignores "stream" answers with one JSON completion; a captive portal with HTML
                    r.read()
                    try:
                        body = json.loads(r.content)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        raise CloudResponseError(
                            f"{self.base_url} answered {r.status_code} with a body that is neither an event stream "
                            f"nor JSON (content-type {r.headers.get('content-type', '?')!r})"
                        ) from None
                    text, model, n_in, n_out, finish = parse_chat_completion(body)
                    if text:
                        yield text
                    return CloudAnswer(text, model or self.model, n_in, n_out, time.perf_counter() - t0, finish)
                for line in r.iter_lines():
                    try:
                        deadline.check()
                    except CloudTimeoutError as exc:
                        if pieces:
                            raise CloudStreamError(f"{exc} (after {len(pieces)} pieces)") from None
                        raise
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        break
                    try:
                        chunk = json.loads(data)
                    except json.JSONDecodeError:
                        raise CloudStreamError(f"{self.base_url}: unreadable stream chunk {data[:80]!r}") from None
                    if not isinstance(chunk, dict) or "error" in chunk:
                        detail = chunk.get("error") if isinstance(chunk, dict) else chunk
                        raise CloudStreamError(scrub(f"{self.base_url}: error event in the stream: "
                                                     f"{str(detail)[:200]}", self._secrets))
                    model = str(chunk.get("model") or model)
                    for piece, finish_now in chunk_pieces(chunk, self.base_url):
                        finish = finish_now or finish
                        if piece:
                            pieces.append(piece)
                            yield piece
        except httpx.TransportError as exc:
            if pieces:
                raise CloudStreamError(f"{self.base_url}: the stream broke after {len(pieces)} pieces "
                                       f"({type(exc).__name__})") from exc
            raise transport_error(self.base_url, exc, self._secrets) from exc
        except CloudResponseError as exc:
            if pieces:  # a malformed chunk after the answer began
                raise CloudStreamError(str(exc)) from None
            raise
        if not done and not finish:
            if not pieces:
                raise CloudResponseError(f"{self.base_url}: the event stream ended before any answer")
            raise CloudStreamError(f"{self.base_url}: the stream ended without [DONE] after {len(pieces)} pieces")
        return CloudAnswer("".join(pieces), model, 0, len(pieces), time.perf_counter() - t0, finish)

    def close(self) -> None:
        self._client.close()
