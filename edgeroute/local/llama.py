"""The llama.cpp engine: greedy chat generation that records per-token evidence at almost no extra cost.

Per step it reads that step's logits in place (a zero-copy view of llama.cpp's buffer, ``n_vocab`` floats), picks
the token, and computes the chosen token's logprob, the distribution's entropy and the margin over the runner-up with
numpy in O(vocab) memory: no ``logits_all`` (``n_ctx x n_vocab``), no Python loop over the vocabulary.

Hidden states come from the same context: a ``LayerCapture`` (llama.cpp's eval callback, about 2-4 % of decode time)
copies some blocks' outputs (``hidden_layers``) for the last prompt token and for every answer token; the Generation
carries, per block, the prompt-end row, the last answer token's row and the answer's mean. The prompt is evaluated in
one batch, as llama.cpp itself does, so answers are the same as plain llama-cpp-python's.
"""

from __future__ import annotations

import codecs
import dataclasses
import ctypes
import os
import threading
import time
import warnings
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .._constants import DEFAULT_CTX_MEMORY_MIB, DEFAULT_N_BATCH_TOKENS, MIN_ANSWER_ROOM_TOKENS
from .._errors import ConfigError, GenerationCancelled, ModelCorruptError, ModelLoadError, PromptTooLongError
from ..messages import Message
from . import context_size
from .base import Generation, LocalModel
from .chat_format import COMPLETION_STOPS, chat_formatter, resolved_format
from .capture import LayerCapture, candidate_layers, default_layer
from .memo import file_key, folder_key, remembered
from .native import StepStats, _native_params, cpu_has_amx, file_sha256
from .resolve import resolve_model_path
from .sampling import GREEDY, Sampling, StopScanner, sampler_chain, tokens_within, top_alternatives
from .selfref import SelfRefAdapter, selfref_confidence
from .threads import ThreadPolicy

#: Every ``Sampling`` field: llama.cpp's sampler chain and grammar sampler honour them all.
HONOURED = frozenset(f.name for f in dataclasses.fields(Sampling))


class LlamaCppModel(LocalModel):
    """A GGUF model run in-process by llama-cpp-python.

    ``model`` is a path, a file name in the user model directory, or None for the default model. ``n_ctx`` is the
    window in tokens (None: the trained context within ``ctx_memory_mib``; ``self.context`` says which).
    ``hidden_states=False`` skips the hidden-state reads; ``hidden_layer`` is the primary block (0-based) they are
    read from (default: ``capture.default_layer``), ``hidden_layers`` every block captured (default: the primary one
    alone, always added; ``"candidates"``: ``capture.candidate_layers``); ``Generation.hidden`` has them all.

    ``prompt_format`` ``auto`` (default) uses the GGUF's chat template, or the completion format when it has none
    (a base model; ``local.chat_format``); ``self.prompt_format`` says which. ``extra_buffers`` (None: off on CPUs
    with Intel AMX, whose matrix multiply crashes llama-cpp-python 0.3.36 on batched prompts) sets llama.cpp's
    extra weight buffer types (AMX, repacked layouts).
    """

    def __init__(
        self,
        model: Optional[Union[str, os.PathLike[str]]] = None,
        *,
        n_ctx: Optional[int] = None,
        ctx_memory_mib: int = DEFAULT_CTX_MEMORY_MIB,
        n_threads: Union[int, str, None] = "auto",
        n_batch: int = DEFAULT_N_BATCH_TOKENS,
        hidden_states: bool = True,
        hidden_layer: Optional[int] = None,
        hidden_layers: Optional[Union[str, Sequence[int]]] = None,
        seed: int = 0,
        extra_buffers: Optional[bool] = None,
        selfref: Optional[SelfRefAdapter] = None,
        prompt_format: str = "auto",
        verbose: bool = False,
    ) -> None:
        super().__init__()
        import llama_cpp  # deferred: importing loads the native library

        self._lc = llama_cpp
        self.path = resolve_model_path(model)
        self.name = self.path.name
        self.engine_version = f"llama-cpp-python {llama_cpp.__version__}"
        self.engine_build = folder_key(Path(llama_cpp.__file__).parent / "lib")
        self.hidden_states = hidden_states
        self.honours = HONOURED
        self.watches = True  # stream(watch=...): the mid-stream handoff
        self._seed = seed
        self._fingerprint: Optional[str] = None
        if extra_buffers is None:
            extra_buffers = not cpu_has_amx()
        #: How many threads decode (``local.threads``): chosen from the load before each answer unless explicit.
        self.threads = ThreadPolicy(n_threads)
        self._n_set = self.threads.current
        self._capture = LayerCapture() if hidden_states else None
        #: The window chosen and why (``local.context_size``).
        self.context = context_size.choose(self.path, n_ctx, ctx_memory_mib, n_batch)
        n_ctx = self.context.n_ctx
        try:
            with _native_params(extra_buffers, self._capture.callback if self._capture else None):
                self._llama = llama_cpp.Llama(
                    model_path=str(self.path),
                    n_ctx=n_ctx,
                    n_batch=min(n_batch, n_ctx),
                    n_threads=self._n_set,
                    n_threads_batch=self._n_set,
                    logits_all=False,
                    embedding=False,
                    seed=seed,
                    verbose=verbose,
                )
        except ValueError as exc:
            if "context" in str(exc).lower():
                raise ModelLoadError(f"could not allocate a {n_ctx}-token context for {self.path}; "
                                     f"try n_ctx={context_size.load_hint(n_ctx)}") from exc
            raise ModelCorruptError(f"llama.cpp could not load {self.path}: the file is corrupt or partial") from exc
        # llama.cpp may pad its context up; llama_cpp.Llama sizes its token buffer to what was asked for
        self.n_ctx = min(n_ctx, self._llama.n_ctx())
        self.n_vocab = self._llama.n_vocab()
        self.n_embd = self._llama.n_embd()
        self.n_layer = int(llama_cpp.llama_model_n_layer(self._llama._model.model))
        self.architecture = str(self._llama.metadata.get("general.architecture", "unknown"))
        layer = default_layer(self.n_layer) if hidden_layer is None else hidden_layer
        if hidden_layers == "candidates":
            layers = candidate_layers(self.n_layer)
        else:
            layers = (layer,) if hidden_layers is None else tuple(hidden_layers)  # type: ignore[arg-type]
        for value in (layer, *layers):
            if not (isinstance(value, int) and 0 <= value < self.n_layer):
                self._llama.close()
                raise ConfigError(f"hidden_layer must be in 0..{self.n_layer - 1} for {self.name}, got {value}")
        #: The primary block (0-based) hidden states are read from (see ``Generation``).
        self.hidden_layer = layer
        #: Every block captured (``Generation.hidden`` has ``prompt@L``, ``answer@L`` and ``answer_mean@L`` for each).
        self.hidden_layers: tuple[int, ...] = tuple(sorted({layer, *layers})) if hidden_states else ()
        if self._capture is not None:
            self._capture.target(self.hidden_layers, self.n_embd)
        self._ctx = self._llama._ctx.ctx
        self._vocab = self._llama._model.vocab
        self._stats = StepStats(self.n_vocab)
        self.prompt_format = resolved_format(self._llama, prompt_format)
        self._formatter = chat_formatter(self._llama, self.prompt_format)
        #: The Self-REF adapter in use (None: none loaded); its LoRA is applied only at the confidence slot.
        self.selfref: Optional[SelfRefAdapter] = None
        self._adapter: Any = None
        if selfref is not None:
            self.load_selfref(selfref)

    def load_selfref(self, adapter: SelfRefAdapter) -> None:
        """Load a Self-REF adapter's LoRA (off: only the confidence slot sees it); ``ModelLoadError`` for another
        model's."""
        if self._adapter is not None:
            raise ModelLoadError("a Self-REF adapter is loaded already")
        if not adapter.fits(self.fingerprint):
            raise ModelLoadError(f"the Self-REF adapter {adapter.path} was trained on another model "
                                 f"({adapter.base_model_sha256[:12]}, this is {self.fingerprint[:12]})")
        if not (0 <= adapter.cn_token_id < self.n_vocab and 0 <= adapter.un_token_id < self.n_vocab):
            raise ModelLoadError(f"the Self-REF adapter's token ids do not fit this vocabulary ({self.n_vocab})")
        handle = self._lc.llama_adapter_lora_init(self._llama._model.model, str(adapter.path).encode("utf-8"))
        if not handle:
            raise ModelCorruptError(f"llama.cpp could not load the Self-REF adapter {adapter.path}")
        self._adapter, self.selfref = handle, adapter
        self._llama._stack.callback(self._lc.llama_adapter_lora_free, handle)

    def _set_adapter(self, on: bool) -> None:
        lc = self._lc
        if on:
            adapters = (lc.llama_adapter_lora_p_ctypes * 1)(self._adapter)
            scales = (ctypes.c_float * 1)(1.0)
            failed = lc.llama_set_adapters_lora(self._ctx, adapters, 1, scales)
        else:
            failed = lc.llama_set_adapters_lora(self._ctx, None, 0, None)
        if failed:
            raise ModelLoadError("llama.cpp refused to switch the Self-REF adapter")

    def _slot_logits(self, last_token: int) -> tuple[float, float]:
        """Evaluate ``last_token`` (the answer's last, not yet in the KV cache) with the adapter on and read the
        <CN> / <UN> logits; then drop it again, so the cache holds only what the base model computed."""
        assert self.selfref is not None
        llama = self._llama
        self._set_adapter(True)
        try:
            llama.eval([last_token])
            logits = self._logits()
            out = (float(logits[self.selfref.cn_token_id]), float(logits[self.selfref.un_token_id]))
        finally:
            self._set_adapter(False)
            llama.n_tokens -= 1  # the next eval drops the adapted position from the KV cache
        return out

    def selfref_score(self, token_ids: Sequence[int]) -> float:
        """P(<CN>) / (P(<CN>) + P(<UN>)) after ``token_ids`` (a prompt and its answer, ids), as in ``stream``."""
        if self.selfref is None:
            raise ModelLoadError("no Self-REF adapter loaded")
        ids = list(token_ids)
        with self.lock:
            reused = self._reuse_prefix(ids)  # keeps at most len(ids) - 1 tokens
            if len(ids) - 1 > reused:
                self._llama.eval(ids[reused:-1])
            return selfref_confidence(*self._slot_logits(ids[-1]))

    # --- set-up ---------------------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        self._fingerprint = self._fingerprint or remembered(f"sha256|{file_key(self.path)}",
                                                            lambda: file_sha256(self.path))
        return self._fingerprint

    @property
    def llama(self) -> Any:
        """The underlying ``llama_cpp.Llama`` (hold ``self.lock`` while using it)."""
        return self._llama

    def prompt_token_ids(self, messages: Sequence[Message]) -> list[int]:
        """Token ids of ``messages`` rendered with the GGUF's chat template (generation prompt appended)."""
        result = self._formatter(messages=list(messages))
        return self._llama.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        return len(self.prompt_token_ids(messages))

    # --- generation -----------------------------------------------------------------------------------------
    def _logits(self) -> np.ndarray:
        ptr = self._lc.llama_get_logits_ith(self._ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def _eval_armed(self, tokens: list[int]) -> None:
        """Evaluate ``tokens`` with the capture armed; evaluate them again if the capture missed its node."""
        capture, llama = self._capture, self._llama
        assert capture is not None
        capture.begin(len(tokens))
        llama.eval(tokens)
        if capture.missed():
            llama.n_tokens -= len(tokens)  # eval drops their KV cache entries and recomputes them
            capture.begin(len(tokens))
            llama.eval(tokens)
            if capture.missed() and capture.error is None:
                capture.error = f"llama.cpp's {self.architecture} graph computed no {', '.join(capture.missing())} node"

    def _eval_captured(self, tokens: list[int]) -> dict[int, np.ndarray]:
        """Evaluate ``tokens``; the captured hidden state of the last one per block (empty without capture)."""
        capture = self._capture
        if capture is None:
            self._llama.eval(tokens)
            return {}
        capture.arm()
        try:
            self._eval_armed(tokens)
        finally:
            capture.disarm()
        return self._captured({layer: capture.last[k] for k, layer in enumerate(capture.layers)})

    def _captured(self, rows: dict[int, Optional[np.ndarray]]) -> dict[int, np.ndarray]:
        """``rows`` (block -> row), or {} (with one warning per model) when the capture reported a problem."""
        capture = self._capture
        if capture is None or capture.error is None:
            return {layer: row for layer, row in rows.items() if row is not None}
        if self.capture_failure is None:
            self.capture_failure = capture.error
            warnings.warn(f"edgeroute: no hidden states from {self.name}: {capture.error}; the probes are skipped",
                          RuntimeWarning, stacklevel=4)
        return {}

    def _common(self, tokens: list[int]) -> int:  # the common prefix of ``tokens`` and the KV cache, tokens
        return next((i for i, (a, b) in enumerate(zip(self._llama._input_ids, tokens)) if a != b),
                    min(self._llama.n_tokens, len(tokens)))

    def uncached_prompt_tokens(self, messages: Sequence[Message]) -> int:
        return len(tokens := self.prompt_token_ids(messages)) - self._common(tokens)

    def _reuse_prefix(self, tokens: list[int]) -> int:
        """Keep the KV cache of the longest common prefix with the previous call; return its length."""
        llama = self._llama
        keep = min(self._common(tokens), len(tokens) - 1)  # always evaluate >= 1 token: its logits start the answer
        if keep > 0 and llama._ctx.kv_cache_seq_rm(-1, keep, -1):
            llama.n_tokens = keep
            return keep
        llama.reset()
        return 0

    def prompt_hidden(self, messages: Sequence[Message]) -> Optional[np.ndarray]:
        """The prompt's last hidden state (primary block); the KV cache is kept for the ``stream`` that follows."""
        tokens = self.prompt_token_ids(messages) if self.hidden_states else []
        if not tokens or len(tokens) > self.n_ctx - MIN_ANSWER_ROOM_TOKENS:
            return None
        with self.lock:
            self._use_threads()  # the prefill that precedes an answer runs at the count chosen for it
            t0, reused = time.perf_counter(), self._reuse_prefix(tokens)
            rows = self._eval_captured(tokens[reused:])
            self.last_prefill = (len(tokens) - reused, time.perf_counter() - t0)
            return rows.get(self.hidden_layer)

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
        """``sampling`` (default: greedy, or ``temperature`` alone) is honoured through llama.cpp's sampler chain;
        greedy takes the argmax directly (the calibrated path). ``watch``: see ``LocalModel.watches``."""
        if sampling is None:
            sampling = Sampling(temperature=temperature) if temperature > 0 else GREEDY
        if self.prompt_format == "completion":  # a base model goes on to the next question: stop it there
            sampling = dataclasses.replace(sampling, stop=tuple(dict.fromkeys(sampling.stop + COMPLETION_STOPS)))
        tokens = self.prompt_token_ids(messages)
        n_prompt = len(tokens)
        room = self.n_ctx - n_prompt
        if room < MIN_ANSWER_ROOM_TOKENS:
            raise PromptTooLongError.over(n_prompt, self.n_ctx, MIN_ANSWER_ROOM_TOKENS, "the local context")
        budget = min(max_tokens, room)
        lc, llama = self._lc, self._llama
        chain = sampler_chain(llama, sampling) if sampling.sampled else None  # greedy: the argmax below
        scanner = StopScanner(sampling.stop) if sampling.stop else None
        n_top = sampling.top_logprobs if sampling.logprobs else -1
        capture = self._capture
        with self.lock:
            n_threads = self._use_threads()
            t0 = time.perf_counter()
            try:
                reused = self._reuse_prefix(tokens)
                # the prompt in one batch, as llama.cpp evaluates it (the capture reads its last row)
                prompt_rows = self._eval_captured(tokens[reused:])
                if capture is not None:
                    capture.arm()  # every answer token's row from here on
                t1 = time.perf_counter()
                self.last_prefill = (n_prompt - reused, t1 - t0)

                ids: list[int] = []
                logprobs: list[float] = []
                entropies: list[float] = []
                margins: list[float] = []
                texts: list[str] = []
                decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
                pieces: list[str] = []
                alternatives: list[list[tuple[str, float]]] = []
                finish = "length"
                while len(ids) < budget:
                    if cancel is not None and cancel.is_set():
                        raise GenerationCancelled("generation cancelled by the caller")
                    logits = self._logits()
                    if chain is None:
                        token = int(logits.argmax())
                        top = float(logits[token])
                    else:  # llama.cpp's chain reads the logits into its own candidates: the buffer is unchanged
                        top = float(logits.max())
                        token = int(chain.sample(llama._ctx, -1))
                    logprob, entropy, margin = self._stats(logits, token, top)
                    if lc.llama_vocab_is_eog(self._vocab, token):
                        finish = "stop"
                        break
                    ids.append(token)
                    logprobs.append(logprob)
                    entropies.append(entropy)
                    margins.append(margin)
                    if n_top >= 0:
                        alternatives.append(top_alternatives(logits, token, logprob, n_top, llama._model.token_to_piece))
                    piece = decoder.decode(llama._model.token_to_piece(token).rstrip(b"\x00"))
                    texts.append(piece)
                    if scanner is not None:
                        piece = scanner.feed(piece)
                    if piece:
                        pieces.append(piece)
                        yield piece
                    if scanner is not None and scanner.stopped:
                        finish = "stop"
                        keep = tokens_within(texts, len(scanner.text))
                        del ids[keep:], logprobs[keep:], entropies[keep:], margins[keep:], alternatives[keep:]
                        del texts[keep:]
                        break
                    if watch is not None and len(ids) < budget and watch(ids, logprobs, entropies):
                        finish = "handoff"
                        break
                    if len(ids) < budget:
                        if capture is not None:
                            self._eval_armed([token])
                        else:
                            llama.eval([token])
                tail = decoder.decode(b"", final=True)
                if scanner is not None and not scanner.stopped:
                    tail = scanner.feed(tail) + scanner.flush()
                if tail:
                    pieces.append(tail)
                    if texts:
                        texts[-1] += tail
                    yield tail
            finally:
                if capture is not None:
                    capture.disarm()
                if chain is not None:
                    chain.close()
            hidden: dict[str, np.ndarray] = {f"prompt@{layer}": row for layer, row in prompt_rows.items()}
            if capture is not None:
                last = self._captured({layer: capture.last[k] for k, layer in enumerate(capture.layers)})
                means = self._captured({layer: capture.mean(k) for k, layer in enumerate(capture.layers)})
                hidden.update({f"answer@{layer}": row for layer, row in last.items()})
                hidden.update({f"answer_mean@{layer}": row for layer, row in means.items()})
            main = self.hidden_layer
            slot: Optional[tuple[float, float]] = None
            if self.selfref is not None and ids:
                if finish == "stop":  # the last answer token is in the cache, computed without the adapter
                    llama.n_tokens -= 1
                slot = self._slot_logits(ids[-1])
            t2 = time.perf_counter()  # decode_s includes the confidence slot
            self.threads.after(n_threads, len(ids), t2 - t1)
        return Generation(
            text="".join(pieces),
            token_ids=ids,
            token_logprobs=np.asarray(logprobs, dtype=np.float64),
            token_entropies=np.asarray(entropies, dtype=np.float64),
            token_margins=np.asarray(margins, dtype=np.float64),
            token_texts=texts,
            prompt_tokens=n_prompt,
            prefill_s=t1 - t0,
            decode_s=t2 - t1,
            finish_reason=finish,
            prompt_hidden=hidden.get(f"prompt@{main}"),
            answer_hidden=hidden.get(f"answer@{main}"),
            answer_hidden_mean=hidden.get(f"answer_mean@{main}"),
            hidden=hidden,
            truncated=finish == "length" and budget < max_tokens,
            reused_prompt_tokens=reused,
            selfref_logits=slot,
            n_threads=n_threads,
            token_top=alternatives,
        )

    def record_energy(self, n_threads: int, joules: float, tokens: int) -> None:
        self.threads.record_energy(n_threads, joules, tokens)

    def _use_threads(self) -> int:
        """Set the count ``self.threads`` chooses on the context (no reload); call holding the lock."""
        if (n := self.threads.before()) != self._n_set:
            self._lc.llama_set_n_threads(self._llama._ctx.ctx, n, n)
            self._n_set = n
        return n

    def close(self) -> None:
        llama = getattr(self, "_llama", None)
        if llama is not None:
            with self.lock:
                llama.close()
                self._llama = None  # type: ignore[assignment]  # closed: every later use raises, by design


__all__ = ["LlamaCppModel", "cpu_has_amx", "file_sha256"]
