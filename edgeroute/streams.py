"""Streamed answers: ``AnswerStream`` (the iterator ``Router.stream`` returns) and ``events_in_thread`` (its events
on an event loop, for ``Router.astream`` and the endpoint)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any, Optional

from .answer import Answer, StreamEvent


class AnswerStream:
    """Iterator of ``StreamEvent``; ``answer`` is set once the ``done`` event has been produced.

    Close it (or use it as a context manager) to stop early: generation stops at the next token.
    """

    def __init__(self, events: Generator[StreamEvent, None, Answer], answer_id: str) -> None:
        self._events = events
        #: The id the finished ``Answer`` will carry (known before the first event).
        self.id = answer_id
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


async def events_in_thread(stream: AnswerStream, cancel: threading.Event) -> AsyncIterator[StreamEvent]:
    """``stream``'s events on the running event loop, the stream running in a worker thread. Leaving early sets
    ``cancel`` (generation stops at the next token) and waits for the worker; an error in it is raised here."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    end = object()

    def work() -> None:
        try:
            for event in stream:
                loop.call_soon_threadsafe(queue.put_nowait, event)
                if cancel.is_set():
                    break
        except BaseException as exc:  # handed to the consumer
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        else:
            loop.call_soon_threadsafe(queue.put_nowait, end)
        finally:
            stream.close()

    worker = loop.run_in_executor(None, work)
    try:
        while (item := await queue.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancel.set()
        await asyncio.wait([worker])


__all__ = ["AnswerStream", "events_in_thread"]
