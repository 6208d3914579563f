"""The pipeline for one query: validate, generate locally, judge, decide, maybe escalate, trace."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import httpx

from ._constants import DEFAULT_THRESHOLD
from ._errors import CloudError, ConfigError, PolicyError, PromptTooLongError, StoreError
from .answer import Answer, Route, StreamEvent
from .cloud.base import CloudAnswer, CloudBackend
from .cloud.openai_compat import OpenAICompatBackend
from .cloud.breaker import CircuitBreaker
from .cloud.retry import RetryingBackend
from .config import RouterConfig, load_config_file
from .device import DeviceWatch
from .energy.base import EnergyReading, QueryEnergy, combine
from .energy.cputime import CpuScope
from .energy.detect import build_monitor
from .energy.monitor import EnergyMonitor, EnergyWindow
from .local.base import Generation, LocalModel, drain
from .messages import Message, PromptLike, normalize, prompt_hash
from .policy.base import Decision, Policy
from .policy.calibration import Calibration, load_calibration
from .policy.context import Situation
from .policy.online import LinUCBPolicy
from .policy.reward import Outcome, RewardWeights
from .policy.threshold import ThresholdPolicy
from .signals.base import Signal, confidence_of, confidence_signal, evaluate, floats
from .privacy import PrivacyDetector
from .signals import default_signals
from .signals.probe import PregenProbe, model_identity
from .signals.repetition import ends_in_loop
from .store import TraceStore

log = logging.getLogger("edgeroute")

_ENERGY_OFF = "energy metering disabled (energy=False)"

#: Grades an answer: (messages, answer text) -> quality in [0, 1], or None when it cannot tell.
Verifier = Callable[[Sequence[Message], str], Optional[float]]


@dataclass
class _Work:
    """Mutable state of one query while it moves through the pipeline."""

    messages: list[Message]
    max_tokens: int
    private: bool
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: float = field(default_factory=time.time)
    t0: float = field(default_factory=time.perf_counter)
    latency_ms: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=lambda: dict(prompt=0, completion=0, cloud_prompt=0, cloud_completion=0))
    signals: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    confidence: Optional[float] = None
    error: Optional[str] = None
    energy_local: Optional[EnergyReading] = None
    energy_pregen: Optional[EnergyReading] = None
    energy_cloud: Optional[EnergyReading] = None
    cloud_ok: bool = False  # the cloud may be used for this query (not private, configured, not disabled)


class AnswerStream:
    """Iterator of ``StreamEvent``; ``answer`` is set once the ``done`` event has been produced.

    Close it (or use it as a context manager) to stop early: generation stops at the next token.
    """

    def __init__(self, events: Generator[StreamEvent, None, Answer]) -> None:
        self._events = events
        self.answer: Optional[Answer] = None

    def __iter__(self) -> Iterator[StreamEvent]:
        return self

    def __next__(self) -> StreamEvent:
        event = next(self._events)
        if event.type == "done":
            self.answer = event.answer
        return event

    def close(self) -> None:
        self._events.close()

    def __enter__(self) -> "AnswerStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def needs_key(url: str) -> bool:
    """Remote endpoints need an API key; a server on this machine (llama.cpp, Ollama, vLLM) usually does not."""
    host = (httpx.URL(url).host or "").lower()
    return host not in ("localhost", "127.0.0.1", "::1", "[::1]") and not host.endswith(".localhost")


def make_provider(cfg: RouterConfig) -> CloudBackend:
    """The provider named by ``cfg.cloud_provider``, configured from ``cfg`` (one file per provider)."""
    common = dict(api_key_env=cfg.cloud_api_key_env, connect_timeout_s=cfg.connect_timeout_s,
                  read_timeout_s=cfg.read_timeout_s)
    assert cfg.cloud_url is not None
    if cfg.cloud_provider == "anthropic":
        from .cloud.anthropic import AnthropicBackend

        return AnthropicBackend(cfg.cloud_model or "", base_url=cfg.cloud_url, **common)  # type: ignore[arg-type]
    return OpenAICompatBackend(cfg.cloud_url, cfg.cloud_model or "", **common)  # type: ignore[arg-type]


class Router:
    """Answers on the device first and escalates to the cloud only when the local answer looks wrong.

    ``Router(local_only=True)`` never calls the cloud. Any ``RouterConfig`` field can be passed as a keyword.
    ``local_model``, ``cloud``, ``policy``, ``store`` and ``energy_monitor`` replace the built-in parts (e.g. with
    ``edgeroute.testing`` doubles). ``routing="linucb"`` learns online (see ``LinUCBPolicy``) from
    ``feedback``, from ``verifier`` (called on every answer: messages, text -> quality in [0, 1] or None) and from
    the cloud prior. Thread-safe: concurrent callers share one model, whose generations are serialised; each
    answer's energy covers its own generation and its own wait for the cloud.
    """

    def __init__(
        self,
        local_only: bool = False,
        *,
        config: Optional[RouterConfig] = None,
        local_model: Optional[LocalModel] = None,
        cloud: Optional[CloudBackend] = None,
        policy: Optional[Policy] = None,
        store: Optional[TraceStore] = None,
        signals: Optional[list[Signal]] = None,
        energy_monitor: Optional[EnergyMonitor] = None,
        verifier: Optional[Verifier] = None,
        **options: Any,
    ) -> None:
        if config is not None:
            self.config = config.replace(**{**options, "local_only": local_only or config.local_only})
        else:
            file_values = load_config_file()
            fields = {**file_values, **options}
            fields["local_only"] = local_only or bool(fields.get("local_only", False))
            self.config = RouterConfig.from_kwargs(**fields)
        cfg = self.config
        owned: list[Any] = []  # parts this Router created, and so closes
        if local_model is None:
            from .local.llama import LlamaCppModel

            engine = LlamaCppModel(
                cfg.model, n_ctx=cfg.n_ctx, n_threads=cfg.n_threads, hidden_states=cfg.hidden_states
            )
            owned.append(engine)
            if cfg.selfref:
                self._load_selfref(engine)
            local_model = engine
        self.local = local_model
        #: Why the configured cloud is not used at all (e.g. no API key for a remote endpoint), or "".
        self.cloud_disabled = ""
        if cloud is None and cfg.cloud_url and not cfg.local_only and needs_key(cfg.cloud_url) \
                and not os.environ.get(cfg.cloud_api_key_env):
            self.cloud_disabled = f"no API key in ${cfg.cloud_api_key_env} for {cfg.cloud_url}: cloud disabled"
            if cfg.cloud_required:
                raise ConfigError(f"cloud_required is set but there is {self.cloud_disabled}")
            log.warning("edgeroute: %s; answering locally", self.cloud_disabled)
        elif cloud is None and cfg.cloud_url and not cfg.local_only:
            cloud = CircuitBreaker(RetryingBackend(
                make_provider(cfg), max_retries=cfg.cloud_max_retries, deadline_s=cfg.cloud_deadline_s
            ))
            owned.append(cloud)
        self.cloud = cloud
        if signals is None:
            signals = default_signals(self.local, probe=cfg.probe)
        self.signals = signals
        #: The pre-generation probe in use (None: off, not shipped for this model, or the model has no hidden state).
        self.pregen: Optional[PregenProbe] = None
        if cfg.pregen and getattr(self.local, "hidden_states", False):
            pregen = PregenProbe(**model_identity(self.local), threshold=cfg.pregen_threshold)
            self.pregen = pregen if pregen.available else None
        #: The saved calibration in use (None: the threshold was configured or is the default).
        self.calibration: Optional[Calibration] = None
        if policy is not None:
            self.threshold_source = "policy passed in"
        elif cfg.threshold is not None:
            self.threshold_source = "configured"
        else:
            source = self._confidence_signal()
            self.calibration = load_calibration(self.local.fingerprint, source.confidence_id if source else "")
            self.threshold_source = self.calibration.describe() if self.calibration else "default"
        threshold = cfg.threshold if cfg.threshold is not None else (
            self.calibration.threshold if self.calibration else DEFAULT_THRESHOLD
        )
        if store is None and cfg.trace:
            store = TraceStore(cfg.trace_path)
            owned.append(store)
        self.store = store
        if policy is None and cfg.routing == "linucb":
            if store is None:
                raise ConfigError("routing='linucb' learns from feedback kept in the trace store: it needs trace=True")
            policy = LinUCBPolicy(
                threshold,
                weights=RewardWeights.preset(cfg.preset, energy=cfg.lambda_energy, latency=cfg.lambda_latency,
                                             cost=cfg.lambda_cost),
                model_key=self.local.fingerprint,
                store=store,
                allow_below_threshold=cfg.allow_below_threshold,
                cloud_quality_prior=cfg.cloud_quality_prior if cfg.cloud_quality_prior >= 0 else None,
                on_unknown=cfg.on_unknown,
            )
        self.policy = policy or ThresholdPolicy(threshold, cfg.on_unknown)
        self.verifier = verifier
        #: What the online policy knows of the device (power source, cloud latency).
        self.device = DeviceWatch()
        if energy_monitor is None and cfg.energy:
            energy_monitor = build_monitor(
                cfg.energy_meters,
                gpu=self.local.uses_gpu,
                idle_w=cfg.energy_idle_w,
                watts_per_core=cfg.watts_per_core,
            )
            owned.append(energy_monitor)
        self.energy = energy_monitor
        #: The privacy gate's detector (None when ``privacy_detect=False``): matches never leave the device.
        self.privacy: Optional[PrivacyDetector] = PrivacyDetector(cfg.privacy_kinds) if cfg.privacy_detect else None
        #: Local generations run one at a time (the model has one context); energy windows open inside this gate
        #: so a query waiting for the model is not charged for another query's compute.
        self._local_gate = threading.Lock()
        self._owned = owned

    @staticmethod
    def _load_selfref(engine: Any) -> None:
        """Load the shipped Self-REF adapter into ``engine``, or warn once why there is none for this model."""
        from .local.selfref import SelfRefAdapter

        adapter = SelfRefAdapter.shipped()
        if adapter is None or not adapter.fits(engine.fingerprint):
            log.warning("edgeroute: selfref=True but no Self-REF adapter ships for %s; the signal is off", engine.name)
            return
        engine.load_selfref(adapter)

    # --- public API -----------------------------------------------------------------------------------------
    def ask(
        self,
        prompt: PromptLike,
        *,
        max_tokens: Optional[int] = None,
        private: bool = False,
        cancel: Optional[threading.Event] = None,
    ) -> Answer:
        """Answer ``prompt`` (a string or chat messages). ``private=True`` keeps it on the device."""
        return drain(self._pipeline(prompt, max_tokens=max_tokens, private=private, cancel=cancel))

    def stream(
        self,
        prompt: PromptLike,
        *,
        max_tokens: Optional[int] = None,
        private: bool = False,
        cancel: Optional[threading.Event] = None,
    ) -> AnswerStream:
        """Like ``ask``, but yields ``StreamEvent``s: local tokens as decoded, then maybe an escalation."""
        return AnswerStream(self._pipeline(prompt, max_tokens=max_tokens, private=private, cancel=cancel))

    async def aask(self, prompt: PromptLike, *, max_tokens: Optional[int] = None, private: bool = False) -> Answer:
        """Async twin of ``ask``; cancelling the task stops local generation at the next token."""
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self.ask, prompt, max_tokens=max_tokens, private=private, cancel=cancel)
        except asyncio.CancelledError:
            cancel.set()
            raise

    async def astream(
        self, prompt: PromptLike, *, max_tokens: Optional[int] = None, private: bool = False
    ) -> AsyncIterator[StreamEvent]:
        """Async twin of ``stream``: generation runs in a worker thread, events arrive on the event loop."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        end = object()

        def work() -> None:
            try:
                for event in self.stream(prompt, max_tokens=max_tokens, private=private, cancel=cancel):
                    loop.call_soon_threadsafe(queue.put_nowait, event)
            except BaseException as exc:  # handed to the consumer
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            else:
                loop.call_soon_threadsafe(queue.put_nowait, end)

        worker = loop.run_in_executor(None, work)
        try:
            while (item := await queue.get()) is not end:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()
            await asyncio.wait([worker])

    def feedback(self, answer_id: str, correct: Optional[bool] = None, *, note: Optional[str] = None) -> bool:
        """Record whether answer ``answer_id`` was correct (stored in the trace against its id). Returns True when
        the policy learned from it (a learning policy, the first verdict on that answer); once this returns, what
        was learned is on disk."""
        if self.store is None:
            raise ConfigError("feedback needs the trace store; this Router was created with trace=False")
        self.store.add_feedback(answer_id, correct=correct, note=note)
        if correct is None:
            return False
        return self.policy.feedback(answer_id, 1.0 if correct else 0.0)

    def close(self) -> None:
        """Release what this Router created (model, cloud client, trace store); parts passed in stay open."""
        while self._owned:
            self._owned.pop().close()

    def __enter__(self) -> "Router":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the pipeline ---------------------------------------------------------------------------------------
    def _cloud_block(self, work: _Work) -> Optional[tuple[Route, str]]:
        """Why the cloud cannot be used for this query (route to report, reason), or None when it can."""
        if work.private:
            return "local", "private prompt: kept on the device"
        if self.privacy is not None:
            kinds = self.privacy.kinds_in([m["content"] for m in work.messages])
            if kinds:
                work.flags.append("sensitive")
                return "local", f"sensitive data detected ({', '.join(kinds)}): kept on the device"
        if self.config.local_only:
            return "local", "local_only: escalation disabled"
        if self.cloud is None:
            if self.cloud_disabled:
                return "local-offline", self.cloud_disabled
            return "local-offline", "cloud not configured (set cloud_url or $EDGEROUTE_CLOUD_URL)"
        return None

    def _pipeline(
        self, prompt: PromptLike, *, max_tokens: Optional[int], private: bool, cancel: Optional[threading.Event]
    ) -> Generator[StreamEvent, None, Answer]:
        cfg = self.config
        work = _Work(normalize(prompt), max_tokens or cfg.max_tokens, private)
        block = self._cloud_block(work)
        work.cloud_ok = block is None
        route: Route
        skip = self._pregen_skip(work) if block is None else None
        reply: Optional[CloudAnswer] = None
        pieces: list[str] = []
        if skip is not None:
            reply, pieces, cloud_exc = yield from self._cloud_stream(work, None)
            if cloud_exc is not None and not pieces:
                work.warnings.append(f"{skip}, but the cloud failed ({work.error}): answered locally")
        if reply is not None or pieces:
            route, text = "cloud", reply.text if reply is not None else "".join(pieces)
            cloud_model = reply.model if reply is not None else ""
            reason = f"{skip}: local generation skipped"
            if reply is None:
                reason += f"; the cloud's stream broke ({work.error}): partial answer"
            work.flags.append("pregen_skip")
        else:
            route, text, reason, cloud_model = yield from self._local_first(work, block, cancel)

        work.latency_ms["total"] = (time.perf_counter() - work.t0) * 1000.0
        answer = Answer(
            id=work.id,
            text=text,
            route=route,
            confidence=work.confidence,
            signals=work.signals,
            threshold=self.policy.threshold,
            threshold_source=self.threshold_source,
            latency_ms=work.latency_ms,
            tokens=work.tokens,
            energy=QueryEnergy(
                local=combine([e for e in (work.energy_pregen, work.energy_local) if e is not None])
                if (work.energy_pregen or work.energy_local) else EnergyReading.unmeasured(_ENERGY_OFF),
                cloud_wait=work.energy_cloud,
                local_tokens=work.tokens["completion"],
            ),
            reason=reason,
            flags=work.flags,
            model=self.local.name,
            cloud_model=cloud_model,
            created=work.created,
            warnings=work.warnings,
        )
        self._trace(work, answer)
        self._settle(work, answer)
        yield StreamEvent("done", answer=answer)
        return answer

    def _situation(self, work: _Work, generation: Optional[Generation] = None) -> Situation:
        """What the policy sees of this query now."""
        reachable = work.cloud_ok and not (isinstance(self.cloud, CircuitBreaker) and self.cloud.state == "open")
        return Situation(work.messages, work.signals, work.confidence,
                         bool(generation is not None and generation.truncated), self.device.state(reachable),
                         repeating="repetition" in work.flags)

    def _settle(self, work: _Work, answer: Answer) -> None:
        """Tell the policy what the answer cost (J, s, US$) and, with a verifier, how good it was."""
        quality: Optional[float] = None
        if self.verifier is not None:
            try:
                quality = self.verifier(work.messages, answer.text)
                if quality is not None and not 0.0 <= float(quality) <= 1.0:
                    raise PolicyError(f"the verifier returned {quality!r}, not a quality in [0, 1]")
            except Exception as exc:  # a user's callback: its failure must not lose the answer
                answer.warnings.append(f"verifier failed: {type(exc).__name__}: {exc}")
                quality = None
        cloud_tokens = work.tokens["cloud_prompt"] + work.tokens["cloud_completion"]
        dollars = self.config.cloud_price_per_1k_usd * cloud_tokens / 1000.0 if answer.route == "cloud" else 0.0
        outcome = Outcome(answer.route, answer.energy.joules or 0.0, work.latency_ms["total"] / 1000.0, dollars,
                          quality)
        try:
            self.policy.settle(work.id, outcome)
        except (StoreError, PolicyError) as exc:
            log.warning("edgeroute: the policy could not learn from %s: %s", work.id, exc)
            answer.warnings.append(f"policy not updated: {exc}")

    def _local_first(
        self, work: _Work, block: Optional[tuple[Route, str]], cancel: Optional[threading.Event]
    ) -> Generator[StreamEvent, None, tuple[Route, str, str, str]]:
        """Generate locally, judge, and escalate when the policy says so and the cloud can be used."""
        generation: Optional[Generation] = None
        try:
            generation = yield from self._generate_local(work, cancel)
            decision = self._judge(work, generation)
        except PromptTooLongError as exc:
            work.flags.append("prompt_too_long")
            work.tokens["prompt"] = exc.prompt_tokens
            if block is not None:
                raise PromptTooLongError(
                    f"{exc}; cannot escalate: {block[1]}", prompt_tokens=exc.prompt_tokens, n_ctx=exc.n_ctx
                ) from None
            decision = Decision(True, str(exc))

        text = generation.text if generation is not None else ""
        route: Route = "local"
        reason = decision.reason
        cloud_model = ""
        if decision.escalate:
            if block is not None:
                route, why = block
                reason = f"{decision.reason}; not escalated: {why}"
                work.flags.append("low_confidence")
                if route == "local-offline":
                    work.flags.append("offline")
            else:
                reply, pieces, cloud_exc = yield from self._cloud_stream(work, decision.reason)
                if reply is not None:
                    route, text, cloud_model = "cloud", reply.text, reply.model
                    reason = f"escalated: {decision.reason}"
                elif pieces:  # the caller has seen part of the cloud's answer: no silent retry, flagged
                    route, text = "cloud", "".join(pieces)
                    reason = f"escalated: {decision.reason}; the cloud's stream broke ({work.error}): partial answer"
                elif generation is None:
                    raise PromptTooLongError(
                        f"{decision.reason}; and the cloud failed: {cloud_exc}",
                        prompt_tokens=work.tokens["prompt"],
                        n_ctx=self.local.n_ctx,
                    ) from cloud_exc
                elif self.config.cloud_required and cloud_exc is not None:
                    raise cloud_exc  # strict mode: the caller asked for the cloud's answer or an error
                else:
                    route, reason = "local-offline", f"{decision.reason}; cloud failed: {work.error}"
                    work.flags += ["low_confidence", "offline"]

        return route, text, reason, cloud_model

    def _pregen_skip(self, work: _Work) -> Optional[str]:
        """The reason to skip local generation, or None: the policy's pre-generation decision, else the
        pre-generation probe's threshold."""
        probed: list[Optional[float]] = []

        def probe() -> Optional[float]:  # runs the prefill at most once
            if not probed:
                probed.append(self._pregen_score(work))
            return probed[0]

        decision = self.policy.before(work.id, self._situation(work), probe if self.pregen is not None else None)
        if decision is not None:
            return decision.reason if decision.escalate else None
        score = probe() if self.pregen is not None else None
        if score is not None and self.pregen is not None and score < self.pregen.threshold:
            return f"pre-generation probe: P(correct) {score:.3f} < {self.pregen.threshold:.3f}"
        return None

    def _pregen_score(self, work: _Work) -> Optional[float]:
        """Run the pre-generation probe (prefill only): P(local answer correct), or None without a probe."""
        probe = self.pregen
        if probe is None:
            return None
        t = time.perf_counter()
        with self._local_gate:
            window = self._energy_begin("process")
            try:
                hidden = self.local.prompt_hidden(work.messages)
                score = probe.score(hidden, work.messages) if hidden is not None else None
            finally:
                work.energy_pregen = self._energy_end(window)
        work.latency_ms["pregen"] = (time.perf_counter() - t) * 1000.0
        if score is not None:
            work.signals["pregen_confidence"] = score
        return score

    def _confidence_signal(self) -> Optional[Signal]:
        """The signal whose value is the confidence (``signals.confidence_signal``)."""
        return confidence_signal(self.signals)

    def _energy_begin(self, cpu: CpuScope) -> Optional[EnergyWindow]:
        return self.energy.begin(cpu) if self.energy is not None else None

    def _energy_end(self, window: Optional[EnergyWindow]) -> EnergyReading:
        if self.energy is None or window is None:
            return EnergyReading.unmeasured(_ENERGY_OFF)
        return self.energy.end(window)

    def _generate_local(
        self, work: _Work, cancel: Optional[threading.Event]
    ) -> Generator[StreamEvent, None, Generation]:
        with self._local_gate:
            window = self._energy_begin("process")
            stream = self.local.stream(
                work.messages, max_tokens=work.max_tokens, temperature=self.config.temperature, cancel=cancel
            )
            try:
                while True:
                    try:
                        piece = next(stream)
                    except StopIteration as stop:
                        generation: Generation = stop.value
                        break
                    yield StreamEvent("token", text=piece, source="local")
            finally:
                stream.close()
                work.energy_local = self._energy_end(window)
        work.latency_ms["prefill"] = generation.prefill_s * 1000.0
        work.latency_ms["decode"] = generation.decode_s * 1000.0
        work.tokens["prompt"] = generation.prompt_tokens
        work.tokens["completion"] = generation.completion_tokens
        if generation.truncated:
            work.flags.append("truncated")
        if ends_in_loop(generation.token_ids):
            work.flags.append("repetition")
        return generation

    def _judge(self, work: _Work, generation: Generation) -> Decision:
        t = time.perf_counter()
        values = evaluate(self.signals, generation, work.messages)
        work.signals.update(floats(values))
        work.confidence = confidence_of(self.signals, values)
        decision = self.policy.judge(work.id, self._situation(work, generation))
        work.latency_ms["signals"] = (time.perf_counter() - t) * 1000.0
        return decision

    def _cloud_stream(
        self, work: _Work, escalating: Optional[str]
    ) -> Generator[StreamEvent, None, tuple[Optional[CloudAnswer], list[str], Optional[CloudError]]]:
        """Stream the cloud's answer to the caller: (answer, pieces sent, error). ``escalating`` (the reason) is
        announced with an ``escalate`` event just before the first piece, so a cloud that fails before answering
        leaves the local text standing. A failure after a piece was sent is not retried; it is flagged ``partial``."""
        assert self.cloud is not None
        t = time.perf_counter()
        window = self._energy_begin("thread")
        pieces: list[str] = []
        reply: Optional[CloudAnswer] = None
        error: Optional[CloudError] = None
        stream = self.cloud.stream(work.messages, max_tokens=work.max_tokens, temperature=self.config.temperature)
        try:
            while True:
                try:
                    piece = next(stream)
                except StopIteration as stop:
                    reply = stop.value
                    break
                if not pieces and escalating is not None:
                    yield StreamEvent("escalate", text=escalating, source="cloud")
                pieces.append(piece)
                yield StreamEvent("token", text=piece, source="cloud")
        except CloudError as exc:
            error = exc
            work.error = f"{type(exc).__name__}: {exc}"
            if pieces:
                work.flags.append("partial")
        finally:
            stream.close()
            work.latency_ms["cloud"] = (time.perf_counter() - t) * 1000.0
            work.energy_cloud = self._energy_end(window)
        if reply is not None:
            self.device.cloud_answered(work.latency_ms["cloud"] / 1000.0)
            work.tokens["cloud_prompt"] = reply.prompt_tokens
            work.tokens["cloud_completion"] = reply.completion_tokens
        return reply, pieces, error

    def _trace(self, work: _Work, answer: Answer) -> None:
        if self.store is None:
            return
        row = {
            "id": answer.id,
            "created": answer.created,
            "prompt_hash": prompt_hash(work.messages),
            "prompt": json.dumps(work.messages, ensure_ascii=False) if self.config.store_prompts else None,
            "model": self.local.fingerprint,
            "route": answer.route,
            "confidence": answer.confidence,
            "threshold": answer.threshold,
            "signals": answer.signals,
            "latency_ms": answer.latency_ms,
            "tokens": answer.tokens,
            "energy": answer.energy.to_dict(),
            "joules": answer.energy.joules,
            "energy_method": answer.energy.method,
            "reason": answer.reason,
            "error": work.error,
        }
        try:
            self.store.record(row)
        except StoreError as exc:
            log.warning("edgeroute: trace not written: %s", exc)
            answer.warnings.append(f"trace not written: {exc}")
