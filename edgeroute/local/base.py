"""The local-model seam: one small base class; the llama.cpp engine and the test double implement it."""

from __future__ import annotations

import abc
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar

import numpy as np

from ..messages import Message
from .sampling import Sampling


T = TypeVar("T")


def drain(gen: Generator[object, None, T]) -> T:
    """Run ``gen`` to the end, discarding what it yields, and return its return value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


@dataclass
class Generation:
    """What one local generation produced.

    ``token_logprobs`` holds, per answer token, the natural-log probability of the chosen token (nats);
    ``token_entropies`` the entropy of that step's next-token distribution (nats); ``token_margins`` the chosen
    token's logit minus the best other token's (nats; empty when the engine does not provide them);
    ``token_texts`` each token's text (the piece it added to ``text``). Hidden states are one block's output
    (the engine's ``hidden_layer``), ``n_embd`` floats each: at the last prompt token, at the last evaluated answer
    token, and the mean over the evaluated answer tokens; None when the engine cannot provide them (no answer token
    evaluated: no answer states). ``hidden`` has the same for every captured block, keyed ``prompt@L``, ``answer@L``
    and ``answer_mean@L``. Times are seconds.
    """

    text: str
    token_ids: list[int]
    token_logprobs: np.ndarray
    token_entropies: np.ndarray
    prompt_tokens: int
    prefill_s: float
    decode_s: float
    finish_reason: str  # "stop" | "length" | "handoff" (the engine's watch stopped it)
    prompt_hidden: Optional[np.ndarray] = None
    answer_hidden: Optional[np.ndarray] = None
    answer_hidden_mean: Optional[np.ndarray] = None
    #: True when the answer was cut because prompt + max_tokens did not fit the context.
    truncated: bool = False
    #: Prompt tokens reused from the previous call's KV cache (not re-evaluated).
    reused_prompt_tokens: int = 0
    #: Next-token logits of the Self-REF confidence slot, (<CN>, <UN>), when a Self-REF adapter is loaded.
    selfref_logits: Optional[tuple[float, float]] = None
    token_margins: np.ndarray = field(default_factory=lambda: np.zeros(0))
    token_texts: list[str] = field(default_factory=list)
    hidden: dict[str, np.ndarray] = field(default_factory=dict)
    #: Threads the engine decoded with (0: the engine does not say).
    n_threads: int = 0
    #: Per answer token, the likeliest tokens and their logprobs (nats), when ``Sampling.logprobs`` asked.
    token_top: list[list[tuple[str, float]]] = field(default_factory=list)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


class LocalModel(abc.ABC):
    """A local model that streams text and records per-token evidence.

    Implementations must serialise concurrent callers themselves (``self.lock``).
    """

    #: Display name (file name for GGUF models).
    name: str = "local"
    #: Context window, tokens.
    n_ctx: int = 0
    #: True when generation runs on a GPU: the Router's energy monitor then adds the GPU meters (NVML).
    uses_gpu: bool = False
    # Declared capabilities (the Router reads these, never the engine's type):
    #: True when ``stream`` fills the Generation's hidden states and ``prompt_hidden`` works.
    hidden_states: bool = False
    #: Width of one hidden state, floats (None: no hidden states).
    n_embd: Optional[int] = None
    #: The primary block the hidden states come from (0-based), and every block captured.
    hidden_layer: Optional[int] = None
    hidden_layers: tuple[int, ...] = ()
    #: Why hidden states could not be read (e.g. the graph has no block-output node of that name), None while they
    #: can; set the first time a capture fails.
    capture_failure: Optional[str] = None
    #: The latest prompt prefill: (tokens evaluated, seconds); (0, 0.0) when the engine does not say.
    last_prefill: tuple[int, float] = (0, 0.0)
    #: The GGUF's ``general.architecture`` (e.g. "llama", "gemma3"); "" when the engine has none.
    architecture: str = ""
    #: The loaded Self-REF adapter (``local.selfref.SelfRefAdapter``), or None.
    selfref: Optional[Any] = None
    #: The inference engine and its version (e.g. "llama-cpp-python 0.3.36"); "" for engines that have none
    #: (fitted artifacts are then not checked against it).
    engine_version: str = ""
    #: Identifies the engine's build beyond its version (e.g. its native libraries' sizes and times), for the memo.
    engine_build: str = ""
    #: The ``Sampling`` fields ``stream(sampling=...)`` honours; a request that sets another goes to the cloud.
    honours: frozenset[str] = frozenset()
    #: True when ``stream`` takes ``watch``: a callable given (token ids, logprobs, entropies) of the answer so far
    #: after every token; when it returns True the engine stops there with ``finish_reason`` "handoff".
    watches: bool = False

    def __init__(self) -> None:
        self.lock = threading.Lock()

    @property
    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A stable identifier of the weights (SHA-256 of the file for GGUF models)."""

    @abc.abstractmethod
    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens the chat-formatted ``messages`` occupy in the context."""

    def uncached_prompt_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens a prefill of ``messages`` would evaluate: those not already in the KV cache (a conversation's
        earlier turns usually are). Default: all of them."""
        return self.count_prompt_tokens(messages)

    @abc.abstractmethod
    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        cancel: Optional[threading.Event] = None,
        sampling: Optional[Sampling] = None,
    ) -> Generator[str, None, Generation]:
        """Yield text pieces as they are decoded; the generator's return value is the ``Generation``.

        Setting ``cancel`` (or closing the generator) stops at the next token and frees the model. ``sampling``
        (a request's decoding knobs) is passed only to engines that declare ``honours``; others get ``temperature``.
        """

    def prompt_hidden(self, messages: Sequence[Message]) -> Optional[np.ndarray]:
        """The hidden state at the end of the chat-formatted prompt, computed before generating (``n_embd`` floats,
        from the same block as ``Generation.prompt_hidden``), or None when the engine cannot provide it. Engines
        that can should keep the prompt's KV cache so a following ``stream`` of the same messages does not evaluate
        the prompt again."""
        return None

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        cancel: Optional[threading.Event] = None,
        sampling: Optional[Sampling] = None,
    ) -> Generation:
        """Run ``stream`` to completion and return the ``Generation``."""
        extra = {"sampling": sampling} if sampling is not None else {}
        return drain(self.stream(messages, max_tokens=max_tokens, temperature=temperature, cancel=cancel, **extra))

    def record_energy(self, n_threads: int, joules: float, tokens: int) -> None:
        """A measured (counter, not estimated) energy reading of the last generation, for engines that weigh
        energy in their choices (``local.threads``). Default: ignored."""

    def golden(self) -> Optional[dict[str, Any]]:
        """This engine's golden measurement (``local.golden``), measured once; None without ``engine_version``."""
        if not self.engine_version:
            return None
        cached = self.__dict__.get("_golden")
        if cached is None:
            from .golden import measure
            from .memo import remembered

            key = f"golden|{self.fingerprint}|{self.engine_version}|{self.engine_build}"
            cached = self.__dict__["_golden"] = remembered(key, lambda: measure(self))
        return cached

    def close(self) -> None:
        """Free native resources. Idempotent."""
