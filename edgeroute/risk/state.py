"""The risk control's rows, in the trace store's SQLite file (owner ``risk``), per model key.

``risk_answers`` holds one row per locally judged answer: its confidence, whether it was accepted, the probability
``pi`` with which it is labelled (1 for an escalation, the audit rate for an accepted answer, 0 when it may not be
audited), and its label once known. ``risk_control`` holds the threshold in force, the epoch and the drift state;
``risk_history`` every change of threshold. Each write is one transaction, so a label acknowledged is on disk.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Optional

from ..migrations import Migration, has_table, statements
from ..store import TraceStore

MIGRATIONS = (Migration("001-risk-tables", """
CREATE TABLE risk_answers (
    answer_id    TEXT PRIMARY KEY,
    key          TEXT NOT NULL,     -- model sha256[:32] ':' confidence id
    epoch        INTEGER NOT NULL,
    created      REAL NOT NULL,     -- unix seconds
    confidence   REAL NOT NULL,
    threshold    REAL NOT NULL,     -- in force when it was judged
    accepted     INTEGER NOT NULL,
    pi           REAL NOT NULL,     -- probability of being labelled: 1 escalated, audit rate accepted, 0 ineligible
    novel        INTEGER,           -- 1 / 0 / NULL (no novelty map)
    status       TEXT NOT NULL,     -- unlabelled | pending | labelled | dropped | ineligible
    wrong        INTEGER,           -- 1 / 0 once labelled
    label_source TEXT,              -- escalation | audit | judge | feedback
    why          TEXT,
    audit_ms     REAL,
    audit_usd    REAL,
    audit_j      REAL,
    audit_tokens INTEGER
);
CREATE INDEX risk_answers_key ON risk_answers(key, epoch);
CREATE TABLE risk_control (
    key       TEXT PRIMARY KEY,
    threshold REAL NOT NULL,
    source    TEXT NOT NULL,
    epoch     INTEGER NOT NULL,
    drift     TEXT,                 -- why the drift flag is up, or NULL
    revision  INTEGER NOT NULL,     -- bumped when a processed label changes (feedback): recompute
    updated   REAL NOT NULL,
    epsilon   REAL NOT NULL,        -- the accepted-answer error held, and delta
    delta     REAL NOT NULL,
    audit_rate REAL NOT NULL
);
CREATE TABLE risk_history (
    key       TEXT NOT NULL,
    created   REAL NOT NULL,
    old       REAL,
    new       REAL NOT NULL,
    why       TEXT NOT NULL,
    estimate  REAL,
    upper     REAL,
    lower     REAL,
    labels    INTEGER
);
""", has_table("risk_answers")),)

#: Row statuses that no longer change, and so may be folded into the bounds.
RESOLVED = ("unlabelled", "labelled", "dropped", "ineligible")


class RiskState:
    """Reads and writes the risk tables of ``store``."""

    def __init__(self, store: TraceStore) -> None:
        self.store = store
        store.migrate("risk", MIGRATIONS)

    def reset(self, key: str) -> None:
        """Forget ``key``'s rows (a damaged state); tables that are missing or unusable are made anew."""
        try:
            with self.store.transaction() as conn:
                for table in ("risk_answers", "risk_control", "risk_history"):
                    conn.execute(f"DELETE FROM {table} WHERE key = ?", (key,))
                return
        except Exception:  # noqa: BLE001 - a table is missing or damaged: rebuild all three
            pass
        with self.store.transaction() as conn:
            for table in ("risk_answers", "risk_control", "risk_history"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in statements(MIGRATIONS[0].sql):
                conn.execute(statement)

    def add(self, row: dict[str, Any]) -> None:
        cols = ", ".join(row)
        marks = ", ".join(f":{c}" for c in row)
        with self.store.transaction() as conn:
            conn.execute(f"INSERT OR REPLACE INTO risk_answers ({cols}) VALUES ({marks})", row)

    def label(self, answer_id: str, wrong: Optional[bool], source: str, **audit: Any) -> None:
        """The label of ``answer_id`` (None: it could not be told, the row is dropped from the bounds)."""
        status = "dropped" if wrong is None else "labelled"
        sets = ", ".join(f"{k} = :{k}" for k in audit)
        with self.store.transaction() as conn:
            conn.execute(f"UPDATE risk_answers SET status = :status, wrong = :wrong, label_source = :source"
                         f"{', ' + sets if sets else ''} WHERE answer_id = :id",
                         {"status": status, "wrong": None if wrong is None else int(wrong), "source": source,
                          "id": answer_id, **audit})

    def override(self, answer_id: str, wrong: bool) -> Optional[str]:
        """User feedback replaces the grader's label of a labelled (or dropped) sampled row; returns its key
        when a processed label changed (the bounds are then recomputed), else None. Rows that were never
        sampled keep no label: feedback that only some answers get is not a random sample."""
        with self.store.transaction() as conn:
            row = conn.execute("SELECT key, status, wrong FROM risk_answers WHERE answer_id = ?",
                               (answer_id,)).fetchone()
            if row is None or row[1] not in ("labelled", "dropped", "pending"):
                return None
            conn.execute("UPDATE risk_answers SET status = 'labelled', wrong = ?, label_source = 'feedback' "
                         "WHERE answer_id = ?", (int(wrong), answer_id))
            if row[1] == "labelled" and bool(row[2]) == wrong:
                return None
            conn.execute("UPDATE risk_control SET revision = revision + 1 WHERE key = ?", (row[0],))
            return str(row[0])

    def rows(self, key: str, epoch: int, after: int = 0) -> Iterator[tuple[Any, ...]]:
        """(rowid, confidence, pi, status, wrong, novel, created) of ``key``'s rows in ``epoch`` after ``after``."""
        with self.store.transaction() as conn:
            found = conn.execute("SELECT rowid, confidence, pi, status, wrong, novel, created FROM risk_answers "
                                 "WHERE key = ? AND epoch = ? AND rowid > ? ORDER BY rowid",
                                 (key, epoch, after)).fetchall()
        return iter(found)

    def expire(self, key: str, older_than: float) -> None:
        """Pending audits started before ``older_than`` (their process died): dropped."""
        with self.store.transaction() as conn:
            conn.execute("UPDATE risk_answers SET status = 'dropped', why = 'audit never finished' "
                         "WHERE key = ? AND status = 'pending' AND created < ?", (key, older_than))

    def control(self, key: str) -> Optional[tuple[float, str, int, Optional[str], int]]:
        """(threshold, source, epoch, drift, revision) of ``key``, or None."""
        with self.store.transaction() as conn:
            row = conn.execute("SELECT threshold, source, epoch, drift, revision FROM risk_control WHERE key = ?",
                               (key,)).fetchone()
        return None if row is None else (float(row[0]), str(row[1]), int(row[2]), row[3], int(row[4]))

    def set_control(self, key: str, threshold: float, source: str, epoch: int, drift: Optional[str],
                    history: Optional[dict[str, Any]] = None, *, settings: tuple[float, float, float]) -> None:
        """The control of ``key`` now (``settings``: epsilon, delta, audit rate), and a history row if given."""
        now = time.time()
        with self.store.transaction() as conn:
            old = conn.execute("SELECT threshold, revision FROM risk_control WHERE key = ?", (key,)).fetchone()
            conn.execute("INSERT OR REPLACE INTO risk_control (key, threshold, source, epoch, drift, revision, "
                         "updated, epsilon, delta, audit_rate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (key, threshold, source, epoch, drift, old[1] if old else 0, now, *settings))
            if history is not None:
                conn.execute("INSERT INTO risk_history (key, created, old, new, why, estimate, upper, lower, "
                             "labels) VALUES (:key, :created, :old, :new, :why, :estimate, :upper, :lower, :labels)",
                             {"key": key, "created": now, "old": old[0] if old else None, "new": threshold,
                              **history})

    def controls(self) -> list[dict[str, Any]]:
        """Every key's control row, and the keys that have answers but no control row yet."""
        with self.store.transaction() as conn:
            cur = conn.execute("SELECT * FROM risk_control ORDER BY key")
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
            keys = [r[0] for r in conn.execute("SELECT DISTINCT key FROM risk_answers ORDER BY key")]
        have = {r["key"] for r in rows}
        return rows + [{"key": k} for k in keys if k not in have]

    def labelled(self, prefix: str) -> list[tuple[float, float, str, Optional[int], float]]:
        """(confidence, pi, status, wrong, created) of every row of the keys starting with ``prefix``, oldest
        first (for a calibration on this device's trace)."""
        with self.store.transaction() as conn:
            return conn.execute("SELECT confidence, pi, status, wrong, created FROM risk_answers WHERE key LIKE ? "
                                "ORDER BY rowid", (prefix.replace("%", "") + "%",)).fetchall()

    def history(self, key: str) -> list[dict[str, Any]]:
        with self.store.transaction() as conn:
            cur = conn.execute("SELECT created, old, new, why, estimate, upper, lower, labels FROM risk_history "
                               "WHERE key = ? ORDER BY created, rowid", (key,))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def spend_today(self, since: float) -> tuple[int, float]:
        """(audits started, US$ spent on them) since ``since`` (unix seconds), across processes."""
        with self.store.transaction() as conn:
            n, usd = conn.execute("SELECT COUNT(*), COALESCE(SUM(audit_usd), 0) FROM risk_answers "
                                  "WHERE (audit_ms IS NOT NULL OR status = 'pending') "
                                  "AND created >= ?", (since,)).fetchone()
        return int(n), float(usd)

    def counts(self, key: str) -> dict[str, int]:
        with self.store.transaction() as conn:
            rows = conn.execute("SELECT status, COUNT(*) FROM risk_answers WHERE key = ? GROUP BY status",
                                (key,)).fetchall()
        return {str(s): int(n) for s, n in rows}
