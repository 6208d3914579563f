"""``latest``: keep the system prompt and the newest turns that fit; leave the older ones out."""

from __future__ import annotations

from ..messages import Message
from .base import Fitted, HistoryStrategy, Turn


class LatestTurns(HistoryStrategy):
    """The default strategy. Whole turns are dropped, oldest first; a message is never cut in the middle."""

    name = "latest"

    def cut(self, system: list[Message], turns: list[Turn], newest: Turn, budget: int) -> Fitted:
        return self.drop_oldest(system, turns, newest, budget)
