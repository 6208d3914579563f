"""``Conversation``: a multi-turn chat with a Router. It keeps the messages, fits them to the local window through
the Router's history strategy, links the turns in the trace (``conversation``, ``turn``) and keeps the
conversation's stickiness (``policy.sticky``)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any, Optional

from .answer import Answer, StreamEvent
from .local.base import drain
from .local.sampling import Sampling
from .messages import Message, normalize
from .policy.sticky import ConversationState
from .streams import AnswerStream

if TYPE_CHECKING:
    from .router import Router


class Conversation:
    """Turns of one chat: ``ask`` / ``stream`` take the user's next message and return the answer, which joins the
    history. ``system`` is the system prompt; ``messages`` seeds an earlier history (OpenAI-style). Each answer
    carries ``conversation`` (this id) and ``turn``; ``answer.reason`` says when a turn stayed in the cloud because
    an earlier one was escalated. Turns of one conversation are taken one at a time."""

    def __init__(self, router: "Router", *, system: Optional[str] = None, id: Optional[str] = None,
                 messages: Optional[Sequence[Message]] = None) -> None:
        self._router = router
        history: list[Message] = [{"role": "system", "content": system}] if system is not None else []
        history += list(messages or [])
        self._messages = normalize(history + [{"role": "user", "content": "-"}])[:-1]  # checked like any prompt
        #: What is remembered between turns: the id, the turn index, the sticky run.
        self.state = ConversationState(id=id or uuid.uuid4().hex)
        self._turn_lock = threading.Lock()

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def messages(self) -> list[Message]:
        """The whole history (a copy): what the cloud gets; the local model gets it fitted to its window."""
        return [dict(m) for m in self._messages]

    def _turn(self, text: str, answer_id: str, options: dict[str, Any]) -> Generator[StreamEvent, None, Answer]:
        with self._turn_lock:
            prompt = self._messages + [{"role": "user", "content": text}]
            answer = yield from self._router._pipeline.run(prompt, answer_id=answer_id, conversation=self.state,
                                                           **options)
            self._messages = prompt + [{"role": "assistant", "content": answer.text}]
            return answer

    def ask(self, text: str, *, max_tokens: Optional[int] = None, private: bool = False,
            cancel: Optional[threading.Event] = None, sampling: Optional[Sampling] = None) -> Answer:
        """Answer the next user message ``text`` (see ``Router.ask``)."""
        options = dict(max_tokens=max_tokens, private=private, cancel=cancel, sampling=sampling)
        return drain(self._turn(text, uuid.uuid4().hex, options))

    def stream(self, text: str, *, max_tokens: Optional[int] = None, private: bool = False,
               cancel: Optional[threading.Event] = None, sampling: Optional[Sampling] = None) -> AnswerStream:
        """Like ``ask``, as ``StreamEvent``s (see ``Router.stream``); the answer joins the history once done."""
        answer_id = uuid.uuid4().hex
        options = dict(max_tokens=max_tokens, private=private, cancel=cancel, sampling=sampling)
        return AnswerStream(self._turn(text, answer_id, options), answer_id)


__all__ = ["Conversation"]
