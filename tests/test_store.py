"""The SQLite trace: round trips, corrupt files, concurrent writers, a writer killed mid-run."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from edgeroute import Router, StoreError, TraceStore, UnknownAnswerError
from edgeroute.testing import MockLocalModel


def row(i):
    return {
        "id": f"id-{i}", "created": time.time(), "prompt_hash": "h" * 64, "prompt": None, "model": "m",
        "route": "local", "confidence": 0.5, "threshold": 0.5, "signals": {"mean_nll": 0.1},
        "latency_ms": {"total": 1.0}, "tokens": {"prompt": 1}, "energy": {"joules": None}, "reason": "r",
        "error": None,
    }


def test_rows_and_feedback_survive_close_and_reopen(tmp_path):
    path = tmp_path / "t.db"
    router = Router(local_model=MockLocalModel(), trace_path=str(path), local_only=True)
    a = router.ask("remember me")
    router.feedback(a.id, correct=False, note="wrong")
    router.close()
    with TraceStore(path) as store:
        got = store.get(a.id)
        assert got["route"] == a.route and got["prompt"] is None and len(got["prompt_hash"]) == 64
        assert got["feedback"] == [{"created": got["feedback"][0]["created"], "correct": False, "note": "wrong"}]
        assert got["signals"] == a.signals
        with pytest.raises(UnknownAnswerError):
            store.add_feedback("nope", correct=True)
    import sqlite3

    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_prompt_text_is_stored_only_when_opted_in(tmp_path):
    r = Router(local_model=MockLocalModel(), trace_path=str(tmp_path / "a.db"), local_only=True, store_prompts=True)
    a = r.ask("secret recipe")
    assert "secret recipe" in r.store.get(a.id)["prompt"]


def test_corrupt_file_is_moved_aside_with_a_warning(tmp_path):
    path = tmp_path / "t.db"
    path.write_bytes(b"this is not a sqlite database at all" * 100)
    with pytest.warns(RuntimeWarning, match="moved it to"):
        store = TraceStore(path)
    store.record(row(1))
    assert store.get("id-1")["route"] == "local"
    assert list(tmp_path.glob("t.db.corrupt-*"))


def test_unwritable_location_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError):
        TraceStore(blocker / "sub" / "t.db")


def test_concurrent_writers_lose_nothing(tmp_path):
    store = TraceStore(tmp_path / "t.db")
    threads = [threading.Thread(target=lambda k=k: [store.record(row(k * 100 + i)) for i in range(50)]) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(list(store.ids())) == 200


def test_writer_killed_mid_run_loses_no_acknowledged_row(tmp_path):
    path = tmp_path / "t.db"
    code = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_store import row
        from edgeroute.store import TraceStore
        s = TraceStore({str(path)!r})
        i = 0
        while True:
            s.record(row(i))
            print(i, flush=True)   # acknowledged
            i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    acked = []
    deadline = time.monotonic() + 30
    while len(acked) < 300 and time.monotonic() < deadline:
        acked.append(int(proc.stdout.readline()))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(acked) >= 300
    with TraceStore(path) as store:
        ids = set(store.ids())
    assert {f"id-{i}" for i in acked} <= ids


def test_a_schema_1_file_is_upgraded_in_place_and_keeps_its_rows(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE decisions (id TEXT PRIMARY KEY, created REAL NOT NULL, prompt_hash TEXT NOT NULL, prompt TEXT,
            model TEXT, route TEXT NOT NULL, confidence REAL, threshold REAL, signals TEXT NOT NULL,
            latency_ms TEXT NOT NULL, tokens TEXT NOT NULL, energy TEXT NOT NULL, reason TEXT, error TEXT);
        CREATE TABLE feedback (answer_id TEXT NOT NULL, created REAL NOT NULL, correct INTEGER, note TEXT);
        INSERT INTO decisions VALUES ('old', 1.0, 'h', NULL, 'm', 'local', 0.5, 0.5, '{}', '{}', '{}', '{}', 'r', NULL);
        PRAGMA user_version=1;
        """
    )
    conn.close()
    with TraceStore(path) as store:
        assert store.get("old")["joules"] is None
        store.record({**row(1), "joules": 2.5, "energy_method": "estimated"})
        assert store.get("id-1")["joules"] == 2.5 and store.get("id-1")["energy_method"] == "estimated"
    with TraceStore(path) as store:  # reopening an upgraded file is a no-op
        assert list(store.ids()) == ["old", "id-1"]


FIXTURE = __import__("pathlib").Path(__file__).parent / "data" / "traces-v0.1.0-schema2.sqlite3"


def test_a_file_written_by_the_previous_release_is_upgraded_in_place_and_keeps_everything(tmp_path):
    """tests/data/traces-v0.1.0-schema2.sqlite3 was written by release 0.1.0 before migrations were recorded
    (three answers, two verdicts, the online policy's tables): its tables are marked applied, nothing is lost,
    and the policy's learned updates are still there."""
    import shutil
    import sqlite3

    from edgeroute.migrations import applied
    from edgeroute.policy.state import PolicyState

    path = tmp_path / "old.sqlite3"
    shutil.copy(FIXTURE, path)
    with TraceStore(path) as store:
        ids = list(store.ids())
        assert len(ids) == 3
        verdicts = [fb["correct"] for i in ids for fb in store.get(i)["feedback"]]
        assert verdicts == [True, False]
        assert [store.get(i)["route"] for i in ids] == ["local", "local", "local"]  # as 0.1.0 recorded them
        PolicyState(store)
        conn = sqlite3.connect(path)
        assert applied(conn, "store") == ["001-decisions-and-feedback", "002-energy-columns", "003-risk-column",
                                          "004-conversation-columns"]
        assert applied(conn, "policy") == ["001-policy-tables"]
        hows = dict(conn.execute("SELECT name, how FROM schema_migrations WHERE owner = 'store'").fetchall())
        assert hows["001-decisions-and-feedback"] == hows["002-energy-columns"] == "marked (already present)"
        assert hows["003-risk-column"] == hows["004-conversation-columns"] == "run"  # new columns only
        assert {r[0] for r in conn.execute("SELECT how FROM schema_migrations WHERE owner = 'policy'")} == {
            "marked (already present)"}
        assert store.get(ids[0])["risk"] is None  # rows from before the column read back without one
        assert store.get(ids[0])["conversation"] is None and store.get(ids[0])["turn"] is None
        assert conn.execute("SELECT COUNT(*) FROM policy_updates").fetchone()[0] == 4
        conn.close()
        store.record(row(9))  # and it is writable
        assert store.get("id-9")["route"] == "local"


def test_a_schema_1_file_gets_the_missing_columns_and_a_newer_file_is_refused(tmp_path):
    import sqlite3

    from edgeroute.migrations import applied
    from edgeroute.store import MIGRATIONS

    path = tmp_path / "v1.sqlite3"
    conn = sqlite3.connect(path)
    from edgeroute.migrations import statements

    for statement in statements(MIGRATIONS[0].sql):  # schema 1, as the first releases wrote it
        conn.execute(statement)
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    with TraceStore(path) as store:
        store.record({**row(1), "joules": 1.5, "energy_method": "estimated"})
        assert store.get("id-1")["joules"] == 1.5
    conn = sqlite3.connect(path)
    how = dict(conn.execute("SELECT name, how FROM schema_migrations WHERE owner = 'store'").fetchall())
    assert how == {"001-decisions-and-feedback": "marked (already present)", "002-energy-columns": "run",
                   "003-risk-column": "run", "004-conversation-columns": "run"}
    conn.execute("INSERT INTO schema_migrations VALUES ('store', '003-from-the-future', 0, 'run')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer edgeroute.*003-from-the-future"):
        TraceStore(path)
    assert "003-from-the-future" in applied(sqlite3.connect(path), "store")  # refused, not rewritten


def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path):
    import sqlite3

    from edgeroute.migrations import Migration, applied

    with TraceStore(tmp_path / "t.db") as store:
        bad = [Migration("001-ok", "CREATE TABLE plugin_a (x INTEGER)"),
               Migration("002-bad", "CREATE TABLE plugin_b (x INTEGER); ALTER TABLE nowhere ADD COLUMN y")]
        with pytest.raises(StoreError, match="cannot migrate plugin"):
            store.migrate("plugin", bad)
        conn = sqlite3.connect(tmp_path / "t.db")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "plugin_a" not in tables and "plugin_b" not in tables and applied(conn, "plugin") == []
        conn.close()
        assert store.migrate("plugin", bad[:1]) == ["001-ok"] and store.migrate("plugin", bad[:1]) == []


def test_a_trace_damaged_while_open_gives_store_errors_not_sqlite_errors(tmp_path):
    import sqlite3

    from edgeroute import Router, StoreError
    from edgeroute.testing import MockLocalModel

    path = tmp_path / "t.db"
    router = Router(local_model=MockLocalModel(), local_only=True, trace_path=str(path), energy=False)
    first, second = router.ask("hi"), router.ask("hello there")
    other = sqlite3.connect(path)
    other.execute("UPDATE decisions SET signals = '{not json' WHERE id = ?", (first.id,))
    other.commit()
    with pytest.raises(StoreError, match="damaged row"):
        router.store.get(first.id)
    other.execute("DROP TABLE feedback")
    other.execute("DROP TABLE decisions")
    other.commit()
    other.close()
    for call in (lambda: router.feedback(second.id, True), lambda: router.store.get(second.id),
                 lambda: list(router.store.ids())):
        with pytest.raises(StoreError):
            call()
    answer = router.ask("still answering?")  # the trace write fails; the answer is not lost
    assert answer.text and any("trace not written" in w for w in answer.warnings)
    router.close()


def test_damaged_policy_tables_give_store_errors_and_warnings_not_sqlite_errors(tmp_path):
    import sqlite3

    from edgeroute import Router, StoreError
    from edgeroute.testing import MockCloud, MockLocalModel

    path = tmp_path / "t.db"
    router = Router(local_model=MockLocalModel(), cloud=MockCloud(), routing="linucb", trace_path=str(path),
                    energy=False)
    first = router.ask("hi there")
    other = sqlite3.connect(path)
    for table in ("policy_state", "policy_updates", "policy_pending"):
        other.execute(f"DROP TABLE {table}")
    other.commit()
    other.close()
    answer = router.ask("hello again")
    assert answer.text and any("policy not updated" in w for w in answer.warnings)
    with pytest.raises(StoreError):
        router.feedback(first.id, True)
    router.close()
