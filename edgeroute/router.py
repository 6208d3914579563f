"""The public API: ``Router`` (ask, stream, aask, astream, feedback, close). The parts are built by
``assembly``, each query runs through ``pipeline``."""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Optional

from ._errors import ConfigError
from .answer import Answer, StreamEvent
from .streams import AnswerStream, events_in_thread
from .assembly import build_parts
from .signals.prefix import HandoffRule
from .cloud.base import CloudBackend
from .config import RouterConfig, load_config
from .conversation import Conversation
from .energy.monitor import EnergyMonitor
from .local.base import LocalModel, drain
from .local.sampling import Sampling
from .messages import PromptLike
from .pipeline import Pipeline, Verifier
from .device import DeviceWatch
from .policy.base import Policy
from .policy.calibration import Calibration
from .policy.sticky import ConversationState
from .privacy import PrivacyDetector
from .signals.base import Signal
from .signals.probe import PregenProbe
from .store import TraceStore

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

    from .config import RouterOptions


def _part(name: str, doc: str) -> Any:
    """A Router attribute that reads and replaces one of the pipeline's parts."""

    def get(self: "Router") -> Any:
        return getattr(self._pipeline.parts, name)

    def put(self: "Router", value: Any) -> None:
        setattr(self._pipeline.parts, name, value)

    return property(get, put, doc=doc)


class Router:
    """Answers on the device first and escalates to the cloud only when the local answer looks wrong.

    ``Router(local_only=True)`` never calls the cloud. Every ``RouterConfig`` field can be passed as a keyword
    (``RouterOptions``); they outrank the environment and the config file (``config.load_config``), or change
    ``config`` when one is passed. ``local_model``, ``cloud``, ``policy``, ``store``, ``signals`` and
    ``energy_monitor`` replace the built-in parts (e.g. with ``edgeroute.testing`` doubles); a cloud passed in
    gets the retry loop and the circuit breaker too, unless ``cloud_resilience=False``. ``routing="linucb"``
    learns online (see ``LinUCBPolicy``) from ``feedback``, from ``verifier`` (called on every answer: messages,
    text -> quality in [0, 1] or None) and from the cloud prior. Thread-safe: concurrent callers share one model,
    whose generations are serialised; each answer's energy covers its own generation and its own wait for the
    cloud.
    """

    config: RouterConfig = _part("config", "The configuration this Router was built from.")
    local: LocalModel = _part("local", "The local model.")
    cloud: Optional[CloudBackend] = _part("cloud", "The cloud backend (None: the cloud is not used).")
    cloud_disabled: str = _part("cloud_disabled", "Why the configured cloud is not used at all, or \"\".")
    signals: list[Signal] = _part("signals", "The signals that judge each local answer.")
    pregen: Optional[PregenProbe] = _part(
        "pregen", "The pre-generation probe (None: off, not shipped for this model, or no hidden states).")
    calibration: Optional[Calibration] = _part(
        "calibration", "The saved calibration in use (None: the threshold was configured or is the default).")
    threshold_source: str = _part("threshold_source", "Where the threshold comes from.")
    store: Optional[TraceStore] = _part("store", "The trace store (None: trace=False).")
    policy: Policy = _part("policy", "The routing policy.")
    energy: Optional[EnergyMonitor] = _part("energy", "The energy monitor (None: energy=False).")
    privacy: Optional[PrivacyDetector] = _part(
        "privacy", "The privacy gate's detector (None: privacy_detect=False): matches never leave the device.")
    handoff: Optional[HandoffRule] = _part(
        "handoff", "The mid-stream handoff rule from the calibration (None: local answers always complete).")

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
        **options: "Unpack[RouterOptions]",
    ) -> None:
        arguments: dict[str, Any] = dict(options)
        if local_only:
            arguments["local_only"] = True
        parts = build_parts(load_config(arguments, base=config), local_model=local_model, cloud=cloud, policy=policy, store=store,
                            signals=signals, energy_monitor=energy_monitor)
        self._pipeline = Pipeline(parts, verifier)
        self._owned = parts.owned

    @property
    def verifier(self) -> Optional[Verifier]:
        return self._pipeline.verifier

    @verifier.setter
    def verifier(self, value: Optional[Verifier]) -> None:
        self._pipeline.verifier = value

    @property
    def device(self) -> DeviceWatch:
        """What the online policy knows of the device (power source, cloud latency)."""
        return self._pipeline.device

    # --- public API -----------------------------------------------------------------------------------------
    def ask(
        self,
        prompt: PromptLike,
        *,
        max_tokens: Optional[int] = None,
        private: bool = False,
        cancel: Optional[threading.Event] = None,
        sampling: Optional[Sampling] = None,
        cloud_extra: Optional[dict[str, Any]] = None,
        conversation: Optional[ConversationState] = None,
    ) -> Answer:
        """Answer ``prompt`` (a string or chat messages). ``private=True`` keeps it on the device. ``sampling``
        sets the decoding (default greedy, which the calibration covers; a sampled answer is flagged
        ``uncalibrated``). ``cloud_extra`` (e.g. ``{"tools": [...]}``) are request fields only the cloud honours:
        the query goes to the cloud with them (``InputError`` when it cannot), and ``answer.cloud_choices`` holds
        the cloud's choices as sent. ``conversation``: the state of the conversation this is a turn of (what
        ``Conversation`` and ``serve`` keep: stickiness, the turn index in the trace)."""
        return drain(self._pipeline.run(prompt, max_tokens=max_tokens, private=private, cancel=cancel,
                                        sampling=sampling, cloud_extra=cloud_extra, conversation=conversation))

    def stream(
        self,
        prompt: PromptLike,
        *,
        max_tokens: Optional[int] = None,
        private: bool = False,
        cancel: Optional[threading.Event] = None,
        sampling: Optional[Sampling] = None,
        cloud_extra: Optional[dict[str, Any]] = None,
        conversation: Optional[ConversationState] = None,
    ) -> AnswerStream:
        """Like ``ask``, but yields ``StreamEvent``s: local tokens as decoded, then maybe an escalation."""
        answer_id = uuid.uuid4().hex
        return AnswerStream(self._pipeline.run(prompt, max_tokens=max_tokens, private=private, cancel=cancel,
                                               sampling=sampling, answer_id=answer_id, cloud_extra=cloud_extra,
                                               conversation=conversation), answer_id)

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
        cancel = threading.Event()
        async for event in events_in_thread(self.stream(prompt, max_tokens=max_tokens, private=private,
                                                        cancel=cancel), cancel):
            yield event

    def conversation(self, system: Optional[str] = None, *, id: Optional[str] = None,
                     messages: Optional[list[dict[str, str]]] = None) -> Conversation:
        """A multi-turn chat (``Conversation``): its turns are linked in the trace, its history is fitted to the
        local window (``history``) and it stays in the cloud for ``sticky_turns`` turns after an escalation."""
        return Conversation(self, system=system, id=id, messages=messages)

    def feedback(self, answer_id: str, correct: Optional[bool] = None, *, note: Optional[str] = None) -> bool:
        """Record whether answer ``answer_id`` was correct (stored in the trace against its id). Returns True when
        the policy learned from it (a learning policy, the first verdict on that answer); once this returns, what
        was learned is on disk."""
        if self.store is None:
            raise ConfigError("feedback needs the trace store; this Router was created with trace=False")
        self.store.add_feedback(answer_id, correct=correct, note=note)
        if correct is None:
            return False
        risk = self._pipeline.parts.risk
        if risk is not None and risk.state is not None and risk.state.override(answer_id, wrong=not correct) \
                and risk.auditor is not None:
            risk.auditor.submit(None)  # a processed label changed: the control recomputes its bounds
        return self.policy.feedback(answer_id, 1.0 if correct else 0.0)

    def close(self) -> None:
        """Release what this Router created (model, cloud client, trace store); parts passed in stay open."""
        while self._owned:
            self._owned.pop().close()

    def __enter__(self) -> "Router":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
