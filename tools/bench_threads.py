"""Decode speed on a busy machine: edgeroute's load-aware thread count against plain llama-cpp-python.

    python tools/bench_threads.py [--prompts 8] [--max-tokens 48] [--json]

The same prompts go through, alternating in one process, every variant: edgeroute's engine with
``n_threads="auto"`` (the default), the same engine at each fixed count from 1 to the number of CPUs, and plain
``llama_cpp.Llama`` with its defaults (half the CPUs) and with all CPUs. Under four conditions, each started and
stopped by this script with bounded helper processes:

- ``idle``;
- ``one-core-busy``: one process spinning;
- ``all-half``: one process per CPU, busy half of every 100 ms;
- ``changing``: one core busy, then idle, then busy again, switched between queries.

It prints tokens/s (answer tokens over the call's wall time), edgeroute's ratios to each plain variant and to the
best fixed count for that condition, the counts auto chose, and J/token (estimated: this process's CPU time x the
energy estimate's watts per busy core; no counter on most VMs). Targets: one core busy, auto >= 1.5x plain with all
CPUs and >= 1.0x plain defaults; every condition, auto >= 0.95x the best fixed count.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

PROMPTS = [
    "What is the capital of France?", "Name three primary colours.", "What is 12 times 12?",
    "Who wrote Romeo and Juliet?", "Give a synonym for happy.", "What is the boiling point of water in Celsius?",
    "Spell the word cat backwards.", "How many legs does a spider have?", "What colour is the sky on a clear day?",
    "Name a planet in our solar system.", "What is the opposite of cold?", "Translate hello into Spanish.",
]

SPIN = """
import sys, time
duty, until = float(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while time.monotonic() < until:
    t = time.monotonic()
    while time.monotonic() - t < 0.1 * duty:
        pass
    if duty < 1.0:
        time.sleep(0.1 * (1.0 - duty))
"""


class Load:
    """Helper processes that keep ``n`` CPUs busy ``duty`` of the time, for at most ``limit_s`` seconds."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def set(self, n: int, duty: float = 1.0, limit_s: float = 600.0) -> None:
        self.stop()
        self.procs = [subprocess.Popen([sys.executable, "-c", SPIN, str(duty), str(limit_s)]) for _ in range(n)]
        time.sleep(0.3 if n else 0.0)

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        self.procs = []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import llama_cpp

    from edgeroute.energy.estimate import EstimateMeter
    from edgeroute.local.llama import LlamaCppModel
    from edgeroute.local.native import _native_params, cpu_has_amx

    cpus = os.cpu_count() or 1
    watts = EstimateMeter().entry.watts
    auto = LlamaCppModel()
    path = str(auto.path)
    fixed = {n: LlamaCppModel(path, n_threads=n) for n in range(1, cpus + 1)}
    with _native_params(not cpu_has_amx()):
        plain_default = llama_cpp.Llama(path, n_ctx=2048, verbose=False)  # its own default thread count
        plain_all = llama_cpp.Llama(path, n_ctx=2048, n_threads=cpus, n_threads_batch=cpus, verbose=False)
    prompts = (PROMPTS * 4)[: args.prompts]
    chosen: list[int] = []

    def edgeroute_call(engine: LlamaCppModel) -> Callable[[str], int]:
        def call(q: str) -> int:
            gen = engine.generate([{"role": "user", "content": q}], max_tokens=args.max_tokens)
            if engine is auto:
                chosen.append(gen.n_threads)
            return gen.completion_tokens
        return call

    def plain_call(llm: Any) -> Callable[[str], int]:
        def call(q: str) -> int:
            out = llm.create_chat_completion([{"role": "user", "content": q}], max_tokens=args.max_tokens,
                                             temperature=0.0)
            return int(out["usage"]["completion_tokens"])
        return call

    variants: dict[str, Callable[[str], int]] = {"edgeroute auto": edgeroute_call(auto)}
    variants.update({f"edgeroute {n} thread{'s' if n > 1 else ''}": edgeroute_call(e) for n, e in fixed.items()})
    variants["plain defaults"] = plain_call(plain_default)
    variants[f"plain all {cpus} cpus"] = plain_call(plain_all)

    load = Load()

    def phase(i: int) -> int:  # changing: thirds of the prompts, busy / idle / busy
        return (3 * i) // len(prompts)

    conditions: dict[str, Callable[[int], None]] = {
        "idle": lambda i: load.set(0) if i == 0 else None,
        "one-core-busy": lambda i: load.set(1) if i == 0 else None,
        "all-half": lambda i: load.set(cpus, 0.5) if i == 0 else None,
        "changing": lambda i: load.set(0 if phase(i) == 1 else 1) if i == 0 or phase(i) != phase(i - 1) else None,
    }
    report: dict[str, Any] = {"cpus": cpus, "plain_default_threads": max(multiprocessing.cpu_count() // 2, 1),
                              "max_tokens": args.max_tokens, "prompts": len(prompts), "conditions": {}}
    try:
        for v in variants.values():  # warm every model once, idle
            v(prompts[0])
        for name, setup in conditions.items():
            rates: dict[str, list[float]] = {v: [] for v in variants}
            cpu_s: dict[str, float] = {v: 0.0 for v in variants}
            tokens: dict[str, int] = {v: 0 for v in variants}
            chosen.clear()
            for i, q in enumerate(prompts):
                setup(i)
                order = list(variants)[i % len(variants):] + list(variants)[: i % len(variants)]
                for v in order:
                    c0, t0 = time.process_time(), time.perf_counter()
                    n = variants[v](q)
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                    rates[v].append(n / wall if wall > 0 else 0.0)
                    cpu_s[v] += cpu
                    tokens[v] += n
            load.stop()
            tok_s = {v: round(statistics.fmean(r), 1) for v, r in rates.items()}
            best_fixed = max((v for v in tok_s if v.startswith("edgeroute ") and v != "edgeroute auto"),
                             key=lambda v: tok_s[v])
            ours = tok_s["edgeroute auto"]
            report["conditions"][name] = {
                "tok_s": tok_s,
                "j_per_token_estimated": {v: round(cpu_s[v] * watts / max(tokens[v], 1), 3) for v in variants},
                "auto_chose": chosen[:],
                "best_fixed": best_fixed,
                "auto_vs_best_fixed": round(ours / tok_s[best_fixed], 3),
                "auto_vs_plain_defaults": round(ours / tok_s["plain defaults"], 3),
                "auto_vs_plain_all": round(ours / tok_s[f"plain all {cpus} cpus"], 3),
            }
    finally:
        load.stop()
        auto.close()
        for e in fixed.values():
            e.close()
        plain_default.close()
        plain_all.close()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, c in report["conditions"].items():
            print(f"{name:14s} auto {c['tok_s']['edgeroute auto']:6.1f} tok/s (chose {c['auto_chose']}); "
                  f"x{c['auto_vs_best_fixed']} best fixed ({c['best_fixed']}), x{c['auto_vs_plain_defaults']} plain "
                  f"defaults, x{c['auto_vs_plain_all']} plain all CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
