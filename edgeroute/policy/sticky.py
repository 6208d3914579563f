"""Stickiness: after a conversation is escalated, its next turns stay in the cloud for a while, so it does not flip
between two voices on every turn.

``ConversationState`` is what is remembered of one conversation between turns (its id, the turn index, how many
sticky turns are left); ``Conversation`` (the Python API) and ``serve`` (by conversation id) each keep one per
conversation. The pipeline asks ``sticky_reason`` before a turn and calls ``settle`` after it.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class ConversationState:
    """``turn``: turns answered so far (0-based index of the next one); ``cloud_left``: sticky turns left;
    ``escalated_turn``: the turn whose escalation started the sticky run (None: none yet); ``last_cloud_turn``: the
    latest turn answered by the cloud."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    turn: int = 0
    cloud_left: int = 0
    escalated_turn: Optional[int] = None
    last_cloud_turn: Optional[int] = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def sticky(self) -> bool:
        return self.cloud_left > 0

    @property
    def since_cloud(self) -> Optional[int]:
        """Turns since the cloud last answered (1: the previous turn), or None when it never did."""
        return None if self.last_cloud_turn is None else self.turn - self.last_cloud_turn

    def sticky_reason(self, sticky_turns: int) -> str:
        """Why this turn goes to the cloud (only while ``sticky``)."""
        after = self.cloud_left - 1
        return (f"sticky: turn {self.turn} stays in the cloud, where turn {self.escalated_turn} was escalated "
                f"({after} more sticky turn{'s' if after != 1 else ''} after this; sticky_turns={sticky_turns})")

    def release(self) -> None:
        with self.lock:
            self.cloud_left = 0

    def settle(self, route: str, *, sticky_turn: bool, sticky_turns: int) -> None:
        """Record a finished turn: an escalation starts a sticky run of ``sticky_turns``; a sticky turn uses one up; a
        local answer ends the run."""
        with self.lock:
            if route == "cloud":
                self.last_cloud_turn = self.turn
                if sticky_turn:
                    self.cloud_left = max(self.cloud_left - 1, 0)
                else:
                    self.cloud_left, self.escalated_turn = sticky_turns, self.turn
            else:
                self.cloud_left = 0
            self.turn += 1


class ConversationTable:
    """Conversation states by id, for ``serve`` (whose clients send the whole history each turn): at most
    ``capacity``, the least recently used dropped first. Thread-safe."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._states: OrderedDict[str, ConversationState] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, conversation_id: Optional[str]) -> Optional[ConversationState]:
        """The state of ``conversation_id`` (a new one the first time), or None for None."""
        if conversation_id is None:
            return None
        with self._lock:
            state = self._states.get(conversation_id)
            if state is None:
                state = self._states[conversation_id] = ConversationState(id=conversation_id)
            self._states.move_to_end(conversation_id)
            while len(self._states) > self.capacity:
                self._states.popitem(last=False)
            return state

    def __len__(self) -> int:
        return len(self._states)
