"""A desktop chat window on edgeroute (Tkinter, standard library only).

    python examples/desktop_chat/app.py                      # cloud from $EDGEROUTE_CLOUD_URL, if set
    python examples/desktop_chat/app.py --local-only --preset battery-saver
    python examples/desktop_chat/app.py --cloud-url http://127.0.0.1:8080/v1 --cloud-model any
    python examples/desktop_chat/app.py --local-only --ask "What is 2 + 2?"   # headless: one answer as JSON

Generation runs in a worker thread (``session.ChatSession``); the window polls the event queue every 30 ms, so it
never freezes. Each answer shows where it ran (local / cloud / local-offline), the confidence, milliseconds and
joules with their method; Good / Bad (or Ctrl+G / Ctrl+B for the last answer) feed ``router.feedback``.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import tkinter as tk
from pathlib import Path
from tkinter import ttk
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: find session.py beside it

from session import DONE, PRESETS, ChatSession, Settings, describe  # noqa: E402

from edgeroute import Answer, EdgeRouteError, StreamEvent  # noqa: E402

POLL_MS = 30
ROUTE_COLOURS = {"local": "#1b7f3b", "cloud": "#1f5fbf", "local-offline": "#b36b00"}


class ChatWindow:
    """The view: widgets only. Everything that is not drawing lives in ``ChatSession``."""

    def __init__(self, root: tk.Tk, session: ChatSession, event_log: Optional[Path] = None) -> None:
        self.root, self.session, self.event_log = root, session, event_log
        self.last_answer: Optional[Answer] = None
        root.title("edgeroute chat")
        root.geometry("760x560")
        root.protocol("WM_DELETE_WINDOW", self.quit)
        self._build_settings()
        self._build_conversation()
        self._build_input()
        root.bind("<Control-g>", lambda e: self._feedback_last(True))
        root.bind("<Control-b>", lambda e: self._feedback_last(False))
        self.question.focus_set()
        root.after(POLL_MS, self.poll)
        root.after(100, lambda: self._log({"event": "ready", "settings": vars_of(session.settings)}))

    # --- layout ---------------------------------------------------------------------------------------------
    def _build_settings(self) -> None:
        s = self.session.settings
        bar = ttk.LabelFrame(self.root, text="Settings")
        bar.pack(fill="x", padx=8, pady=(8, 4))
        self.cloud_url = tk.StringVar(value=s.cloud_url or "")
        self.cloud_model = tk.StringVar(value=s.cloud_model or "")
        self.local_only = tk.BooleanVar(value=s.local_only)
        self.preset = tk.StringVar(value=s.preset)
        ttk.Label(bar, text="Cloud URL").grid(row=0, column=0, sticky="w", padx=4)
        ttk.Entry(bar, textvariable=self.cloud_url, width=34).grid(row=0, column=1, padx=4, pady=2)
        ttk.Label(bar, text="model").grid(row=0, column=2, sticky="w")
        ttk.Entry(bar, textvariable=self.cloud_model, width=14).grid(row=0, column=3, padx=4)
        ttk.Checkbutton(bar, text="Local only", variable=self.local_only).grid(row=0, column=4, padx=4)
        ttk.Label(bar, text="Preset").grid(row=1, column=0, sticky="w", padx=4)
        ttk.Combobox(bar, textvariable=self.preset, values=list(PRESETS), state="readonly", width=14).grid(
            row=1, column=1, sticky="w", padx=4, pady=2
        )
        ttk.Button(bar, text="Apply", command=self.apply_settings).grid(row=1, column=4, padx=4)

    def _build_conversation(self) -> None:
        frame = ttk.Frame(self.root)
        frame.pack(fill="both", expand=True, padx=8)
        self.text = tk.Text(frame, wrap="word", state="disabled", height=20, padx=6, pady=6)
        scroll = ttk.Scrollbar(frame, command=self.text.yview)
        self.text.configure(yscrollcommand=scroll.set)
        self.text.pack(side="left", fill="both", expand=True)
        scroll.pack(side="right", fill="y")
        self.text.tag_configure("user", font=("TkDefaultFont", 10, "bold"), spacing1=8)
        self.text.tag_configure("note", foreground="#666666", font=("TkDefaultFont", 9, "italic"))
        self.text.tag_configure("error", foreground="#b00020")
        self.text.tag_configure("meta", font=("TkDefaultFont", 9), spacing3=4)
        for route, colour in ROUTE_COLOURS.items():
            self.text.tag_configure(f"route-{route}", foreground=colour, font=("TkDefaultFont", 9, "bold"))

    def _build_input(self) -> None:
        frame = ttk.Frame(self.root)
        frame.pack(fill="x", padx=8, pady=4)
        self.question = ttk.Entry(frame)
        self.question.pack(side="left", fill="x", expand=True)
        self.question.bind("<Return>", lambda e: self.send())
        self.send_button = ttk.Button(frame, text="Send", command=self.send)
        self.send_button.pack(side="left", padx=4)
        self.stop_button = ttk.Button(frame, text="Stop", command=self.session.stop, state="disabled")
        self.stop_button.pack(side="left")
        self.status = tk.StringVar(value=self.session.totals.line())
        ttk.Label(self.root, textvariable=self.status, anchor="w", relief="sunken").pack(fill="x", side="bottom")

    # --- actions (UI thread) --------------------------------------------------------------------------------
    def send(self) -> None:
        q = self.question.get().strip()
        if not q or self.session.busy:
            return
        self.question.delete(0, "end")
        self._append(f"You: {q}\n", "user")
        self.text.mark_set("answer_start", "end-1c")
        self.text.mark_gravity("answer_start", "left")
        self.session.ask(q)
        self.send_button.configure(state="disabled")
        self.stop_button.configure(state="normal")
        self.status.set("generating on the device…")

    def apply_settings(self) -> None:
        settings = Settings(
            cloud_url=self.cloud_url.get().strip() or None,
            cloud_model=self.cloud_model.get().strip() or None,
            local_only=self.local_only.get(),
            preset=self.preset.get(),
            learn=self.session.settings.learn,
        )
        try:
            self.session.apply(settings)
        except (EdgeRouteError, RuntimeError) as exc:
            self._append(f"settings not applied: {exc}\n", "error")
            return
        self._append(f"settings: {describe_settings(settings)}\n", "note")
        self._log({"event": "settings", "settings": vars_of(settings)})

    def poll(self) -> None:
        """Drain the worker's events; the only place widgets change while an answer is produced."""
        try:
            while True:
                item = self.session.events.get_nowait()
                if item is DONE:
                    self.send_button.configure(state="normal")
                    self.stop_button.configure(state="disabled")
                elif isinstance(item, EdgeRouteError):
                    self.session.forget_last_question()
                    self._append(f"\nerror: {type(item).__name__}: {item}\n", "error")
                    self.status.set(self.session.totals.line())
                    self._log({"event": "error", "type": type(item).__name__, "message": str(item)})
                else:
                    self._on_event(item)
        except queue.Empty:
            pass
        self.root.after(POLL_MS, self.poll)

    def _on_event(self, event: StreamEvent) -> None:
        if event.type == "token":
            self._append(event.text)
        elif event.type == "escalate":
            self.text.configure(state="normal")
            self.text.delete("answer_start", "end-1c")  # the cloud's answer supersedes the local draft
            self.text.configure(state="disabled")
            self._append(f"[local answer unsure ({event.text}); asking the cloud]\n", "note")
        elif event.type == "done":
            answer = self.session.finish(event)
            self.last_answer = answer
            self._append("\n")
            meta = describe(answer)
            self.text.mark_set("meta_start", "end-1c")
            self.text.mark_gravity("meta_start", "left")
            self._append(f"{answer.route}", f"route-{answer.route}")
            self._append(meta[len(answer.route):] + "  ", "meta")
            self._feedback_buttons(answer)
            self._append("\n")
            self.status.set(self.session.totals.line())
            shown = self.text.get("meta_start", "end-1c").strip()  # read back what the window shows
            self._log({"event": "answer", "id": answer.id, "route": answer.route, "shown": shown,
                       "status": self.status.get(), "energy": answer.energy.to_dict()})

    def _feedback_buttons(self, answer: Answer) -> None:
        for label, good in (("Good", True), ("Bad", False)):
            button = ttk.Button(self.text, text=label, width=5, command=lambda g=good: self._feedback(answer, g))
            self.text.window_create("end-1c", window=button)

    def _feedback(self, answer: Answer, good: bool) -> None:
        try:
            self.session.feedback(answer.id, good)
        except EdgeRouteError as exc:
            self._append(f"feedback not stored: {exc}\n", "error")
            return
        self.status.set(f"{self.session.totals.line()} · marked {'good' if good else 'bad'}")
        self._log({"event": "feedback", "id": answer.id, "good": good})

    def _feedback_last(self, good: bool) -> None:
        if self.last_answer is not None:
            self._feedback(self.last_answer, good)

    def _append(self, text: str, *tags: str) -> None:
        self.text.configure(state="normal")
        self.text.insert("end-1c", text, tags)
        self.text.configure(state="disabled")
        self.text.see("end")

    def _log(self, record: dict[str, Any]) -> None:
        if self.event_log is not None:
            with self.event_log.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def quit(self) -> None:
        self.session.close()
        self.root.destroy()


def vars_of(s: Settings) -> dict[str, Any]:
    return {"cloud_url": s.cloud_url, "cloud_model": s.cloud_model, "local_only": s.local_only, "preset": s.preset,
            "learn": s.learn}


def describe_settings(s: Settings) -> str:
    cloud = "local only" if s.local_only else (s.cloud_url or "no cloud configured")
    how = "learning from Good/Bad" if s.learn else f"threshold {PRESETS[s.preset]['threshold']}"
    return f"{cloud}, preset {s.preset} ({how})"


def ask_headless(settings: Settings, question: str) -> int:
    """One question through ``ChatSession`` without a window: the answer as one JSON line on stdout."""
    try:
        session = ChatSession(settings)
    except EdgeRouteError as exc:
        print(f"desktop_chat: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        session.ask(question)
        while (event := session.events.get(timeout=600)) is not DONE:
            if isinstance(event, EdgeRouteError):
                print(f"desktop_chat: {type(event).__name__}: {event}", file=sys.stderr)
                return 2
            if event.type == "done":
                answer = session.finish(event)
                print(json.dumps({"text": answer.text, "route": answer.route, "confidence": answer.confidence,
                                  "reason": answer.reason, "model": answer.model, "line": describe(answer),
                                  "frozen": bool(getattr(sys, "frozen", False))}))
    finally:
        session.close()
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cloud-url", help="OpenAI-compatible base URL (default: $EDGEROUTE_CLOUD_URL)")
    ap.add_argument("--cloud-model", help="model name to ask the cloud for")
    ap.add_argument("--local-only", action="store_true", help="never call the cloud")
    ap.add_argument("--preset", choices=list(PRESETS), default="balanced", help="energy/cost preset")
    ap.add_argument("--learn", action="store_true", help="learn from Good/Bad (the online LinUCB policy)")
    ap.add_argument("--event-log", type=Path, help="append a JSON line per answer/feedback (for tests and demos)")
    ap.add_argument("--ask", metavar="QUESTION", help="headless: answer QUESTION through the same session, print "
                    "the answer as one JSON line, and exit (no window; also the frozen build's smoke test)")
    args = ap.parse_args(argv)
    settings = Settings(args.cloud_url, args.cloud_model, args.local_only, args.preset, args.learn)
    if args.ask is not None:
        return ask_headless(settings, args.ask)
    try:
        root = tk.Tk()
    except tk.TclError as exc:
        print(f"desktop_chat: no display ({exc}); run it in a desktop session or under xvfb-run", file=sys.stderr)
        return 2
    try:
        session = ChatSession(settings)
    except EdgeRouteError as exc:
        root.destroy()
        print(f"desktop_chat: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    ChatWindow(root, session, args.event_log)
    root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
