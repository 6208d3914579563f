"""The desktop chat example: its session logic with test doubles, and the real window under Xvfb."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeroute import EmptyPromptError, TraceStore
from edgeroute.testing import MockCloud, MockLocalModel

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "examples" / "desktop_chat"
ARTIFACTS = ROOT / "artifacts"
sys.path.insert(0, str(APP_DIR))

import session as chat  # noqa: E402  (the example's own module, imported as the app imports it)

SURE, UNSURE = [-0.01] * 3, [-3.0] * 3


def drain(s: chat.ChatSession, timeout: float = 30.0) -> list[object]:
    """Everything the worker put on the queue, up to DONE (what the window's poll loop would see)."""
    items, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            item = s.events.get(timeout=0.1)
        except queue.Empty:
            continue
        if item is chat.DONE:
            return items
        items.append(item)
    raise AssertionError("the worker never finished")


def make_session(**settings) -> tuple[chat.ChatSession, MockLocalModel, MockCloud]:
    local, cloud = MockLocalModel(token_delay_s=0.001), MockCloud()
    s = chat.ChatSession(chat.Settings(**settings), local_model=local, cloud=cloud)
    return s, local, cloud


def test_answer_streams_off_the_ui_thread_and_updates_totals_and_feedback():
    s, local, _ = make_session(local_only=True)
    local.enqueue("Paris is it", logprobs=SURE)
    s.ask("Capital of France?")
    items = drain(s)
    tokens = [e.text for e in items if e.type == "token"]
    assert "".join(tokens) == "Paris is it"
    answer = s.finish(items[-1])
    assert answer.route == "local" and s.totals.answers == 1 and s.totals.cloud_calls == 0
    assert s.totals.joules == pytest.approx(answer.energy.joules) and "1 answer ·" in s.totals.line()
    assert re.fullmatch(r"local · confidence 0\.\d\d · \d+ ms · \d+\.\d\d J estimated \(estimate:.*\)", chat.describe(answer))
    s.feedback(answer.id, good=False)
    assert s.router.store.get(answer.id)["feedback"][0]["correct"] is False
    assert [m["role"] for m in s.history] == ["user", "assistant"]
    s.close()


def test_unsure_answer_escalates_and_counts_a_cloud_call():
    s, local, cloud = make_session(cloud_url="http://127.0.0.1:9/v1")
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    cloud.enqueue("Paris.")
    s.ask("Capital of France?")
    items = drain(s)
    assert [e.type for e in items if e.type != "token"] == ["escalate", "done"]
    answer = s.finish(items[-1])
    assert answer.route == "cloud" and answer.text == "Paris." and s.totals.cloud_calls == 1
    assert answer.energy.cloud_wait is not None
    s.close()


def test_errors_reach_the_window_as_typed_errors_and_the_question_is_dropped():
    s, _, _ = make_session(local_only=True)
    s.ask("   ")
    items = drain(s)
    assert len(items) == 1 and isinstance(items[0], EmptyPromptError)
    s.forget_last_question()
    assert s.history == []
    s.close()


def test_settings_switch_presets_and_refuse_while_busy():
    s, local, _ = make_session(local_only=True)
    assert s.router.policy.threshold == chat.PRESETS["balanced"]["threshold"]
    s.apply(chat.Settings(local_only=True, preset="quality-first"))
    assert s.router.policy.threshold == 0.7 and s.router.config.max_tokens == 256
    local.token_delay_s = 0.05
    local.enqueue("one two three four five six", logprobs=[-0.1] * 6)
    s.ask("count")
    with pytest.raises(RuntimeError, match="wait for the current answer"):
        s.apply(chat.Settings(local_only=True, preset="battery-saver"))
    s.stop()
    drain(s)
    s.apply(chat.Settings(local_only=True, preset="battery-saver"))
    assert s.router.config.max_tokens == 96
    s.close()
    assert local.calls  # the shared model was used and is still the caller's to close


def test_learning_mode_uses_the_online_policy_and_good_bad_teach_it():
    s, local, _ = make_session(learn=True, preset="battery-saver")
    assert type(s.router.policy).__name__ == "LinUCBPolicy" and s.router.config.preset == "battery-saver"
    local.enqueue("Paris is it", logprobs=SURE)
    s.ask("Capital of France?")
    answer = s.finish(drain(s)[-1])
    assert s.feedback(answer.id, good=True) is True and s.feedback(answer.id, good=False) is False
    s.close()


def test_app_without_a_display_exits_with_a_clear_message():
    pytest.importorskip("tkinter", reason="this Python has no Tk")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run([sys.executable, str(APP_DIR / "app.py"), "--local-only"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "no display" in proc.stderr and "xvfb-run" in proc.stderr
    help_run = subprocess.run([sys.executable, str(APP_DIR / "app.py"), "--help"], capture_output=True, text=True,
                              timeout=60)
    assert help_run.returncode == 0 and "--preset" in help_run.stdout and "battery-saver" in help_run.stdout


# --- the real window -------------------------------------------------------------------------------------------
def start_xvfb() -> tuple[subprocess.Popen[bytes], str]:
    """Start Xvfb on a free display (it picks one and writes its number to a pipe)."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        pytest.skip("Xvfb did not start a display")
    return proc, f":{number}"


def wait_for(log: Path, event: str, timeout: float, app: subprocess.Popen[str]) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text().splitlines():
                record = json.loads(line)
                if record["event"] == event:
                    return record
        if app.poll() is not None:
            raise AssertionError(f"the app exited with {app.returncode}: {app.stderr.read() if app.stderr else ''}")
        time.sleep(0.1)
    raise AssertionError(f"no {event!r} event within {timeout} s")


@pytest.mark.gui
@pytest.mark.slow
def test_window_answers_a_typed_question_and_shows_route_and_energy(tmp_path):
    for tool in ("Xvfb", "xdotool"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian: apt-get install xvfb xdotool); the GUI test needs a display")
    pytest.importorskip("tkinter", reason="this Python has no Tk")
    image_grab = pytest.importorskip("PIL.ImageGrab", reason="Pillow is needed for the screenshot")
    xvfb, display = start_xvfb()
    env = {**os.environ, "DISPLAY": display}
    log = tmp_path / "events.jsonl"
    app = subprocess.Popen(
        [sys.executable, str(APP_DIR / "app.py"), "--local-only", "--event-log", str(log)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(log, "ready", 60, app)
        window = subprocess.run(["xdotool", "search", "--name", "edgeroute chat"], env=env, capture_output=True,
                                text=True, check=True).stdout.split()[0]
        subprocess.run(["xdotool", "windowfocus", "--sync", window], env=env, check=True)
        subprocess.run(["xdotool", "type", "--delay", "15", "What is 2+2?"], env=env, check=True)
        subprocess.run(["xdotool", "key", "Return"], env=env, check=True)
        answer = wait_for(log, "answer", 120, app)
        shown = answer["shown"]  # read back from the Text widget by the app
        assert shown.startswith("local · confidence ")
        assert re.search(r"\d+\.\d\d J estimated \(estimate:[\d.]+W/core\)", shown), shown
        assert answer["status"].startswith("session: 1 answer · ") and "0 cloud calls" in answer["status"]

        subprocess.run(["xdotool", "key", "ctrl+g"], env=env, check=True)  # mark the answer good
        assert wait_for(log, "feedback", 10, app) == {"event": "feedback", "id": answer["id"], "good": True}

        geometry = dict(
            line.split("=") for line in subprocess.run(
                ["xdotool", "getwindowgeometry", "--shell", window], env=env, capture_output=True, text=True,
                check=True).stdout.split()
        )
        x, y, w, h = (int(geometry[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
        shot = image_grab.grab(bbox=(x, y, x + w, y + h), xdisplay=display)
        ARTIFACTS.mkdir(exist_ok=True)
        shot.save(ARTIFACTS / "desktop_chat.png")
        assert len(shot.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 10  # a drawn window, not a blank frame
    finally:
        app.terminate()
        try:
            app.wait(timeout=10)
        except subprocess.TimeoutExpired:
            app.kill()
        xvfb.kill()
        xvfb.wait()
    store = TraceStore(Path(os.environ["EDGEROUTE_DATA_DIR"]) / "traces.sqlite3")
    assert store.get(answer["id"])["feedback"][0]["correct"] is True  # the click reached router.feedback
    store.close()
