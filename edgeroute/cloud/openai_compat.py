"""OpenAI-compatible chat completions over httpx (OpenAI, vLLM, llama.cpp server, Ollama, ...)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, Optional

import httpx

from .._constants import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_READ_TIMEOUT_S, ENV_CLOUD_API_KEY
from .._errors import CloudResponseError, ConfigError
from ..messages import Message
from ._http import post_json
from .base import CloudAnswer, CloudBackend


def parse_chat_completion(body: Any) -> tuple[str, str, int, int, str]:
    """(text, model, prompt_tokens, completion_tokens, finish_reason) from a chat-completion body."""
    try:
        choice = body["choices"][0]
        text = choice["message"]["content"]
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


class OpenAICompatBackend(CloudBackend):
    """POSTs ``{base_url}/chat/completions``. ``base_url`` includes the API prefix, e.g. ``.../v1``.

    The API key is read from ``api_key`` or the environment variable ``api_key_env``; it is sent only in the
    Authorization header and never logged or stored. ``transport`` exists for fault-injection tests. It makes
    exactly one request per call: retries belong to ``RetryingBackend``.
    """

    name = "openai-compatible"

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
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"cloud base URL must start with http:// or https://, got {base_url!r}")
        if connect_timeout_s <= 0 or read_timeout_s <= 0:
            raise ConfigError("cloud timeouts must be positive seconds")
        self.base_url = base_url.rstrip("/")
        self.model = model
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            transport=transport,
        )

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAICompatBackend(base_url={self.base_url!r}, model={self.model!r})"

    def complete(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0, timeout_s: Optional[float] = None
    ) -> CloudAnswer:
        payload = {"model": self.model, "messages": list(messages), "max_tokens": max_tokens, "temperature": temperature}
        t0 = time.perf_counter()
        body = post_json(self._client, self.base_url, "/chat/completions", payload, timeout_s)
        text, model, n_in, n_out, finish = parse_chat_completion(body)
        return CloudAnswer(text, model or self.model, n_in, n_out, time.perf_counter() - t0, finish)

    def close(self) -> None:
        self._client.close()
