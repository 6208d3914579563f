"""``latest``: keep the system prompt and the newest turns that fit; leave the older ones out."""

from __future__ import annotations

from collections.abc import Sequence

from ..messages import Message
from .base import Fitted, HistoryStrategy, answer_reserve, split_turns


class LatestTurns(HistoryStrategy):
    """The default strategy. Whole turns are dropped, oldest first; a message is never cut in the middle."""

    name = "latest"

    def fit(self, messages: Sequence[Message], max_tokens: int) -> Fitted:
        msgs = list(messages)
        n_ctx = self.model.n_ctx
        budget = n_ctx - answer_reserve(n_ctx, max_tokens)
        tokens = self.count(msgs)
        system, turns, newest = split_turns(msgs)
        earlier = len(msgs) - len(system) - len(newest)
        if tokens <= budget or not turns:
            return Fitted(msgs, 0, earlier, tokens, self.name)
        kept_msgs, kept, tokens = self.keep_newest(system, turns, newest, budget)
        dropped = sum(len(t) for t in turns[:len(turns) - kept])
        return Fitted(kept_msgs, dropped, earlier, tokens, self.name)
