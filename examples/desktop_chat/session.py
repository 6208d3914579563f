"""The part of the desktop chat that knows nothing about widgets: copy it into your app as it is.

``ChatSession`` owns the Router, the conversation history, the session totals and the settings. ``ask()`` runs the
Router in a worker thread and puts every ``StreamEvent`` on a ``queue.Queue``; the UI thread drains that queue on
its own timer (Tk, Qt and most toolkits forbid touching widgets from another thread). Nothing here blocks the UI.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Optional

from edgeroute import Answer, EdgeRouteError, LocalModel, Router, StreamEvent

#: Energy/cost presets. Until edgeroute's online policy lands, a preset sets the escalation threshold and the
#: longest local answer: a higher threshold sends more to the cloud (better answers, more cloud cost, fewer local
#: joules spent on answers that get replaced); a lower one keeps more on the device.
PRESETS: dict[str, dict[str, Any]] = {
    "balanced": {"threshold": 0.5, "max_tokens": 256},
    "quality-first": {"threshold": 0.7, "max_tokens": 256},
    "cost-saver": {"threshold": 0.3, "max_tokens": 256},
    "battery-saver": {"threshold": 0.6, "max_tokens": 96},
}


@dataclass(frozen=True)
class Settings:
    """What the settings panel edits. ``cloud_url`` None or "" means no cloud (answers stay local, flagged)."""

    cloud_url: Optional[str] = None
    cloud_model: Optional[str] = None
    local_only: bool = False
    preset: str = "balanced"
    #: Learn from the Good / Bad buttons (the online LinUCB policy with this preset's lambdas; the calibrated
    #: threshold stays the floor) instead of using the preset's fixed threshold.
    learn: bool = False


@dataclass
class Totals:
    """Running totals for the session: answers, joules (device side, with how many were estimated), cloud calls."""

    answers: int = 0
    joules: float = 0.0
    estimated: int = 0
    cloud_calls: int = 0
    routes: dict[str, int] = field(default_factory=dict)

    def add(self, answer: Answer) -> None:
        self.answers += 1
        self.joules += answer.energy.joules or 0.0
        self.estimated += int(answer.energy.kind == "estimated")
        self.cloud_calls += int(answer.route == "cloud")
        self.routes[answer.route] = self.routes.get(answer.route, 0) + 1

    def line(self) -> str:
        how = "estimated" if self.estimated == self.answers else "measured" if not self.estimated else "mixed"
        plural = "" if self.answers == 1 else "s"
        return f"session: {self.answers} answer{plural} · {self.joules:.1f} J ({how}) · {self.cloud_calls} cloud calls"


#: What the worker thread puts on the queue: a StreamEvent, an error (a typed edgeroute error), or DONE.
DONE = object()


class ChatSession:
    """One chat: history, Router, totals. ``local_model`` is loaded once and reused when the settings change."""

    def __init__(self, settings: Settings, *, local_model: Optional[LocalModel] = None, **router_options: Any) -> None:
        self.settings = settings
        self._local = local_model
        self._owns_local = local_model is None
        self._options = router_options
        self.router = self._make_router(settings)
        self.history: list[dict[str, str]] = []
        self.totals = Totals()
        self.events: "queue.Queue[Any]" = queue.Queue()
        self._cancel: Optional[threading.Event] = None
        self._worker: Optional[threading.Thread] = None
        self._finished = threading.Event()

    def _make_router(self, s: Settings) -> Router:
        if self._local is None:
            from edgeroute import LlamaCppModel

            self._local = LlamaCppModel()  # load the model once; Routers built around it are cheap
        preset = PRESETS[s.preset]
        routing = {"routing": "linucb", "preset": s.preset} if s.learn else {"threshold": preset["threshold"]}
        return Router(
            local_only=s.local_only,
            local_model=self._local,
            cloud_url=s.cloud_url or None,
            cloud_model=s.cloud_model or None,
            max_tokens=preset["max_tokens"],
            **routing,
            **self._options,
        )

    def apply(self, settings: Settings) -> None:
        """Switch settings; takes effect for the next question."""
        if self.busy:
            raise RuntimeError("wait for the current answer before changing settings")
        if settings == self.settings:
            return
        old, self.router = self.router, self._make_router(settings)
        self.settings = settings
        old.close()  # closes the trace store and cloud client it opened; the shared model stays loaded

    @property
    def busy(self) -> bool:
        """True from ``ask`` until the worker has queued ``DONE`` (it may still be exiting: that is not busy)."""
        return self._worker is not None and not self._finished.is_set()

    def ask(self, question: str) -> None:
        """Start answering ``question`` in a worker thread; events arrive on ``self.events``, then ``DONE``."""
        if self.busy:
            raise RuntimeError("an answer is already being generated")
        self.history.append({"role": "user", "content": question})
        self._cancel = threading.Event()
        self._finished.clear()
        messages = list(self.history)
        self._worker = threading.Thread(target=self._run, args=(messages, self._cancel), daemon=True)
        self._worker.start()

    def _run(self, messages: list[dict[str, str]], cancel: threading.Event) -> None:
        try:
            for event in self.router.stream(messages, cancel=cancel):
                self.events.put(event)
        except EdgeRouteError as exc:  # typed errors become a message in the window, never a crash
            self.events.put(exc)
        finally:
            self._finished.set()  # before DONE: whoever sees DONE sees the session idle
            self.events.put(DONE)

    def stop(self) -> None:
        """Stop the local generation at the next token."""
        if self._cancel is not None:
            self._cancel.set()

    def finish(self, event: StreamEvent) -> Answer:
        """Record a ``done`` event's answer (history, totals) and return it. Call from the UI thread."""
        assert event.answer is not None
        self.history.append({"role": "assistant", "content": event.answer.text})
        self.totals.add(event.answer)
        return event.answer

    def forget_last_question(self) -> None:
        """After an error: drop the unanswered question so the history stays a valid conversation."""
        if self.history and self.history[-1]["role"] == "user":
            self.history.pop()

    def feedback(self, answer_id: str, good: bool) -> bool:
        """Store Good / Bad for an answer; True when the online policy learned from it (``learn`` on)."""
        return self.router.feedback(answer_id, correct=good)

    def close(self) -> None:
        self.stop()
        if self._worker is not None:
            self._worker.join(timeout=30)
        self.router.close()
        if self._owns_local and self._local is not None:
            self._local.close()


def describe(answer: Answer) -> str:
    """The line shown under each answer: where it ran, confidence, milliseconds, joules and how they were obtained."""
    conf = "?" if answer.confidence is None else f"{answer.confidence:.2f}"
    e = answer.energy
    energy = f"{e.joules:.2f} J {e.kind} ({e.source})" if e.joules is not None else f"energy unmeasured ({e.reason})"
    return f"{answer.route} · confidence {conf} · {answer.latency_ms.get('total', 0.0):.0f} ms · {energy}"


__all__ = ["DONE", "PRESETS", "ChatSession", "Settings", "Totals", "describe"]
