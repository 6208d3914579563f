"""The online policy's learned state, kept in the trace store's SQLite file, per local model and decision point.

Each learned update is one row of ``policy_updates`` written in the same transaction that drops the answer from
``policy_pending``: once ``learn`` has returned, the update survives the process being killed. Every
``POLICY_SNAPSHOT_EVERY`` updates the whole LinUCB state is written to ``policy_state`` too, so opening replays at
most that many rows. Several processes may share one file: before writing, each folds in the rows the others wrote.
A saved state that is unreadable, or was learned on another feature layout, is re-initialised with a warning.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from .. import _constants as C
from .._errors import PolicyError
from ..migrations import Migration, has_table
from ..store import TraceStore
from .linucb import LinUCB

MIGRATIONS = (Migration("001-policy-tables", """
CREATE TABLE policy_state (
    key      TEXT PRIMARY KEY,   -- '<local model sha256>:<decision point>'
    features TEXT NOT NULL,      -- JSON list: the context's feature names, in order
    state    TEXT NOT NULL,      -- JSON: LinUCB.to_dict()
    seq      INTEGER NOT NULL,   -- the last update folded into state
    updated  REAL NOT NULL       -- unix seconds
);
CREATE TABLE policy_updates (
    key       TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    answer_id TEXT,
    arm       TEXT NOT NULL,
    context   TEXT NOT NULL,     -- JSON list of floats
    reward    REAL NOT NULL,
    created   REAL NOT NULL,
    PRIMARY KEY (key, seq)
);
CREATE TABLE policy_pending (
    answer_id TEXT PRIMARY KEY,
    created   REAL NOT NULL,
    entry     TEXT NOT NULL      -- JSON: the decisions taken and the outcome, waiting for a quality
);
CREATE INDEX policy_pending_created ON policy_pending(created);
""", has_table("policy_state")),)


@dataclass(frozen=True)
class Update:
    """One learned step: ``arm`` of the bandit ``key`` earned ``reward`` in ``context``."""

    key: str
    arm: str
    context: list[float]
    reward: float


class _Tracked:
    """A bandit kept in the store: the model, its feature layout and the last update it has folded in."""

    def __init__(self, model: LinUCB, features: Sequence[str], seq: int) -> None:
        self.model, self.features, self.seq = model, list(features), seq


class PolicyState:
    """LinUCB bandits and pending decisions persisted in ``store`` (a ``TraceStore``)."""

    def __init__(self, store: TraceStore) -> None:
        self.store = store
        store.migrate("policy", MIGRATIONS)
        self._bandits: dict[str, _Tracked] = {}

    # --- bandits ----------------------------------------------------------------------------------------------
    def attach(self, key: str, features: Sequence[str], fresh: Callable[[], LinUCB]) -> LinUCB:
        """The saved bandit ``key`` (snapshot plus the updates after it), or ``fresh()`` when there is none, or a
        fresh one with a warning when the saved one is unreadable or has another feature layout."""
        with self.store.transaction() as conn:
            tracked = self._load(conn, key, features, fresh)
        self._bandits[key] = tracked
        return tracked.model

    def _load(self, conn: sqlite3.Connection, key: str, features: Sequence[str],
              fresh: Callable[[], LinUCB]) -> _Tracked:
        row = conn.execute("SELECT features, state, seq FROM policy_state WHERE key = ?", (key,)).fetchone()
        if row is None:
            return self._reset(conn, key, features, fresh(), reason=None)
        try:
            saved_features, saved = json.loads(row[0]), json.loads(row[1])
            if saved_features != list(features)[:len(saved_features)]:
                raise PolicyError(f"it was learned on {len(saved_features)} other features ({saved_features[:3]}...)")
            if not isinstance(saved, dict) or saved.get("dim") != len(saved_features):
                raise PolicyError(f"its dimension {saved.get('dim') if isinstance(saved, dict) else '?'} != "
                                  f"{len(saved_features)} saved features")
            if len(saved_features) < len(features):  # features added at the end by a newer release: kept learning
                saved = LinUCB.widened(saved, len(features))
            model = LinUCB.from_dict(saved)
            if model.dim != len(features):
                raise PolicyError(f"its dimension {model.dim} != {len(features)} features")
            tracked = _Tracked(model, features, int(row[2]))
            self._fold(conn, key, tracked)
        except (PolicyError, ValueError, TypeError) as exc:
            return self._reset(conn, key, features, fresh(), reason=str(exc))
        template = fresh()
        tracked.model.alpha = template.alpha  # exploration and change detection may be re-tuned without forgetting
        tracked.model.change = template.change
        return tracked

    def _reset(self, conn: sqlite3.Connection, key: str, features: Sequence[str], model: LinUCB,
               reason: Optional[str]) -> _Tracked:
        if reason is not None:
            warnings.warn(f"edgeroute: the saved policy state {key!r} in {self.store.path} was re-initialised: "
                          f"{reason}", RuntimeWarning, stacklevel=4)
        last = conn.execute("SELECT MAX(seq) FROM policy_updates WHERE key = ?", (key,)).fetchone()[0] or 0
        conn.execute("DELETE FROM policy_updates WHERE key = ?", (key,))
        conn.execute("INSERT OR REPLACE INTO policy_state (key, features, state, seq, updated) VALUES (?, ?, ?, ?, ?)",
                     (key, json.dumps(list(features)), json.dumps(model.to_dict()), last, time.time()))
        return _Tracked(model, features, last)

    def _fold(self, conn: sqlite3.Connection, key: str, tracked: _Tracked) -> None:
        """Apply the updates written after ``tracked.seq`` (by this process before a restart, or by another)."""
        snap = conn.execute("SELECT state, seq FROM policy_state WHERE key = ?", (key,)).fetchone()
        if snap is not None and int(snap[1]) > tracked.seq:  # another process compacted past us: start from its snapshot
            tracked.model, tracked.seq = LinUCB.from_dict(json.loads(snap[0])), int(snap[1])
        rows = conn.execute("SELECT seq, arm, context, reward FROM policy_updates WHERE key = ? AND seq > ? "
                            "ORDER BY seq", (key, tracked.seq)).fetchall()
        dim = tracked.model.dim
        for seq, arm, context, reward in rows:
            x = json.loads(context)
            tracked.model.update(arm, x + [0.0] * (dim - len(x)), float(reward))  # written before features were added
            tracked.seq = int(seq)

    def learn(self, answer_id: Optional[str], updates: Sequence[Update]) -> None:
        """Write ``updates`` and drop ``answer_id`` from the pending decisions, in one transaction; then apply them
        to the bandits. Everything is validated first: a bad update changes nothing, in the file or in memory."""
        for u in updates:
            tracked = self._bandits[u.key]
            tracked.model.context(u.context)
            if u.arm not in tracked.model.arms or not math.isfinite(u.reward):
                raise PolicyError(f"update for {u.key!r}: unknown arm {u.arm!r} or non-finite reward {u.reward!r}")
        now = time.time()
        keys = sorted({u.key for u in updates})
        with self.store.transaction() as conn:
            for key in keys:
                self._fold(conn, key, self._bandits[key])
            seqs = {key: self._bandits[key].seq for key in keys}
            for u in updates:
                seqs[u.key] += 1
                conn.execute("INSERT INTO policy_updates (key, seq, answer_id, arm, context, reward, created) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (u.key, seqs[u.key], answer_id, u.arm, json.dumps(list(u.context)), u.reward, now))
            if answer_id is not None:
                conn.execute("DELETE FROM policy_pending WHERE answer_id = ?", (answer_id,))
        for u in updates:  # committed: now the bandits learn it too
            self._bandits[u.key].model.update(u.arm, u.context, u.reward)
        for key in keys:
            self._bandits[key].seq = seqs[key]
            self._maybe_snapshot(key, now)

    def _maybe_snapshot(self, key: str, now: float) -> None:
        """Every ``POLICY_SNAPSHOT_EVERY`` updates, save the whole state (only an optimisation: the log suffices)."""
        tracked = self._bandits[key]
        with self.store.transaction() as conn:
            saved = conn.execute("SELECT seq FROM policy_state WHERE key = ?", (key,)).fetchone()
            last = conn.execute("SELECT MAX(seq) FROM policy_updates WHERE key = ?", (key,)).fetchone()[0]
            if saved is None or last != tracked.seq or tracked.seq - int(saved[0]) < C.POLICY_SNAPSHOT_EVERY:
                return  # not due, or another process wrote since: it will snapshot
            conn.execute("UPDATE policy_state SET state = ?, seq = ?, updated = ? WHERE key = ?",
                         (json.dumps(tracked.model.to_dict()), tracked.seq, now, key))
            conn.execute("DELETE FROM policy_updates WHERE key = ? AND seq <= ?",
                         (key, tracked.seq - C.POLICY_LOG_KEEP))

    def updates(self, key: str) -> list[tuple[int, Optional[str], str, list[float], float]]:
        """The update log of ``key`` still kept: (seq, answer id, arm, context, reward), oldest first."""
        with self.store.transaction() as conn:
            rows = conn.execute("SELECT seq, answer_id, arm, context, reward FROM policy_updates WHERE key = ? "
                                "ORDER BY seq", (key,)).fetchall()
        return [(s, a, arm, json.loads(c), r) for s, a, arm, c, r in rows]

    # --- decisions waiting for their quality -----------------------------------------------------------------
    def put_pending(self, answer_id: str, entry: dict[str, Any]) -> None:
        """Keep ``entry`` until feedback arrives; drops entries older than the TTL, and the oldest beyond the cap."""
        now = time.time()
        with self.store.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO policy_pending (answer_id, created, entry) VALUES (?, ?, ?)",
                         (answer_id, now, json.dumps(entry, allow_nan=False)))
            conn.execute("DELETE FROM policy_pending WHERE created < ?", (now - C.POLICY_PENDING_TTL_S,))
            conn.execute("DELETE FROM policy_pending WHERE answer_id IN (SELECT answer_id FROM policy_pending "
                         "ORDER BY created DESC LIMIT -1 OFFSET ?)", (C.POLICY_PENDING_MAX,))

    def get_pending(self, answer_id: str) -> Optional[dict[str, Any]]:
        with self.store.transaction() as conn:
            row = conn.execute("SELECT entry, created FROM policy_pending WHERE answer_id = ?",
                               (answer_id,)).fetchone()
        if row is None or row[1] < time.time() - C.POLICY_PENDING_TTL_S:
            return None
        try:
            entry = json.loads(row[0])
        except ValueError:
            return None
        return entry if isinstance(entry, dict) else None

    def drop_pending(self, answer_id: str) -> None:
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM policy_pending WHERE answer_id = ?", (answer_id,))
