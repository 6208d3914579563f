"""Test doubles that users of edgeroute need too: a scripted local model, a scripted cloud, a replayed energy meter.

    from edgeroute.testing import MockLocalModel, MockCloud
    local = MockLocalModel()
    local.enqueue("Paris", logprobs=[-0.05, -0.01])
    cloud = MockCloud()
    cloud.enqueue("Paris is the capital of France.")
    router = Router(local_model=local, cloud=cloud, trace=False)

    meter = ReplayEnergyMeter([0.0, 2.5])            # cumulative joules, one value per sample
    router = Router(local_model=local, energy_monitor=EnergyMonitor([meter]), trace=False)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Sequence
from typing import Optional, Union

import numpy as np

from ._errors import CloudError, EnergyError, GenerationCancelled, PromptTooLongError
from .cloud.base import CloudAnswer, CloudBackend
from .energy.base import EnergyMeter, EnergyReading, Sample, window_seconds
from .local.base import Generation, LocalModel
from .local.sampling import Sampling, StopScanner
from .messages import Message


class MockLocalModel(LocalModel):
    """A local model that replays queued answers (or echoes the last user message when the queue is empty).

    Tokens are whitespace-separated words. ``logprobs`` default to -0.1 per token; entropies to 0.5 nats; margins
    to 1 nat.
    ``n_ctx`` bounds the prompt in words, like a real context window.
    """

    name = "mock-local"
    #: Honours every ``Sampling`` field but ``json_schema`` (a grammar needs a real engine).
    honours = frozenset({"temperature", "top_p", "top_k", "min_p", "seed", "stop", "logprobs", "top_logprobs"})
    #: Takes ``watch`` (the mid-stream handoff's hook).
    watches = True

    def __init__(self, *, n_ctx: int = 2048, n_embd: int = 8, token_delay_s: float = 0.0) -> None:
        super().__init__()
        self.n_ctx = n_ctx
        self.n_embd = n_embd
        self.token_delay_s = token_delay_s
        self._queue: deque[tuple[str, Optional[list[float]], Optional[list[float]],
                                 Optional[tuple[float, float]]]] = deque()
        self.calls: list[list[Message]] = []
        self.prefills = 0
        self._vocab: dict[str, int] = {}

    @property
    def fingerprint(self) -> str:
        return "mock-local-model"

    def enqueue(
        self, text: str, *, logprobs: Optional[Sequence[float]] = None, entropies: Optional[Sequence[float]] = None,
        selfref_logits: Optional[tuple[float, float]] = None,
    ) -> None:
        """Queue the next answer; ``logprobs``/``entropies`` (nats), one per whitespace-separated token;
        ``selfref_logits`` the (<CN>, <UN>) logits of a Self-REF confidence slot, as an adapter would give."""
        self._queue.append(
            (text, None if logprobs is None else list(logprobs), None if entropies is None else list(entropies),
             selfref_logits)
        )

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        return sum(len(m["content"].split()) + 4 for m in messages)

    #: The mock has "hidden states" (deterministic per prompt), so probes can be exercised against it.
    hidden_states = True
    #: The block its hidden states stand for (probes check it, as they do for a real engine).
    hidden_layer = 0
    #: Every block it "captures" (``Generation.hidden`` has ``prompt@L``, ``answer@L``, ``answer_mean@L`` for each).
    hidden_layers = (0, 1)

    def _hidden(self, key: str) -> np.ndarray:
        return np.random.default_rng(abs(hash(key)) % (2**32)).standard_normal(self.n_embd).astype(np.float32)

    def prompt_hidden(self, messages: Sequence[Message]) -> Optional[np.ndarray]:
        self.prefills += 1
        return self._hidden(f"prompt{self.hidden_layer}:" + messages[-1]["content"])

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        cancel: Optional[threading.Event] = None,
        sampling: Optional[Sampling] = None,
        watch: Optional[Callable[[list[int], list[float], list[float]], bool]] = None,
    ) -> Generator[str, None, Generation]:
        """The queued answer word by word (``watch``: see ``LocalModel.watches``; it stops after a word). ``sampling``: ``stop`` cuts it as a real engine does; ``logprobs`` gives
        each word's queued logprob with ``top_logprobs`` alternatives (the word, then ``<alt1>``... each 1 nat
        less likely); the sampling knobs are accepted and change nothing (the double is deterministic)."""
        sampling = sampling or Sampling()
        n_prompt = self.count_prompt_tokens(messages)
        if n_prompt >= self.n_ctx:
            raise PromptTooLongError.over(n_prompt, self.n_ctx, 1, "the mock context")
        with self.lock:
            self.calls.append(list(messages))
            if self._queue:
                text, lps, ents, slot = self._queue.popleft()
            else:
                text, lps, ents, slot = messages[-1]["content"], None, None, None
            budget = min(max_tokens, self.n_ctx - n_prompt)
            all_words = text.split()
            words = all_words[:budget]
            lps = lps if lps is not None else [-0.1] * len(words)
            ents = ents if ents is not None else [0.5] * len(words)
            t0 = time.perf_counter()
            scanner = StopScanner(sampling.stop) if sampling.stop else None
            shown: list[str] = []
            stopped = handed = False
            for i, word in enumerate(words):
                if cancel is not None and cancel.is_set():
                    raise GenerationCancelled("generation cancelled by the caller")
                if self.token_delay_s:
                    time.sleep(self.token_delay_s)
                piece = word if i == 0 else " " + word
                if scanner is not None:
                    piece = scanner.feed(piece)
                if piece:
                    shown.append(piece)
                    yield piece
                if scanner is not None and scanner.stopped:
                    words, stopped = words[: i + 1], True
                    break
                if watch is not None and i + 1 < len(words) and watch(
                        [self._vocab.setdefault(w, len(self._vocab)) for w in words[: i + 1]], lps[: i + 1],
                        ents[: i + 1]):
                    words, handed = words[: i + 1], True
                    break
            if scanner is not None and not stopped:
                tail = scanner.flush()
                if tail:
                    shown.append(tail)
                    yield tail
            text_out = "".join(shown) if scanner is not None else " ".join(words)
            k = sampling.top_logprobs
            top = [[(w if j == 0 else " " + w, lp)] + [(f"<alt{a}>", lp - a) for a in range(1, k)]
                   for j, (w, lp) in enumerate(zip(words, lps))] if sampling.logprobs else []
            hidden = {}
            for layer in self.hidden_layers:
                hidden[f"prompt@{layer}"] = self._hidden(f"prompt{layer}:" + messages[-1]["content"])
                hidden[f"answer@{layer}"] = self._hidden(f"answer{layer}:" + text)
                hidden[f"answer_mean@{layer}"] = self._hidden(f"answer-mean{layer}:" + text)
            main = self.hidden_layer
            return Generation(
                text=text_out,
                token_ids=[self._vocab.setdefault(w, len(self._vocab)) for w in words],  # one id per distinct word
                token_logprobs=np.asarray(lps[: len(words)], dtype=np.float64),
                token_entropies=np.asarray(ents[: len(words)], dtype=np.float64),
                prompt_tokens=n_prompt,
                prefill_s=0.0,
                decode_s=time.perf_counter() - t0,
                finish_reason="handoff" if handed else "stop" if stopped or len(all_words) <= budget else "length",
                truncated=not stopped and not handed and len(all_words) > budget and budget < max_tokens,
                prompt_hidden=hidden[f"prompt@{main}"],
                answer_hidden=hidden[f"answer@{main}"],
                answer_hidden_mean=hidden[f"answer_mean@{main}"],
                selfref_logits=slot if words else None,
                token_margins=np.ones(len(words)),
                token_texts=[w if i == 0 else " " + w for i, w in enumerate(words)],
                hidden=hidden,
                token_top=top,
            )


class _Stream:
    def __init__(self, pieces: list[str], error: Optional[CloudError]) -> None:
        self.pieces, self.error = pieces, error


class MockCloud(CloudBackend):
    """A cloud that replays queued answers or raises queued ``CloudError``s; records every request.

    Each queued item is exactly what the Router sees for one query, so the double declares ``retries`` and
    ``breaks`` and the Router adds neither; wrap it in ``RetryingBackend`` / ``CircuitBreaker`` to test those
    (or pass ``resilient=False`` to have the Router wrap it like any other backend)."""

    name = "mock-cloud"

    def __init__(self, model: str = "mock-cloud-model", *, default: Optional[str] = "cloud answer",
                 resilient: bool = True) -> None:
        self.model = model
        self.retries = self.breaks = resilient
        self.default = default
        self._queue: deque[Union[str, CloudError]] = deque()
        self.requests: list[list[Message]] = []
        #: The ``timeout_s`` of each request (None: the backend's own timeouts).
        self.timeouts: list[Optional[float]] = []

    def enqueue(self, item: Union[str, CloudError]) -> None:
        """Queue an answer text, or an error to raise."""
        self._queue.append(item)

    def enqueue_stream(self, pieces: Sequence[str], error: Optional[CloudError] = None) -> None:
        """Queue a streamed answer: ``pieces`` one by one, then ``error`` raised if given (a stream that breaks)."""
        self._queue.append(_Stream(list(pieces), error))  # type: ignore[arg-type]

    def stream(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0,
        timeout_s: Optional[float] = None
    ) -> Generator[str, None, CloudAnswer]:
        item = self._queue[0] if self._queue else None
        if not isinstance(item, _Stream):
            answer = yield from super().stream(messages, max_tokens=max_tokens, temperature=temperature,
                                               timeout_s=timeout_s)
            return answer
        self._queue.popleft()
        self.requests.append(list(messages))
        self.timeouts.append(timeout_s)
        for piece in item.pieces:
            yield piece
        if item.error is not None:
            raise item.error
        text = "".join(item.pieces)
        return CloudAnswer(text, self.model, 0, len(item.pieces), 0.0, "stop")

    def complete(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0, timeout_s: Optional[float] = None
    ) -> CloudAnswer:
        self.requests.append(list(messages))
        self.timeouts.append(timeout_s)
        item = self._queue.popleft() if self._queue else self.default
        if isinstance(item, CloudError):
            raise item
        if item is None:
            raise CloudError("MockCloud has nothing queued")
        n_in = sum(len(m["content"].split()) for m in messages)
        return CloudAnswer(item, self.model, n_in, len(item.split()), 0.0, "stop")


class ReplayEnergyMeter(EnergyMeter):
    """A meter that replays cumulative energy values (joules), one per ``sample()``, repeating the last one.

    An ``EnergyError`` in the list is raised by the sample that reaches it (a meter that fails mid-run).
    ``times_s`` (optional, same length) replays the samples' timestamps too, so windows have exact lengths.
    ``method`` and ``scope`` label the readings; ``samples`` counts the calls.
    """

    name = "replay"

    def __init__(
        self,
        cumulative_j: Sequence[Union[float, EnergyError]],
        *,
        times_s: Optional[Sequence[float]] = None,
        method: str = "counter",
        scope: str = "package",
    ) -> None:
        if not cumulative_j:
            raise ValueError("ReplayEnergyMeter needs at least one value")
        if times_s is not None and len(times_s) != len(cumulative_j):
            raise ValueError("times_s must have one timestamp per value")
        self._values: deque[tuple[Optional[float], Union[float, EnergyError]]] = deque(
            zip(times_s if times_s is not None else [None] * len(cumulative_j), cumulative_j)
        )
        self.method = method  # type: ignore[misc]
        self.scope = scope
        self.samples = 0
        self._lock = threading.Lock()

    def sample(self) -> Sample:
        with self._lock:
            self.samples += 1
            t, item = self._values.popleft() if len(self._values) > 1 else self._values[0]
        if isinstance(item, EnergyError):
            raise item
        return Sample(self.now() if t is None else t, float(item))

    def delta(self, start: Sample, end: Sample) -> EnergyReading:
        if end.values < start.values:
            raise EnergyError(f"replayed counter went backwards ({start.values} -> {end.values} J)")
        return EnergyReading(
            joules=end.values - start.values,
            method=self.method,
            source=self.name,
            scope=self.scope,
            window_s=window_seconds(start, end),
            relative_uncertainty=0.0,
        )


__all__ = ["MockCloud", "MockLocalModel", "ReplayEnergyMeter"]
