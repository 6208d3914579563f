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
