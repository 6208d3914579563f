"""Fitting a conversation's history to the local context window, by a named strategy (``registry.HISTORY``).

``latest`` keeps the system prompt and the newest turns that fit; ``summarize`` also folds the turns it leaves out
into a short summary written by the local model. The cloud always gets the whole conversation.
"""

from .base import Fitted, HistoryStrategy, answer_reserve, split_turns

__all__ = ["Fitted", "HistoryStrategy", "answer_reserve", "split_turns"]
