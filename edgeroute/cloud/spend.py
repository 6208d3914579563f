"""Hard caps on cloud use that hold across processes: ``cloud_budget_usd_per_day`` (US$ per UTC day) and
``cloud_requests_per_minute``, kept in an SQLite table beside the trace (``spend``).

Every call first *reserves* its worst case in one ``BEGIN IMMEDIATE`` transaction (the prompt's estimated tokens plus
``max_tokens``, priced at ``cloud_price_per_1k_usd``), so two processes cannot both take the last dollar; the answer
then settles the row at what it cost (the reservation stands when the cloud does not report usage). Past a cap the
call is refused with ``CloudBudgetError`` before any request, and ``blocked`` says so, so the Router keeps the
answer local and gives the reason.
"""

from __future__ import annotations

import calendar
import sqlite3
import threading
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any, Callable, Optional

from .._constants import SQLITE_BUSY_TIMEOUT_S
from .._errors import CloudBudgetError, StoreError
from ..messages import Message
from ..migrations import Migration, migrate
from .base import CloudAnswer, CloudBackend

MIGRATIONS = (
    Migration("001-spend", """
CREATE TABLE spend (
    at        REAL NOT NULL,      -- unix seconds of the reservation
    usd       REAL NOT NULL,      -- reserved, then settled, US$
    settled   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX spend_at ON spend(at)
"""),
)


def _day_start(now: float) -> float:
    t = time.gmtime(now)
    return float(calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)))


class SpendLedger:
    """The ``spend`` table in ``path``. ``clock`` is injectable for tests (unix seconds)."""

    def __init__(self, path: Path, *, budget_usd_per_day: Optional[float], requests_per_minute: Optional[int],
                 clock: Callable[[], float] = time.time) -> None:
        self.path, self.budget, self.rpm, self._clock = path, budget_usd_per_day, requests_per_minute, clock
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False,
                                         isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the spend ledger {path}: {exc}") from exc
        migrate(self._conn, "spend", MIGRATIONS, where=str(path))

    def _over(self, conn: sqlite3.Connection, now: float, usd: float) -> str:
        if self.rpm is not None:
            n = conn.execute("SELECT COUNT(*) FROM spend WHERE at > ?", (now - 60.0,)).fetchone()[0]
            if n + 1 > self.rpm:
                return f"cloud_requests_per_minute {self.rpm} reached ({n} in the last minute)"
        if self.budget is not None:
            spent = conn.execute("SELECT COALESCE(SUM(usd), 0) FROM spend WHERE at >= ?",
                                 (_day_start(now),)).fetchone()[0]
            if spent + usd > self.budget or spent >= self.budget:
                return (f"cloud_budget_usd_per_day US${self.budget:g} reached (US${spent:.4f} spent today, UTC; "
                        f"this call could cost up to US${usd:.4f})")
        return ""

    def blocked(self, usd: float = 0.0) -> str:
        """Why a call costing up to ``usd`` would be refused now, or ""."""
        with self._lock:
            try:
                return self._over(self._conn, self._clock(), usd)
            except sqlite3.Error as exc:
                return f"the spend ledger {self.path} cannot be read ({exc}): cloud refused to keep the caps"

    def reserve(self, usd: float) -> int:
        """Reserve ``usd`` for one call; its row id. ``CloudBudgetError`` past a cap (nothing reserved)."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    now = self._clock()
                    why = self._over(self._conn, now, usd)
                    if why:
                        raise CloudBudgetError(why)
                    row = self._conn.execute("INSERT INTO spend (at, usd) VALUES (?, ?)", (now, usd)).lastrowid
                    self._conn.execute("COMMIT")
                    return int(row or 0)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise CloudBudgetError(f"the spend ledger {self.path} cannot be written ({exc}): cloud refused "
                                       "to keep the caps") from exc

    def settle(self, row: int, usd: float) -> None:
        """Record what the call cost (``usd``; None keeps the reservation)."""
        with self._lock:
            try:
                self._conn.execute("UPDATE spend SET usd = ?, settled = 1 WHERE rowid = ?", (usd, row))
            except sqlite3.Error:
                pass  # the reservation (the worst case) stands

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class SpendCapped(CloudBackend):
    """``inner`` behind the ledger's caps. ``price_per_1k_usd`` prices tokens (prompt and answer alike)."""

    def __init__(self, inner: CloudBackend, ledger: SpendLedger, price_per_1k_usd: float) -> None:
        self.inner, self.ledger, self.price = inner, ledger, price_per_1k_usd
        self.name, self.model = inner.name, inner.model
        self.retries, self.breaks = inner.retries, inner.breaks
        self.renews_credentials = inner.renews_credentials
        self.passes = inner.passes

    def _worst(self, messages: Sequence[Message], max_tokens: int) -> float:
        prompt = sum(len(m["content"]) for m in messages) / 3.0 + 8 * len(messages)  # generous: ~3 chars a token
        return self.price * (prompt + max_tokens) / 1000.0

    def _cost(self, answer: CloudAnswer, reserved: float) -> float:
        tokens = answer.prompt_tokens + answer.completion_tokens
        return self.price * tokens / 1000.0 if answer.prompt_tokens else reserved

    def blocked(self) -> str:
        return self.ledger.blocked()

    @property
    def reachable(self) -> bool:
        return self.inner.reachable and not self.ledger.blocked()

    def complete(self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0,
                 timeout_s: Optional[float] = None, **extra: Any) -> CloudAnswer:
        worst = self._worst(messages, max_tokens)
        row = self.ledger.reserve(worst)
        answer = self.inner.complete(messages, max_tokens=max_tokens, temperature=temperature, timeout_s=timeout_s,
                                     **extra)
        self.ledger.settle(row, self._cost(answer, worst))
        return answer

    def stream(self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0,
               timeout_s: Optional[float] = None) -> Generator[str, None, CloudAnswer]:
        worst = self._worst(messages, max_tokens)
        row = self.ledger.reserve(worst)
        answer = yield from self.inner.stream(messages, max_tokens=max_tokens, temperature=temperature,
                                              timeout_s=timeout_s)
        self.ledger.settle(row, self._cost(answer, worst))
        return answer

    def close(self) -> None:
        self.inner.close()  # the ledger is closed by whoever opened it


__all__ = ["SpendCapped", "SpendLedger"]
