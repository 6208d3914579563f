"""Schema migrations for the tables in the trace store's SQLite file, per owner.

Each owner of tables (the trace store, the online policy's state, a plugin) declares its migrations in order;
``migrate`` applies the ones not yet recorded in the one ``schema_migrations`` table, in one transaction. A file
written before migrations were recorded has its tables already: each migration's ``present`` check sees that, and
the migration is marked as applied without running. A file that records a migration this release does not know
was written by a newer edgeroute and is refused.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Optional

from ._errors import StoreError

TABLE = "schema_migrations"


@dataclass(frozen=True)
class Migration:
    """One schema change. ``sql``: statements separated by ``;`` (run one by one inside the transaction);
    ``present``: True when the change is already in the file (a file from before migrations were recorded)."""

    name: str
    sql: str
    present: Optional[Callable[[sqlite3.Connection], bool]] = None


def has_table(table: str) -> Callable[[sqlite3.Connection], bool]:
    return lambda conn: conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                     (table,)).fetchone() is not None


def has_column(table: str, column: str) -> Callable[[sqlite3.Connection], bool]:
    return lambda conn: column in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def statements(sql: str) -> list[str]:
    """The statements of a DDL script (comments dropped; no ``;`` inside literals)."""
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def applied(conn: sqlite3.Connection, owner: str) -> list[str]:
    """The names of ``owner``'s migrations recorded in this file, in the order they were applied."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (owner TEXT NOT NULL, name TEXT NOT NULL, "
                 "applied REAL NOT NULL, how TEXT NOT NULL, PRIMARY KEY (owner, name))")
    return [r[0] for r in conn.execute(f"SELECT name FROM {TABLE} WHERE owner = ? ORDER BY applied, rowid", (owner,))]


def migrate(conn: sqlite3.Connection, owner: str, migrations: Sequence[Migration], *, where: str = "") -> list[str]:
    """Apply ``owner``'s missing migrations in one ``BEGIN IMMEDIATE`` transaction; returns the names applied
    (run or marked). ``conn`` must be in autocommit mode (``isolation_level=None``). ``StoreError`` for a file
    from a newer release or a failed statement (the file is left as it was)."""
    known = [m.name for m in migrations]
    if len(set(known)) != len(known):
        raise ValueError(f"duplicate migration names for {owner}: {known}")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = set(applied(conn, owner))
            newer = sorted(done - set(known))
            if newer:
                raise StoreError(f"{where or 'this file'} was written by a newer edgeroute ({owner} migrations "
                                 f"{newer} are unknown to this release)")
            out = []
            for m in migrations:
                if m.name in done:
                    continue
                if m.present is not None and m.present(conn):
                    how = "marked (already present)"
                else:
                    for statement in statements(m.sql):
                        conn.execute(statement)
                    how = "run"
                conn.execute(f"INSERT INTO {TABLE} (owner, name, applied, how) VALUES (?, ?, ?, ?)",
                             (owner, m.name, time.time(), how))
                out.append(m.name)
            conn.execute("COMMIT")
            return out
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise StoreError(f"cannot migrate {owner}'s tables in {where or 'the trace store'}: {exc}") from exc


__all__ = ["Migration", "applied", "has_column", "has_table", "migrate", "statements"]
