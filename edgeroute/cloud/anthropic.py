"""Anthropic's Messages API over httpx (``POST {base_url}/v1/messages``).

System messages go to the top-level ``system`` field; the reply's text blocks are joined. The key comes from
``api_key`` or the environment variable ``api_key_env`` (default ``$ANTHROPIC_API_KEY``), is sent only in the
``x-api-key`` header and never logged. One request per call: retries belong to ``RetryingBackend``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, Optional

import httpx

from .._constants import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_READ_TIMEOUT_S
from .._errors import CloudResponseError
from ..messages import Message
from ._http import make_client, post_json
from .base import CloudAnswer, CloudBackend

API_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"


def parse_message(body: Any) -> tuple[str, str, int, int, str]:
    """(text, model, input_tokens, output_tokens, stop_reason) from a Messages API response."""
    try:
        blocks = body["content"]
        texts = [b["text"] for b in blocks if b.get("type") == "text"]
        if not texts or not all(isinstance(t, str) for t in texts):
            raise TypeError("no text block")
        usage = body.get("usage") or {}
        return ("".join(texts), str(body.get("model", "")), int(usage.get("input_tokens") or 0),
                int(usage.get("output_tokens") or 0), str(body.get("stop_reason") or ""))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise CloudResponseError(f"the cloud's answer is not a Messages API response ({exc!r})") from None


class AnthropicBackend(CloudBackend):
    """Claude models through the Messages API. ``transport`` exists for fault-injection tests."""

    name = "anthropic"

    @classmethod
    def from_config(cls, config: Any) -> "AnthropicBackend":
        """``cloud_model``, ``cloud_url``, ``cloud_api_key_env`` and the timeouts of a ``RouterConfig``."""
        return cls(config.cloud_model, base_url=config.cloud_url or DEFAULT_BASE_URL,
                   api_key_env=config.cloud_api_key_env, connect_timeout_s=config.connect_timeout_s,
                   read_timeout_s=config.read_timeout_s)

    def __init__(
        self,
        model: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: Optional[str] = None,
        api_key_env: str = "ANTHROPIC_API_KEY",
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        self.model = model
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        headers = {"anthropic-version": API_VERSION}
        if key:
            headers["x-api-key"] = key
        self._secrets: tuple[str, ...] = (key,) if key else ()
        self.base_url, self._client = make_client(base_url, headers, connect_timeout_s, read_timeout_s, transport)

    def __repr__(self) -> str:  # never shows the key
        return f"AnthropicBackend(base_url={self.base_url!r}, model={self.model!r})"

    def complete(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0,
        timeout_s: Optional[float] = None
    ) -> CloudAnswer:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
        payload: dict[str, Any] = {"model": self.model, "messages": turns, "max_tokens": max_tokens,
                                   "temperature": temperature}
        if system:
            payload["system"] = system
        t0 = time.perf_counter()
        body = post_json(self._client, self.base_url, "/v1/messages", payload, timeout_s, self._secrets)
        text, model, n_in, n_out, stop = parse_message(body)
        return CloudAnswer(text, model or self.model, n_in, n_out, time.perf_counter() - t0, stop)

    def close(self) -> None:
        self._client.close()
