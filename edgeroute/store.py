"""The trace: every routing decision and every piece of feedback, in SQLite (WAL) in the user data directory.

Prompts are stored as a SHA-256 hash only, unless the user opts in (``store_prompts=True``). Each write is one
transaction; in WAL mode a committed write survives the process being killed. A file that is not a database is
moved aside (``*.corrupt-<time>``) with a warning and a fresh one is started: nothing is silently overwritten.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

from . import paths
from ._constants import SQLITE_BUSY_TIMEOUT_S
from ._errors import StoreError, UnknownAnswerError
from .migrations import Migration, has_column, has_table, migrate

#: ``PRAGMA user_version`` of files written since schema 2 (kept so older releases refuse nothing they can read).
LEGACY_SCHEMA_VERSION = 2

#: The trace store's own tables, as migrations (``edgeroute.migrations``): 001 is schema 1 of the first
#: releases, 002 the energy columns added in schema 2, 003 the risk column, 004 the conversation columns.
MIGRATIONS = (
    Migration("001-decisions-and-feedback", """
CREATE TABLE decisions (
    id            TEXT PRIMARY KEY,
    created       REAL NOT NULL,          -- unix seconds
    prompt_hash   TEXT NOT NULL,          -- sha256 of the canonical messages JSON
    prompt        TEXT,                   -- only with store_prompts=True
    model         TEXT,                   -- local model fingerprint (sha256)
    route         TEXT NOT NULL,
    confidence    REAL,
    threshold     REAL,
    signals       TEXT NOT NULL,          -- JSON
    latency_ms    TEXT NOT NULL,          -- JSON
    tokens        TEXT NOT NULL,          -- JSON
    energy        TEXT NOT NULL,          -- JSON: total, local and cloud_wait parts, each with its method
    reason        TEXT,
    error         TEXT
);
CREATE TABLE feedback (
    answer_id     TEXT NOT NULL REFERENCES decisions(id),
    created       REAL NOT NULL,
    correct       INTEGER,                -- 1 / 0 / NULL
    note          TEXT
);
CREATE INDEX feedback_answer ON feedback(answer_id);
""", has_table("decisions")),
    Migration("002-energy-columns", """
ALTER TABLE decisions ADD COLUMN joules REAL;          -- device-side total, J (NULL when unmeasured)
ALTER TABLE decisions ADD COLUMN energy_method TEXT    -- counter / power_integrated / os_model / estimated / unmeasured
""", has_column("decisions", "joules")),
    Migration("003-risk-column", """
ALTER TABLE decisions ADD COLUMN risk TEXT             -- JSON: what the confidence rested on (edgeroute.risk)
""", has_column("decisions", "risk")),
    Migration("004-conversation-columns", """
ALTER TABLE decisions ADD COLUMN conversation TEXT;    -- the conversation id (NULL: a lone query)
ALTER TABLE decisions ADD COLUMN turn INTEGER;         -- its 0-based turn index
CREATE INDEX decisions_conversation ON decisions(conversation, turn);
""", has_column("decisions", "conversation")),
)

_JSON_COLUMNS = ("signals", "latency_ms", "tokens", "energy")



class TraceStore:
    """Append-only decision log with feedback. Thread-safe; one connection guarded by a lock."""

    def __init__(self, path: Optional[os.PathLike[str] | str] = None) -> None:
        self.path = Path(path) if path is not None else paths.trace_db()
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = self._open()
        except OSError as exc:
            raise StoreError(f"cannot open the trace store {self.path}: {exc}") from exc

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            warnings.warn(
                f"edgeroute: the trace store {self.path} was unreadable ({exc}); moved it to {aside}",
                RuntimeWarning,
                stacklevel=3,
            )
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > LEGACY_SCHEMA_VERSION:
                raise StoreError(f"{self.path} was written by a newer edgeroute (schema {version})")
            migrate(conn, "store", MIGRATIONS, where=str(self.path))
            conn.execute(f"PRAGMA user_version={LEGACY_SCHEMA_VERSION}")  # what releases before migrations check
        except BaseException:
            conn.close()
            raise
        return conn

    def record(self, row: dict[str, Any]) -> None:
        """Append one decision. ``row`` has the ``decisions`` columns; JSON columns may be dicts."""
        values = dict(row)
        for col in _JSON_COLUMNS:
            values[col] = json.dumps(values.get(col) or {}, sort_keys=True, allow_nan=False)
        if values.get("risk") is not None:
            values["risk"] = json.dumps(values["risk"], sort_keys=True, allow_nan=False)
        cols = ", ".join(values)
        marks = ", ".join(f":{c}" for c in values)
        self._write(f"INSERT INTO decisions ({cols}) VALUES ({marks})", values)

    def add_feedback(self, answer_id: str, *, correct: Optional[bool], note: Optional[str] = None) -> None:
        """Store feedback for ``answer_id``; raise ``UnknownAnswerError`` if the trace has no such answer."""
        with self._reading():
            if self._conn.execute("SELECT 1 FROM decisions WHERE id = ?", (answer_id,)).fetchone() is None:
                raise UnknownAnswerError(f"no answer with id {answer_id!r} in {self.path}")
        flag = None if correct is None else int(bool(correct))
        self._write(
            "INSERT INTO feedback (answer_id, created, correct, note) VALUES (?, ?, ?, ?)",
            (answer_id, time.time(), flag, note),
        )

    def _write(self, sql: str, params: Any) -> None:
        with self.transaction() as conn:
            conn.execute(sql, params)

    def migrate(self, owner: str, migrations: Sequence[Migration]) -> list[str]:
        """Bring another part's tables in this file up to date (``edgeroute.migrations.migrate``): the names of
        the migrations applied now."""
        with self._lock:
            return migrate(self._conn, owner, migrations, where=str(self.path))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``) on the store's connection, for other parts
        that keep their tables in this file (the online policy's state). Rolled back on any error; SQLite errors
        become ``StoreError``. Once the block has returned, the write survives the process being killed."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StoreError(f"cannot write to the trace store {self.path}: {exc}") from exc

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Hold the lock for a read; SQLite errors (a damaged file) become ``StoreError``."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the trace store {self.path}: {exc}") from exc

    def get(self, answer_id: str) -> Optional[dict[str, Any]]:
        """The decision row for ``answer_id`` (JSON columns decoded) with its ``feedback`` list, or None."""
        with self._reading():
            cur = self._conn.execute("SELECT * FROM decisions WHERE id = ?", (answer_id,))
            names = [d[0] for d in cur.description]
            found = cur.fetchone()
            if found is None:
                return None
            fb = self._conn.execute(
                "SELECT created, correct, note FROM feedback WHERE answer_id = ? ORDER BY rowid", (answer_id,)
            ).fetchall()
        row = dict(zip(names, found))
        try:
            for col in _JSON_COLUMNS:
                row[col] = json.loads(row[col])
            if row.get("risk") is not None:
                row["risk"] = json.loads(row["risk"])
        except (TypeError, ValueError) as exc:
            raise StoreError(f"the trace store {self.path} holds a damaged row for {answer_id}: {exc}") from None
        row["feedback"] = [
            {"created": c, "correct": None if v is None else bool(v), "note": n} for c, v, n in fb
        ]
        return row

    def conversation(self, conversation_id: str) -> list[dict[str, Any]]:
        """The rows of one conversation's turns, in turn order (each as ``get`` returns it)."""
        with self._reading():
            ids = [r[0] for r in self._conn.execute(
                "SELECT id FROM decisions WHERE conversation = ? ORDER BY turn, created", (conversation_id,))]
        return [row for row in map(self.get, ids) if row is not None]

    def ids(self) -> Iterator[str]:
        with self._reading():
            rows = self._conn.execute("SELECT id FROM decisions ORDER BY created, rowid").fetchall()
        return iter(r[0] for r in rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "TraceStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
