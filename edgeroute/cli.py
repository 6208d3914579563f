"""The ``edgeroute`` command line. Thin: parses arguments, calls the public API, prints."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

from ._errors import EdgeRouteError
from .answer import Answer


def _router_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {"local_only": args.local_only}
    for name in ("model", "cloud_url", "cloud_model", "threshold", "max_tokens", "n_ctx"):
        value = getattr(args, name, None)
        if value is not None:
            opts[name] = value
    if args.no_trace:
        opts["trace"] = False
    return opts


def status_line(answer: Answer) -> str:
    """One line: route, confidence vs threshold, milliseconds, tokens, energy (with its method)."""
    conf = "unknown" if answer.confidence is None else f"{answer.confidence:.2f}"
    thr = "" if answer.threshold is None else f" (threshold {answer.threshold:.2f})"
    toks = f"{answer.tokens.get('prompt', 0)}+{answer.tokens.get('completion', 0)} local"
    if answer.tokens.get("cloud_completion"):
        toks += f", {answer.tokens.get('cloud_prompt', 0)}+{answer.tokens['cloud_completion']} cloud"
    e = answer.energy
    if e.joules is None:
        energy = f"energy unmeasured ({e.reason})"
    else:
        how = e.source if e.method == "estimated" else f"{e.method}, {e.source}"
        per_token = f", {e.joules_per_token:.3f} J/token" if e.joules_per_token is not None else ""
        energy = f"energy {e.joules:.2f} J {e.kind} ({how}{per_token})"
    why = f" · {answer.reason}" if answer.route != "local" or "low_confidence" in answer.flags else ""
    return f"[{answer.route} · confidence {conf}{thr} · {answer.latency_ms.get('total', 0.0):.0f} ms · {toks} tokens · {energy}{why}]"


def _cmd_ask(args: argparse.Namespace) -> int:
    from .router import Router

    with Router(**_router_options(args)) as router:
        if args.json:
            answer = router.ask(args.prompt, private=args.private)
            print(answer.to_json(indent=2))
            return 0
        stream = router.stream(args.prompt, private=args.private)
        for event in stream:
            if event.type == "token":
                print(event.text, end="", flush=True)
            elif event.type == "escalate":
                print(f"\n[escalating to the cloud: {event.text}]", file=sys.stderr, flush=True)
        print()
        assert stream.answer is not None
        print(status_line(stream.answer), file=sys.stderr)
    return 0


def _cmd_chat(args: argparse.Namespace) -> int:
    from .router import Router

    history: list[dict[str, str]] = []
    with Router(**_router_options(args)) as router:
        print("edgeroute chat: empty line or Ctrl-D to quit", file=sys.stderr)
        while True:
            try:
                line = input("> ")
            except EOFError:
                break
            if not line.strip():
                break
            history.append({"role": "user", "content": line})
            try:
                answer = router.ask(history)
            except EdgeRouteError as exc:
                history.pop()
                print(f"error: {exc}", file=sys.stderr)
                continue
            history.append({"role": "assistant", "content": answer.text})
            print(answer.text)
            print(status_line(answer), file=sys.stderr)
    return 0


def _cmd_energy(args: argparse.Namespace) -> int:
    from .energy import build_monitor, probe_backends

    backends = probe_backends()
    monitor = build_monitor(args.meters.split(",") if args.meters else None, gpu=args.gpu)
    selected = [m.name for m in monitor.cpu_meters[:1] + monitor.additive] or ["estimate"]
    report: dict[str, Any] = {"backends": [b.to_dict() for b in backends], "selected": selected}
    if args.idle:
        try:
            idle = monitor.measure_idle(args.idle)
            report["idle"] = {"watts": (idle.joules or 0.0) / (idle.window_s or args.idle), **idle.to_dict()}
        except EdgeRouteError as exc:
            report["idle"] = {"watts": None, "reason": str(exc)}
    monitor.close()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for b in backends:
        mark = "found   " if b.available else "rejected"
        print(f"{mark} {b.name:<9} {b.method:<16} {b.reason}")
    if monitor.meters:
        print(f"per-query energy: measured by {' + '.join(selected)}; estimated when a reading fails")
    else:
        print("per-query energy: estimated (no meter measures on this machine)")
    if "idle" in report:
        idle_w = report["idle"]["watts"]
        print(f"idle power: {idle_w:.2f} W" if idle_w is not None else f"idle power: not measurable ({report['idle']['reason']})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeroute", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def routing_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="GGUF path or a file name in the user model directory (default: SmolLM2-135M)")
        p.add_argument("--local-only", action="store_true", help="never call the cloud")
        p.add_argument("--cloud-url", help="OpenAI-compatible base URL, e.g. https://api.openai.com/v1")
        p.add_argument("--cloud-model", help="model name to request from the cloud")
        p.add_argument("--threshold", type=float, help="escalate when confidence is below this (0..1)")
        p.add_argument("--max-tokens", type=int, help="longest answer, tokens")
        p.add_argument("--n-ctx", type=int, help="local context window, tokens")
        p.add_argument("--no-trace", action="store_true", help="do not write the decision to the trace store")

    ask = sub.add_parser("ask", help="answer one prompt")
    ask.add_argument("prompt")
    ask.add_argument("--json", action="store_true", help="print the Answer as JSON")
    ask.add_argument("--private", action="store_true", help="never send this prompt to the cloud")
    routing_args(ask)
    ask.set_defaults(func=_cmd_ask)

    chat = sub.add_parser("chat", help="interactive chat on stdin")
    routing_args(chat)
    chat.set_defaults(func=_cmd_chat)

    energy = sub.add_parser("energy", help="which energy meters work here, and why the others do not")
    energy.add_argument("--json", action="store_true", help='print {"backends": [...], "selected": [...]}')
    energy.add_argument("--meters", help="comma-separated backends to restrict to, e.g. rapl,battery")
    energy.add_argument("--gpu", action="store_true", help="include GPU meters (NVML)")
    energy.add_argument(
        "--idle", type=float, metavar="SECONDS", help="also measure the idle power over SECONDS (needs a real meter)"
    )
    energy.set_defaults(func=_cmd_energy)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except EdgeRouteError as exc:
        print(f"edgeroute: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
