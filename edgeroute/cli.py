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
    for name in ("model", "cloud_url", "cloud_model", "threshold", "max_tokens", "n_ctx", "routing", "preset"):
        value = getattr(args, name, None)
        if value is not None:
            opts[name] = value
    if args.no_trace:
        opts["trace"] = False
    if getattr(args, "selfref", False):
        opts["selfref"] = True
    return opts


def status_line(answer: Answer) -> str:
    """One line: route, confidence vs threshold, milliseconds, tokens, energy (with its method)."""
    conf = "unknown" if answer.confidence is None else f"{answer.confidence:.2f}"
    thr = "" if answer.threshold is None else f" (threshold {answer.threshold:.2f} {answer.threshold_source.split(':')[0]})"
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
    answer_id: Optional[str] = None
    with Router(**_router_options(args)) as router:
        print("edgeroute chat: empty line or Ctrl-D to quit; /good or /bad rates the last answer", file=sys.stderr)
        while True:
            try:
                line = input("> ")
            except EOFError:
                break
            if not line.strip():
                break
            if line.strip() in ("/good", "/bad"):
                if answer_id is None:
                    print("no answer to rate yet", file=sys.stderr)
                    continue
                learned = router.feedback(answer_id, line.strip() == "/good")
                print(f"[feedback stored{'; the policy learned from it' if learned else ''}]", file=sys.stderr)
                continue
            history.append({"role": "user", "content": line})
            try:
                answer = router.ask(history)
            except EdgeRouteError as exc:
                history.pop()
                print(f"error: {exc}", file=sys.stderr)
                continue
            history.append({"role": "assistant", "content": answer.text})
            answer_id = answer.id
            print(answer.text)
            print(status_line(answer), file=sys.stderr)
    return 0


def _cmd_energy(args: argparse.Namespace) -> int:
    from .energy import build_monitor, probe_backends

    backends = probe_backends()
    monitor = build_monitor(args.meters.split(",") if args.meters else None, gpu=args.gpu)
    selected = [m.name for m in monitor.cpu_meters[:1] + monitor.additive] or ["estimate"]
    report: dict[str, Any] = {"backends": [b.to_dict() for b in backends], "selected": selected,
                              "threads": _thread_choice()}
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
    t = report["threads"]
    print(f"decode threads now: {t['n_threads']} ({t['why']})")
    if "idle" in report:
        idle_w = report["idle"]["watts"]
        print(f"idle power: {idle_w:.2f} W" if idle_w is not None else f"idle power: not measurable ({report['idle']['reason']})")
    return 0


def _thread_choice(window_s: float = 0.3) -> dict[str, Any]:
    """What ``n_threads="auto"`` would choose now, and why: others' load over a short window."""
    import time

    from .local.threads import ThreadPolicy

    policy = ThreadPolicy("auto")
    time.sleep(window_s)
    policy.before()
    return policy.describe()


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench.commands import cmd_bench

    return cmd_bench(args)


def _cmd_models(args: argparse.Namespace) -> int:
    from .local.catalog import list_models, markdown

    models = list_models(args.paths)
    print(json.dumps(models, indent=2) if args.json else markdown(models))
    return 0 if models and all("error" not in m for m in models) else 2


def _cmd_feedback(args: argparse.Namespace) -> int:
    from .router import Router

    with Router(**_router_options(args)) as router:
        learned = router.feedback(args.answer_id, args.verdict == "good", note=args.note)
    print(json.dumps({"answer_id": args.answer_id, "correct": args.verdict == "good", "policy_learned": learned}))
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    if args.from_trace:
        from .risk.commands import cmd_calibrate_trace

        return cmd_calibrate_trace(args)
    from .bench.api import calibrate
    from .bench.runner import RunParams

    cal, path = calibrate(
        data=args.data,
        model=args.model,
        epsilon=args.epsilon,
        delta=args.delta,
        target_cloud_rate=args.target_cloud_rate,
        mode=args.mode,
        params=RunParams(max_tokens=args.max_tokens),
        save=not args.dry_run,
        out=args.out,
        progress=None if args.quiet else sys.stderr,
        selfref=args.selfref,
    )
    out = {
        "threshold": cal.threshold,
        "epsilon": cal.epsilon,
        "delta": cal.delta,
        "n": cal.n,
        "expected_cloud_rate": cal.expected_cloud_rate,
        "mode": cal.mode,
        "empirical_risk": cal.empirical_risk,
        "risk_upper_bound": cal.risk_upper_bound,
        "covers": cal.covers,
        "saved": str(path) if path else None,
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"threshold {cal.threshold:.2f} · {cal.describe()}")
        what = "wrong among accepted answers" if cal.mode == "selective" else "wrong local answers"
        print(f"expected cloud rate {cal.expected_cloud_rate:.2f} · {what} on these data "
              f"{cal.empirical_risk:.3f}" + (f" (upper bound {cal.risk_upper_bound:.3f})" if cal.risk_upper_bound else ""))
        if cal.covers:
            print(f"covers: {cal.covers}")
        if path is None:
            print("not saved (--dry-run)")
        else:
            print(f"saved to {path}" + ("" if args.out else "; Router uses it automatically for this model"))
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from .bench.commands import cmd_fit

    return cmd_fit(args)


def _cmd_risk(args: argparse.Namespace) -> int:
    from .risk.commands import cmd_risk

    return cmd_risk(args)


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    from .router import Router
    from .server import EdgerouteServer

    from .server import ServerLimits

    token = os.environ.get(args.token_env) or None
    limits = ServerLimits(header_timeout_s=args.header_timeout, keep_alive_s=args.keep_alive,
                          body_timeout_s=args.body_timeout, max_body_bytes=args.max_body_bytes,
                          max_concurrent=args.max_concurrent, max_queued=args.max_queued)
    with Router(**_router_options(args)) as router:
        server = EdgerouteServer(router, args.host, args.port, token=token, limits=limits)
        guard = "bearer token required" if token else f"no token (set ${args.token_env} to require one)"
        print(f"edgeroute serve: {server.url}/v1 ({guard}); Ctrl-C to stop", file=sys.stderr, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
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
        p.add_argument("--routing", choices=("threshold", "linucb"), help="threshold (default) or the online policy")
        p.add_argument("--selfref", action="store_true", help="score answers with the Self-REF confidence token too")
        p.add_argument("--preset", help="the online policy's lambdas: balanced, battery-saver, quality-first, cost-saver")

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

    serve = sub.add_parser("serve", help="an OpenAI-compatible endpoint backed by the router")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8765, help="TCP port (default 8765)")
    serve.add_argument("--token-env", default="EDGEROUTE_SERVE_TOKEN",
                       help="environment variable holding the bearer token clients must send (unset: none)")
    limit = serve.add_argument_group("limits (docs/serve.md)")
    from . import _constants as C

    for flag, default, what in (
        ("header-timeout", C.SERVE_HEADER_TIMEOUT_S, "seconds to send a request head"),
        ("keep-alive", C.SERVE_KEEP_ALIVE_S, "seconds an idle connection stays open"),
        ("body-timeout", C.SERVE_BODY_TIMEOUT_S, "seconds to send a body"), ("max-body-bytes", C.SERVE_MAX_BODY_BYTES,
        "largest body"), ("max-concurrent", C.SERVE_MAX_CONCURRENT, "requests answered at once"),
        ("max-queued", C.SERVE_MAX_QUEUED, "requests waiting beyond those; then 429"),
    ):
        limit.add_argument(f"--{flag}", type=type(default), default=default, help=f"{what} (%(default)s)")
    routing_args(serve)
    serve.set_defaults(func=_cmd_serve)

    bench = sub.add_parser("bench", help="measure the local model and the router on labelled data")
    bench.add_argument("what", nargs="?", choices=("report", "policy", "transfer", "privacy", "risk", "handoff",
                                                     "value"),
                       default="report",
                       help="report (default): signals and deferral curves; policy: replay the routing policies; "
                            "transfer: the judgement on families and sources it was not trained on (LOFO, LOSO, "
                            "held-out families, risk-coverage); privacy: the privacy gate's recall and false "
                            "positives on its labelled corpus (--data: your own); risk: a distribution shift replayed "
                            "through the online risk control; handoff: the mid-stream handoff replayed on the "
                            "cached answers (ablation; --save keeps the rule in the calibration); value: the desktop "
                            "tasks, per family: local share, error, quality, latency, joules, US$ (--data: yours)")
    bench.add_argument("--epsilon", type=float,
                       help="transfer: the accepted-answer error for risk-coverage (default 0.1); risk: the error "
                            "to hold (default: the strictest the calibration split certifies)")
    bench.add_argument("--split", help="train | calibration | test | heldout-families | all "
                                       "(default: test for the report, all for policy)")
    bench.add_argument("--data", help="your own JSONL (id, family, question, answers[, split])")
    bench.add_argument("--model", help="GGUF path (default: the default model)")
    bench.add_argument("--limit", type=int, help="only the first N items")
    bench.add_argument("--max-tokens", type=int, default=64, help="longest local answer, tokens (default 64)")
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.add_argument("--out", help="write report.md, report.json and PNG plots to this folder")
    bench.add_argument("--no-cache", action="store_true", help="regenerate every answer")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.add_argument("--save", nargs="?", const="user", default=None, metavar="PATH",
                       help="handoff: write the chosen rule into the calibration (default: yours for this model; "
                            "PATH: that calibration file)")
    bench.add_argument("--cloud-url", help="measure a real cloud (cached) instead of assuming one; bench policy: "
                                           "'stand-in' (its default) starts the loopback llama_cpp.server")
    bench.add_argument("--cloud-model", help="model name to ask the cloud for")
    bench.add_argument("--cloud-accuracy", type=float, default=1.0, help="assumed cloud accuracy (default 1.0)")
    bench.add_argument("--cloud-latency-ms", type=float, default=1500.0, help="assumed cloud latency, ms")
    bench.add_argument("--cloud-price-per-1k", type=float, default=0.0006, help="assumed US$ per 1k tokens")
    bench.add_argument("--cloud-wait-j", type=float, default=0.05, help="assumed device joules per cloud call")
    pol = bench.add_argument_group("policy replay (bench policy)")
    pol.add_argument("--queries", type=int, help="stream length (default: the split's size, at least 2000)")
    pol.add_argument("--seed", type=int, default=0, help="shuffle and exploration seed (default 0)")
    pol.add_argument("--preset", default="balanced", help="lambdas: balanced, battery-saver, quality-first, cost-saver")
    pol.add_argument("--lambda-energy", type=float, help="override the preset's energy weight (per 5 J)")
    pol.add_argument("--lambda-latency", type=float, help="override the preset's latency weight (per second)")
    pol.add_argument("--lambda-cost", type=float, help="override the preset's cost weight (per US$ 0.0001)")
    pol.add_argument("--allow-below-threshold", action="store_true",
                     help="let LinUCB accept answers below the calibrated threshold (no guarantee then)")
    pol.add_argument("--cloud-profile", action="store_true",
                     help="what-if: a stated cloud (--cloud-accuracy; --cloud-latency-ms as the median of a lognormal "
                          "with --cloud-latency-sigma), labelled profile (default: measure the loopback stand-in)")
    pol.add_argument("--cloud-latency-sigma", type=float, default=0.5, help="the profile's lognormal sigma")
    pol.add_argument("--cloud-energy-class", choices=("frontier", "medium", "small"),
                     help="the cloud's row of the energy table (default: guessed from --cloud-model)")
    pol.add_argument("--guardrail", type=float, help="LinUCB's guardrail threshold (default: the calibration's)")
    pol.add_argument("--warmup", type=int, default=500, help="queries before LinUCB is compared (default 500)")
    pol.add_argument("--feedback-rate", type=float, default=1.0, help="share of answers that get feedback")
    pol.add_argument("--price-factor", type=float, default=10.0, help="mid-stream cloud price change (default x10)")
    pol.add_argument("--shift-preset", default="battery-saver", help="mid-stream lambda change (default battery-saver)")
    rk = bench.add_argument_group("risk replay (bench risk)")
    rk.add_argument("--seeds", type=int, default=20, help="replays of the shift per policy (default 20)")
    rk.add_argument("--sim-seeds", type=int, default=200, help="replays for false alarms and coverage (default 200)")
    rk.add_argument("--before", type=int, default=1000, help="queries before the shift (default 1000)")
    rk.add_argument("--after", type=int, default=2000, help="queries after the shift (default 2000)")
    bench.set_defaults(func=_cmd_bench)

    fit = sub.add_parser("fit", help="fit the judgement (map, probes, threshold) to a local GGUF, in a time budget")
    fit.add_argument("--model", required=True, help="the GGUF to fit (a path or a file in the user model directory)")
    fit.add_argument("--budget-minutes", type=float, default=30.0, help="time to spend answering (default 30)")
    fit.add_argument("--data", help="your own labelled JSONL instead of the shipped fit set")
    fit.add_argument("--resume", action="store_true", help="continue an interrupted fit (its answers are cached)")
    fit.add_argument("--epsilon", type=float, default=0.1, help="the calibration's epsilon (default 0.1)")
    fit.add_argument("--delta", type=float, default=0.05, help="the calibration's delta (default 0.05)")
    fit.add_argument("--max-tokens", type=int, default=64, help="longest answer, tokens (default 64)")
    fit.add_argument("--min-per-class", type=int, default=25, help="right and wrong answers a map needs (default 25)")
    fit.add_argument("--probe-margin", type=float, default=0.0,
                     help="LOFO AUROC a hidden-state probe must gain over the map to ship (default 0)")
    fit.add_argument("--json", action="store_true", help="print the report as JSON")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.set_defaults(func=_cmd_fit)

    risk = sub.add_parser("risk", help="the accepted-answer error measured on this device's traffic, and the "
                                       "threshold history")
    risk.add_argument("--model", help="only this GGUF's controls (default: every model in the trace)")
    risk.add_argument("--json", action="store_true", help="print the controls as JSON")
    risk.add_argument("--out", help="write risk.png (the threshold history) to this folder")
    risk.set_defaults(func=_cmd_risk)

    mod = sub.add_parser("models", help="the local models that resolve, and the fitted artifacts of each")
    mod.add_argument("paths", nargs="*", help="more GGUF files to describe")
    mod.add_argument("--json", action="store_true", help="print the list as JSON")
    mod.set_defaults(func=_cmd_models)

    fb = sub.add_parser("feedback", help="say whether an earlier answer (by id) was right; the online policy learns")
    fb.add_argument("answer_id")
    fb.add_argument("verdict", choices=("good", "bad"))
    fb.add_argument("--note", help="free text stored with the feedback")
    routing_args(fb)
    fb.set_defaults(func=_cmd_feedback)

    cal = sub.add_parser("calibrate", help="choose the threshold with a statistical guarantee and save it")
    cal.add_argument("--data", help="your own JSONL (default: the shipped calibration split)")
    cal.add_argument("--model", help="GGUF path (default: the default model)")
    cal.add_argument("--epsilon", type=float, default=0.1,
                     help="max share of all queries with a wrong local answer (--mode selective: of the accepted ones)")
    cal.add_argument("--mode", choices=("risk", "selective"), default="risk",
                     help="risk (default): bound wrong local answers among all queries; selective: among the "
                          "accepted ones")
    cal.add_argument("--delta", type=float, default=0.05, help="allowed probability that the bound fails")
    cal.add_argument("--target-cloud-rate", type=float, help="instead: send about this share to the cloud")
    cal.add_argument("--max-tokens", type=int, default=64, help="longest local answer, tokens (default 64)")
    cal.add_argument("--dry-run", action="store_true", help="compute but do not save")
    cal.add_argument("--out", help="save to this file instead of the user data directory")
    cal.add_argument("--json", action="store_true", help="print threshold, epsilon, delta, n, expected_cloud_rate")
    cal.add_argument("--quiet", action="store_true", help="no progress bar")
    cal.add_argument("--selfref", action="store_true", help="calibrate the confidence of Router(selfref=True)")
    cal.add_argument("--from-trace", action="store_true",
                     help="calibrate on this device's labelled trace (audits, escalations, feedback) instead; "
                          "selective mode (wrong among accepted answers <= epsilon)")
    cal.set_defaults(func=_cmd_calibrate)
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
