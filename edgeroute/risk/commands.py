"""The ``edgeroute risk`` and ``edgeroute calibrate --from-trace`` commands: what each prints from its arguments."""

from __future__ import annotations

import argparse
import json


def cmd_risk(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .report import model_sha, risk_summary, write_history_plot
    from ..store import TraceStore

    with TraceStore() as store:
        summary = risk_summary(store, model_sha(args.model) if args.model else None)
    plot = str(write_history_plot(summary, Path(args.out))) if args.out else None
    if args.json:
        print(json.dumps({"controls": summary, "plot": plot}, indent=2))
        return 0
    if not summary:
        print("no risk rows in the trace yet: answer some queries first (audits: audit_rate in the config)")
    for s in summary:
        bound = ("unknown" if s["estimate"] is None else
                 f"{s['estimate']:.3f} (bounds {s['lower']:.3f}-{s['upper']:.3f})")
        print(f"{s['key']}: threshold {s['threshold']:.2f} [{s['threshold_source']}]")
        print(f"  accepted-answer error {bound}, target <= {s['epsilon']:g} (delta {s['delta']:g}); "
              f"{s['labels']} labels of {s['answers']} answers, epoch {s['epoch']}; status {s['status']}: {s['why']}")
        a = s["audits"]
        print(f"  audits: {a['calls']} calls, US${a['usd']:.4f}" + (f", {a['mean_ms']:.0f} ms mean" if a["mean_ms"] else "")
              + f" · rows {s['rows']}" + (f" · drift: {s['drift']}" if s["drift"] else ""))
        for h in s["history"]:
            print(f"  {time_text(h['created'])}: {h['old']} -> {h['new']}: {h['why']}")
    if plot:
        print(f"plot: {plot}")
    return 0


def time_text(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def cmd_calibrate_trace(args: argparse.Namespace) -> int:
    from ..policy.calibration import save_calibration
    from .report import calibrate_from_trace, model_sha
    from ..store import TraceStore

    sha = model_sha(args.model)
    with TraceStore() as store:
        cal = calibrate_from_trace(store, sha, epsilon=args.epsilon, delta=args.delta)
    from pathlib import Path

    path = None if args.dry_run else save_calibration(cal, Path(args.out) if args.out else None)
    out = {"threshold": cal.threshold, "epsilon": cal.epsilon, "delta": cal.delta, "n": cal.n, "mode": cal.mode,
           "empirical_risk": cal.empirical_risk, "risk_upper_bound": cal.risk_upper_bound, "coverage": cal.coverage,
           "covers": cal.covers, "saved": str(path) if path else None}
    print(json.dumps(out, indent=2) if args.json else
          f"threshold {cal.threshold:.2f} · {cal.describe()}\ncovers: {cal.covers}\n"
          + (f"saved to {path}" if path else "not saved (--dry-run)"))
    return 0
