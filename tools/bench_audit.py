"""What audits add to the answer path: ``Router.ask`` with audits on against audits off, side by side in one run.

Two Routers share one loaded model and answer the same prompts alternately (threshold 0, so every answer is
accepted locally and is a candidate for an audit). The audited one sends ``--audit-rate`` of them to a cloud that
answers after ``--cloud-ms`` (a remote endpoint: it waits, it does not use this machine's cores), in the
background. Prints the ratio of wall times per ``ask`` (audits on / off); the target is 1.00 within noise.

    python tools/bench_audit.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from bench_overhead import PROMPTS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--audit-rate", type=float, default=0.05)
    ap.add_argument("--cloud-ms", type=float, default=300.0, help="the remote cloud's answer time, ms")
    ap.add_argument("--rounds", type=int, default=3, help="passes over the 30 prompts (default 3)")
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()

    from edgeroute import Router
    from edgeroute.local.llama import LlamaCppModel
    from edgeroute.testing import MockCloud

    class RemoteCloud(MockCloud):
        """A cloud that takes ``--cloud-ms`` to answer, like a remote one (sleeping, not computing)."""

        def complete(self, messages, **kw):  # type: ignore[no-untyped-def]
            time.sleep(args.cloud_ms / 1000.0)
            return super().complete(messages, **kw)

    local = LlamaCppModel()
    root = tempfile.mkdtemp(prefix="edgeroute-audit-")
    cloud = RemoteCloud(default="Paris")
    off = Router(local_model=local, cloud=cloud, threshold=0.0, trace_path=os.path.join(root, "off.db"))
    on = Router(local_model=local, cloud=cloud, threshold=0.0, audit_rate=args.audit_rate,
                trace_path=os.path.join(root, "on.db"))

    def timed(router: Router, p: str) -> float:
        t = time.perf_counter()
        router.ask(p, max_tokens=args.max_tokens)
        return time.perf_counter() - t

    timed(off, "warm up"), timed(on, "warm up")
    s_on = s_off = 0.0
    ratios = []
    for i, p in enumerate(PROMPTS * args.rounds):
        first, second = (on, off) if i % 2 == 0 else (off, on)
        a, b = timed(first, p), timed(second, p)
        t_on, t_off = (a, b) if first is on else (b, a)
        s_on, s_off = s_on + t_on, s_off + t_off
        ratios.append(t_on / t_off)
    on._pipeline.parts.risk.auditor.wait(30)
    counts = on._pipeline.parts.risk.state.counts(on._pipeline.parts.risk.control.key)
    result = {"asks_each": len(ratios), "audit_rate": args.audit_rate, "cloud_ms": args.cloud_ms,
              "ratio_on_off": round(s_on / s_off, 4), "median_prompt_ratio": round(statistics.median(ratios), 4),
              "on_s": round(s_on, 3), "off_s": round(s_off, 3), "audited_rows": counts}
    print(json.dumps(result, indent=None if args.json else 2))
    on.close(), off.close(), local.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
