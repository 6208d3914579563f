"""Overhead of edgeroute's local path over plain llama-cpp-python, measured side by side in one process.

The same prompts go through ``llama_cpp.Llama.create_chat_completion`` (greedy, same model, context, threads and
max_tokens) and through ``Router(local_only=True).ask`` with every signal on (per-token logprob and entropy,
hidden states, perplexity confidence) and the SQLite trace written, alternating prompt by prompt so that machine
noise hits both sides alike.

    python tools/bench_overhead.py --json
    python tools/bench_overhead.py --watch --json   # the mid-stream handoff's watch: decode with it / without it

``--watch`` compares the engine's decode with the shipped handoff rule's watch attached (its floor set to 0, so it
scores every 8 tokens and never fires) against the same decode without it, alternating prompt by prompt.
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
    "Write one sentence about the sea.", "What is 9 times 8?", "What is the capital of Japan?",
    "Name a mammal that can fly.", "What does CPU stand for?", "Spell 'necessary' backwards.",
    "What is the square root of 81?", "Which ocean is the largest?", "What colour do you get mixing blue and yellow?",
    "Name the first month of the year.", "What is the freezing point of water in Fahrenheit?",
    "Who painted the Mona Lisa?", "What gas do plants absorb from the air?", "How many continents are there?",
    "What is the opposite of 'ancient'?", "Give an example of a prime number greater than 10.",
    "What language is spoken in Brazil?", "Write a haiku about autumn.", "What is 100 divided by 4?",
    "Name a famous composer.",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print the result as JSON only")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--n", type=int, default=len(PROMPTS), help="number of prompts (default 30)")
    ap.add_argument("--model", default=None, help="GGUF path (default: the default model)")
    ap.add_argument("--watch", action="store_true", help="measure the handoff watch's cost on the decode instead")
    args = ap.parse_args()
    if args.watch:
        return watch_overhead(args)

    import llama_cpp

    from edgeroute import Router
    from edgeroute.local.llama import LlamaCppModel, _native_params, cpu_has_amx

    n_ctx, threads = 2048, os.cpu_count() or 1
    local = LlamaCppModel(args.model, n_ctx=n_ctx, n_threads=threads)
    with _native_params(not cpu_has_amx()):
        raw = llama_cpp.Llama(str(local.path), n_ctx=n_ctx, n_threads=threads, verbose=False)
    trace_dir = tempfile.mkdtemp(prefix="edgeroute-bench-")
    router = Router(local_only=True, local_model=local, trace_path=os.path.join(trace_dir, "t.db"))

    def run_raw(p: str) -> tuple[float, int, str]:
        t = time.perf_counter()
        out = raw.create_chat_completion(
            [{"role": "user", "content": p}], max_tokens=args.max_tokens, temperature=0.0
        )
        return time.perf_counter() - t, out["usage"]["completion_tokens"], out["choices"][0]["message"]["content"]

    def run_edge(p: str) -> tuple[float, int, str]:
        t = time.perf_counter()
        a = router.ask(p, max_tokens=args.max_tokens)
        return time.perf_counter() - t, a.tokens["completion"], a.text

    run_raw("warm up"), run_edge("warm up")
    raw_s = edge_s = 0.0
    raw_tok = edge_tok = same = 0
    ratios = []
    prompts = (PROMPTS * ((args.n + len(PROMPTS) - 1) // len(PROMPTS)))[: args.n]
    for i, p in enumerate(prompts):
        first, second = (run_raw, run_edge) if i % 2 == 0 else (run_edge, run_raw)
        r1, r2 = first(p), second(p)
        (rs, rt, rtext), (es, et, etext) = (r1, r2) if first is run_raw else (r2, r1)
        raw_s, edge_s, raw_tok, edge_tok = raw_s + rs, edge_s + es, raw_tok + rt, edge_tok + et
        same += int(rtext.strip() == etext.strip())
        ratios.append(es / rs)
        if not args.json:
            print(f"\r{i + 1}/{len(prompts)}", end="", file=sys.stderr)
    result = {
        "prompts": len(prompts),
        "max_tokens": args.max_tokens,
        "n_threads": threads,
        "ratio": round(edge_s / raw_s, 4),
        "median_prompt_ratio": round(statistics.median(ratios), 4),
        "raw_s": round(raw_s, 3),
        "edgeroute_s": round(edge_s, 3),
        "raw_tok_s": round(raw_tok / raw_s, 1),
        "edgeroute_tok_s": round(edge_tok / edge_s, 1),
        "raw_completion_tokens": raw_tok,
        "edgeroute_completion_tokens": edge_tok,
        "identical_answers": same,
        "signals": "logprob+entropy per token, hidden states, perplexity + ONNX probe confidence, energy, SQLite trace",
    }
    if not args.json:
        print(file=sys.stderr)
    print(json.dumps(result, indent=None if args.json else 2))
    router.close()
    local.close()
    raw.close()
    return 0


def watch_overhead(args: argparse.Namespace) -> int:
    """The engine's decode with the handoff watch (never firing) against without it, prompt by prompt."""
    import dataclasses

    from edgeroute import Router
    from edgeroute.local.base import drain
    from edgeroute.local.llama import LlamaCppModel
    from edgeroute.signals.prefix import HandoffWatch
    from edgeroute.testing import MockCloud

    local = LlamaCppModel(args.model, n_ctx=2048, n_threads=os.cpu_count() or 1)
    router = Router(local_model=local, cloud=MockCloud(), trace=False)
    if router.handoff is None:
        print("no handoff rule for this model (its calibration carries none)", file=sys.stderr)
        return 2
    rule = dataclasses.replace(router.handoff, floor=0.0)  # scores every check, never fires

    def run(p: str, watched: bool) -> tuple[float, int]:
        msgs = [{"role": "user", "content": p}]
        extra = {"watch": HandoffWatch(rule)} if watched else {}
        t = time.perf_counter()
        g = drain(local.stream(msgs, max_tokens=args.max_tokens, **extra))
        return time.perf_counter() - t, g.completion_tokens

    run("warm up", False), run("warm up", True)
    plain_s = watched_s = 0.0
    same = 0
    prompts = (PROMPTS * ((args.n + len(PROMPTS) - 1) // len(PROMPTS)))[: args.n]
    for i, p in enumerate(prompts):
        order = (False, True) if i % 2 == 0 else (True, False)
        got = {w: run(p, w) for w in order}
        plain_s, watched_s = plain_s + got[False][0], watched_s + got[True][0]
        same += int(got[False][1] == got[True][1])
    print(json.dumps({"prompts": len(prompts), "max_tokens": args.max_tokens, "every": rule.every,
                      "ratio": round(watched_s / plain_s, 4), "plain_s": round(plain_s, 3),
                      "watched_s": round(watched_s, 3), "same_token_counts": same}))
    router.close()
    local.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
