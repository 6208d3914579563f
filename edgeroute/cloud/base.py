"""The cloud seam: one method. Each provider is one file implementing ``CloudBackend.complete``."""

from __future__ import annotations

import abc
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from ..messages import Message


@dataclass(frozen=True)
class CloudAnswer:
    """A cloud completion. ``latency_s`` is wall seconds from request to parsed answer."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    finish_reason: str = ""
    #: The response's choices as sent (tool calls, several choices), when the request passed ``extra`` fields.
    choices: tuple[dict[str, Any], ...] = ()


class CloudBackend(abc.ABC):
    """A remote chat model. Raise a ``CloudError`` subclass on every failure; never retry internally."""

    #: Provider name shown in answers and traces.
    name: str = "cloud"
    #: Model name requested from the provider.
    model: str = ""
    #: Declared capabilities: this backend already retries failed requests (``retries``) or breaks the circuit
    #: (``breaks``); the Router adds only what is missing.
    retries: bool = False
    breaks: bool = False
    #: True when the backend fetches fresh credentials itself (a token provider): a 401 then does not disable it.
    renews_credentials: bool = False

    @property
    def reachable(self) -> bool:
        """False while the backend knows the cloud is not there (e.g. an open circuit): the policy then plans for
        the local answer. Default: True."""
        return True

    def blocked(self) -> str:
        """Why no call may be made now (e.g. a spend cap is reached), or "": the Router then keeps the answer on
        the device with this reason. Default: ""."""
        return ""

    @classmethod
    def from_config(cls, config: Any) -> "CloudBackend":
        """Build from a ``RouterConfig`` (the provider registry's factory). Providers override this."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from a configuration")

    #: Request fields (OpenAI names: ``tools``, ``n``, ...) this backend sends on verbatim through ``complete``'s
    #: ``extra``; a request that needs one the backend lacks cannot go to this cloud.
    passes: frozenset[str] = frozenset()

    @abc.abstractmethod
    def complete(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0, timeout_s: Optional[float] = None
    ) -> CloudAnswer:
        """Return the cloud's answer to ``messages``. ``timeout_s`` caps this one request (seconds) below the
        backend's own timeouts, e.g. for a circuit breaker's probe. Backends that declare ``passes`` also take
        ``extra`` (a mapping of those fields), passed only when a request sets one, and return its raw
        ``choices``."""

    def stream(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0,
        timeout_s: Optional[float] = None
    ) -> Generator[str, None, CloudAnswer]:
        """Yield the answer's text pieces as they arrive; the generator returns the ``CloudAnswer``. A failure
        after a piece was yielded is a ``CloudStreamError``. Default: one piece, from ``complete``."""
        answer = self.complete(messages, max_tokens=max_tokens, temperature=temperature, timeout_s=timeout_s)
        if answer.text:
            yield answer.text
        return answer

    def close(self) -> None:
        """Release connections. Idempotent."""
