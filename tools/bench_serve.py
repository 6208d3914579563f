"""What ``edgeroute serve`` adds over calling ``Router.ask`` directly, measured side by side in one process.

The same prompts (local answers: the real default model, ``local_only``) go to ``Router.ask`` and, alternating prompt
by prompt so machine noise hits both alike, to the endpoint over HTTP (a kept-open httpx connection, non-streaming).
Each run prints p50 / p95 latency and requests per second of both and the ratio of the p50s; the summary is the median
ratio over ``--runs`` runs with its spread. It also measures the time to the first content chunk of a streamed
local answer in ``hold`` mode (the default: the text is sent once the answer is accepted) and in ``live`` mode.

    python tools/bench_serve.py --runs 5 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

PROMPTS = [
    "What is the capital of France?", "What is 17 + 25?", "Name three primary colours.",
    "What is the chemical symbol for sodium?", "Who wrote Romeo and Juliet?", "How many days are in a leap year?",
    "Translate 'thank you' into Spanish.", "What is the boiling point of water in Celsius?",
    "Give a synonym for 'happy'.", "What is the largest planet in the solar system?",
    "Write one sentence about the sea.", "What is 9 times 8?",
]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def first_chunk_ms(client, url: str, prompt: str, mode: str, max_tokens: int) -> float:
    t = time.perf_counter()
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "stream": True,
            "edgeroute": {"stream": mode}}
    out = None
    with client.stream("POST", url, json=body) as r:
        for line in r.iter_lines():  # read to the end: the connection is reused
            if out is None and line.startswith("data: {") and '"content": "' in line and '"content": ""' not in line:
                out = (time.perf_counter() - t) * 1000.0
    if out is None:
        raise RuntimeError("no content chunk")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import httpx

    from edgeroute import Router
    from edgeroute.server import EdgerouteServer

    trace = os.path.join(tempfile.mkdtemp(prefix="edgeroute-bench-serve-"), "t.db")
    router = Router(local_only=True, trace_path=trace)
    server = EdgerouteServer(router, port=0)
    server.start_background()
    url = server.url + "/v1/chat/completions"
    client = httpx.Client(timeout=120)
    router.ask(PROMPTS[0], max_tokens=args.max_tokens)  # warm: model pages, caches
    client.post(url, json={"messages": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": args.max_tokens})

    runs = []
    for run in range(args.runs):
        direct: list[float] = []
        served: list[float] = []
        for i, prompt in enumerate(PROMPTS):
            order = ("direct", "served") if (i + run) % 2 == 0 else ("served", "direct")
            for side in order:
                t = time.perf_counter()
                if side == "direct":
                    router.ask(prompt, max_tokens=args.max_tokens)
                    direct.append((time.perf_counter() - t) * 1000.0)
                else:
                    r = client.post(url, json={"messages": [{"role": "user", "content": prompt}],
                                               "max_tokens": args.max_tokens})
                    r.raise_for_status()
                    served.append((time.perf_counter() - t) * 1000.0)
        row = {"direct_p50_ms": pct(direct, 0.5), "direct_p95_ms": pct(direct, 0.95),
               "served_p50_ms": pct(served, 0.5), "served_p95_ms": pct(served, 0.95),
               "direct_rps": 1000.0 / statistics.mean(direct), "served_rps": 1000.0 / statistics.mean(served)}
        row["p50_ratio"] = row["served_p50_ms"] / row["direct_p50_ms"]
        runs.append(row)
        if not args.json:
            print(f"run {run + 1}: direct p50 {row['direct_p50_ms']:.0f} ms p95 {row['direct_p95_ms']:.0f} ms "
                  f"({row['direct_rps']:.2f} req/s) · served p50 {row['served_p50_ms']:.0f} ms p95 "
                  f"{row['served_p95_ms']:.0f} ms ({row['served_rps']:.2f} req/s) · ratio {row['p50_ratio']:.3f}",
                  file=sys.stderr)
    ttft = {mode: statistics.median(first_chunk_ms(client, url, p, mode, args.max_tokens) for p in PROMPTS[:6])
            for mode in ("hold", "live")}
    ratios = [r["p50_ratio"] for r in runs]
    summary = {"prompts": len(PROMPTS), "runs": runs, "p50_ratio_median": statistics.median(ratios),
               "p50_ratio_min": min(ratios), "p50_ratio_max": max(ratios), "target": 1.05,
               "ttft_ms_median": ttft}
    client.close()
    server.shutdown()
    server.server_close()
    router.close()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"endpoint / direct at p50: median {summary['p50_ratio_median']:.3f} over {args.runs} runs "
              f"({summary['p50_ratio_min']:.3f}-{summary['p50_ratio_max']:.3f}; target <= 1.05)")
        print(f"time to first token (streamed, local answer): hold {ttft['hold']:.0f} ms, live {ttft['live']:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
