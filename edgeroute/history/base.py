"""The base class of history strategies and what they share: splitting messages into turns, counting tokens."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .._constants import HISTORY_RESERVE_SHARE, MIN_ANSWER_ROOM_TOKENS
from ..messages import Message

if TYPE_CHECKING:
    from ..local.base import LocalModel

Turn = list[Message]


@dataclass(frozen=True)
class Fitted:
    """The messages the local model gets. ``dropped``: earlier messages left out (or folded into ``summary``);
    ``tokens``: the prompt's length in the local model's tokens."""

    messages: list[Message]
    dropped: int
    total: int
    tokens: int
    strategy: str
    summary: Optional[str] = None

    @property
    def cut(self) -> bool:
        return self.dropped > 0

    @property
    def note(self) -> str:
        how = "summarised" if self.summary else "left out"
        return (f"history cut to fit the local context: {self.dropped} of {self.total} earlier messages {how} "
                f"(strategy {self.strategy}); the cloud gets them all")


def split_turns(messages: Sequence[Message]) -> tuple[list[Message], list[Turn], Turn]:
    """(leading system messages, the earlier turns oldest first, the newest turn). A turn starts at a user
    message; the newest turn is the last user message and whatever follows it."""
    msgs = list(messages)
    head = 0
    while head < len(msgs) and msgs[head]["role"] == "system":
        head += 1
    system, rest = msgs[:head], msgs[head:]
    starts = [i for i, m in enumerate(rest) if m["role"] == "user"]
    if not starts:
        return system, [], rest
    turns: list[Turn] = []
    if starts[0] > 0:  # assistant messages before the first user message: a turn of their own
        turns.append(rest[:starts[0]])
    for a, b in zip(starts, starts[1:]):
        turns.append(rest[a:b])
    return system, turns, rest[starts[-1]:]


def size(turns: Sequence[Turn]) -> int:
    """Messages in ``turns``."""
    return sum(len(t) for t in turns)


def answer_reserve(n_ctx: int, max_tokens: int) -> int:
    """Tokens a cut history leaves free for the answer: ``max_tokens``, at most ``HISTORY_RESERVE_SHARE`` of the
    window, at least ``MIN_ANSWER_ROOM_TOKENS``."""
    return max(MIN_ANSWER_ROOM_TOKENS, min(max_tokens, int(n_ctx * HISTORY_RESERVE_SHARE)))


class HistoryStrategy(ABC):
    """Fits messages to ``model``'s window. Subclasses implement ``fit``; ``keep_newest`` is the shared core."""

    name = "base"

    def __init__(self, model: "LocalModel") -> None:
        self.model = model

    def fit(self, messages: Sequence[Message], max_tokens: int) -> Fitted:
        """The messages to send to the local model. The system prompt and the newest turn are always kept; when
        even they do not fit, they come back alone and the engine raises ``PromptTooLongError``."""
        msgs = list(messages)
        n_ctx = self.model.n_ctx
        budget = n_ctx - answer_reserve(n_ctx, max_tokens)
        tokens = self.count(msgs)
        system, turns, newest = split_turns(msgs)
        if tokens <= budget or not turns:
            return Fitted(msgs, 0, len(msgs) - len(system) - len(newest), tokens, self.name)
        return self.cut(system, turns, newest, budget)

    @abstractmethod
    def cut(self, system: list[Message], turns: list[Turn], newest: Turn, budget: int) -> Fitted:
        """The history fitted to ``budget`` tokens, when the whole of it does not fit."""

    def drop_oldest(self, system: list[Message], turns: list[Turn], newest: Turn, budget: int) -> Fitted:
        """``system``, the newest ``turns`` that fit, ``newest``: the others left out."""
        kept_msgs, kept, tokens = self.keep_newest(system, turns, newest, budget)
        earlier = size(turns)
        return Fitted(kept_msgs, earlier - size(turns[len(turns) - kept:]), earlier, tokens, self.name)

    def count(self, messages: Sequence[Message]) -> int:
        return self.model.count_prompt_tokens(messages)

    def keep_newest(self, system: list[Message], turns: list[Turn], newest: Turn,
                    budget: int) -> tuple[list[Message], int, int]:
        """(messages, earlier turns kept, tokens): ``system``, as many of the newest ``turns`` as fit ``budget``
        tokens, then ``newest``."""
        kept = 0
        best = system + newest
        tokens = self.count(best)
        for k in range(1, len(turns) + 1):
            candidate = system + [m for t in turns[-k:] for m in t] + newest
            n = self.count(candidate)
            if n > budget:
                break
            best, kept, tokens = candidate, k, n
        return best, kept, tokens

    @classmethod
    def from_model(cls, model: "LocalModel") -> "HistoryStrategy":
        return cls(model)
