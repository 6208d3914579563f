"""``summarize``: like ``latest``, and the turns left out are folded into a short summary the local model writes,
appended to the system prompt. Summaries are remembered per dropped history, so a long chat pays for each once."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import TYPE_CHECKING

from .._constants import HISTORY_SUMMARY_CACHE, HISTORY_SUMMARY_MAX_TOKENS
from ..messages import Message
from .base import Fitted, HistoryStrategy, Turn, size

if TYPE_CHECKING:
    from ..local.base import LocalModel

INSTRUCTION = ("Summarise this conversation in at most three sentences. Keep every name, number, date and decision.")
PREFIX = "Summary of the earlier conversation: "


class SummarizeOlder(HistoryStrategy):
    """``latest``, plus a local summary of what it left out (at most ``HISTORY_SUMMARY_MAX_TOKENS`` tokens). When the
    summary itself does not fit, the turns are simply left out (as ``latest``)."""

    name = "summarize"

    def __init__(self, model: "LocalModel") -> None:
        super().__init__(model)
        self._cache: OrderedDict[str, str] = OrderedDict()

    def summary(self, dropped: list[Turn]) -> str:
        """The local model's summary of ``dropped`` (oldest text cut first when it is longer than the window)."""
        lines = [f"{m['role']}: {m['content']}" for t in dropped for m in t]
        key = hashlib.sha256(json.dumps(lines).encode("utf-8")).hexdigest()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        budget = self.model.n_ctx - HISTORY_SUMMARY_MAX_TOKENS - 64
        while True:
            prompt = [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": "\n".join(lines)}]
            if self.count(prompt) <= budget or len(lines) <= 1:
                break
            lines = lines[1:]
        text = self.model.generate(prompt, max_tokens=HISTORY_SUMMARY_MAX_TOKENS).text.strip()
        self._cache[key] = text
        while len(self._cache) > HISTORY_SUMMARY_CACHE:
            self._cache.popitem(last=False)
        return text

    def cut(self, system: list[Message], turns: list[Turn], newest: Turn, budget: int) -> Fitted:
        _, kept, _ = self.keep_newest(system, turns, newest, budget)
        text = self.summary(turns[:len(turns) - kept])
        if system:
            head = [{**system[0], "content": f"{system[0]['content']}\n\n{PREFIX}{text}"}, *system[1:]]
        else:
            head = [{"role": "system", "content": PREFIX + text}]
        recent = turns[len(turns) - kept:]
        kept_msgs, kept, tokens = self.keep_newest(head, recent, newest, budget)
        if tokens > budget:  # the summary does not fit beside the newest turn: leave it out
            return self.drop_oldest(system, turns, newest, budget)
        earlier = size(turns)
        return Fitted(kept_msgs, earlier - size(recent[len(recent) - kept:]), earlier, tokens, self.name,
                      summary=text)
