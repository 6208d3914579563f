"""What Self-REF costs in latency: the same prompts answered with and without the adapter, side by side.

Two engines of the default model, one with the shipped Self-REF adapter (its LoRA switched on only for the
confidence slot), each behind ``Router(local_only=True)``; prompts alternate which side goes first, so machine noise
hits both alike. Prints the time ratio, the milliseconds added per answer, and how many answers are identical (all
of them should be: the adapter never touches generation).

    python tools/bench_selfref.py --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from bench_overhead import PROMPTS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print the result as JSON only")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--n", type=int, default=len(PROMPTS), help="number of prompts (default 30)")
    ap.add_argument("--manifest", help="a selfref.json (default: the shipped adapter)")
    args = ap.parse_args()

    from edgeroute import Router
    from edgeroute.local.llama import LlamaCppModel
    from edgeroute.local.selfref import SelfRefAdapter

    adapter = SelfRefAdapter.load(args.manifest) if args.manifest else SelfRefAdapter.shipped()
    if adapter is None:
        print("no Self-REF adapter ships with this install", file=sys.stderr)
        return 1
    plain, scored = LlamaCppModel(), LlamaCppModel(selfref=adapter)
    routers = {"plain": Router(local_only=True, local_model=plain, trace=False),
               "selfref": Router(local_only=True, local_model=scored, trace=False)}

    def run(side: str, prompt: str) -> tuple[float, str, float]:
        t = time.perf_counter()
        a = routers[side].ask(prompt, max_tokens=args.max_tokens)
        return time.perf_counter() - t, a.text, a.signals.get("selfref", float("nan"))

    run("plain", "warm up"), run("selfref", "warm up")
    totals = {"plain": 0.0, "selfref": 0.0}
    same, extra_ms, scores = 0, [], []
    prompts = (PROMPTS * ((args.n + len(PROMPTS) - 1) // len(PROMPTS)))[: args.n]
    for i, p in enumerate(prompts):
        order = ("plain", "selfref") if i % 2 == 0 else ("selfref", "plain")
        out = {side: run(side, p) for side in order}
        for side in totals:
            totals[side] += out[side][0]
        same += int(out["plain"][1] == out["selfref"][1])
        extra_ms.append((out["selfref"][0] - out["plain"][0]) * 1000.0)
        scores.append(out["selfref"][2])
        if not args.json:
            print(f"\r{i + 1}/{len(prompts)}", end="", file=sys.stderr)
    result = {
        "prompts": len(prompts),
        "max_tokens": args.max_tokens,
        "ratio": round(totals["selfref"] / totals["plain"], 4),
        "extra_ms_per_answer_mean": round(statistics.mean(extra_ms), 2),
        "extra_ms_per_answer_median": round(statistics.median(extra_ms), 2),
        "plain_ms_per_answer": round(totals["plain"] / len(prompts) * 1000.0, 1),
        "identical_answers": same,
        "selfref_range": [round(min(scores), 4), round(max(scores), 4)],
    }
    if not args.json:
        print(file=sys.stderr)
    print(json.dumps(result, indent=None if args.json else 2))
    for r in routers.values():
        r.close()
    plain.close()
    scored.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
