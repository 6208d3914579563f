"""Cold start, as a whole process: import, load the default model and give the first answer, edgeroute against plain
llama-cpp-python, side by side.

    python tools/bench_startup.py [--runs 5] [--max-tokens 16] [--json]

Each run starts a fresh interpreter; the two kinds alternate, so a machine that slows down during the run slows
both. Plain: ``import llama_cpp``, ``Llama(model, n_ctx=2048)`` (the model's path passed in, so no edgeroute code
runs; extra buffer types off on AMX CPUs, as edgeroute loads them), one greedy ``create_chat_completion``. edgeroute:
``from edgeroute import Router``, ``Router(local_only=True)`` (the probe, the pre-generation probe, the perplexity
map, the calibration, the energy monitor, the SQLite trace, the engine's golden check), one ``ask``. Both answer the
same question with the same ``max_tokens``. ``ratio`` is the median edgeroute time over the median plain time
(target <= 1.10). Each process also reports its own stage times (import / load / first answer).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

QUESTION = "What is the capital of France?"

PLAIN = """
import json, time, sys
t0 = time.perf_counter()
import llama_cpp
t1 = time.perf_counter()
if sys.argv[4] == "1":  # an AMX CPU: extra buffer types off, as edgeroute does (llama.cpp 0.3.36 crashes otherwise)
    import llama_cpp.llama_cpp as native
    defaults = native.llama_model_default_params
    def params():
        p = defaults()
        p.use_extra_bufts = False
        return p
    native.llama_model_default_params = params
llm = llama_cpp.Llama(sys.argv[3], n_ctx=2048, verbose=False)
t2 = time.perf_counter()
out = llm.create_chat_completion([{"role": "user", "content": sys.argv[1]}], max_tokens=int(sys.argv[2]),
                                 temperature=0.0)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "answer_s": t3 - t2, "text": out["choices"][0]["message"]["content"]}))
"""

EDGEROUTE = """
import json, time, sys
t0 = time.perf_counter()
from edgeroute import Router
t1 = time.perf_counter()
router = Router(local_only=True)
t2 = time.perf_counter()
answer = router.ask(sys.argv[1], max_tokens=int(sys.argv[2]))
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "answer_s": t3 - t2, "text": answer.text}))
"""


def run(code: str, max_tokens: int, env: dict[str, str]) -> dict[str, float]:
    import time

    from edgeroute.local.native import cpu_has_amx
    from edgeroute.local.resolve import default_model_path

    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, QUESTION, str(max_tokens), str(default_model_path()),
                           "1" if cpu_has_amx() else "0"], capture_output=True, text=True, env=env, timeout=600,
                          check=True)
    wall = time.perf_counter() - t
    stages = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, **stages}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEROUTE_")}
        env.update(EDGEROUTE_DATA_DIR=str(Path(tmp) / "data"), EDGEROUTE_CONFIG=str(Path(tmp) / "none.toml"))
        run(PLAIN, args.max_tokens, env)  # warm the page cache for both (the model file, the libraries)
        run(EDGEROUTE, args.max_tokens, env)
        plain, ours = [], []
        for _ in range(args.runs):
            plain.append(run(PLAIN, args.max_tokens, env))
            ours.append(run(EDGEROUTE, args.max_tokens, env))

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    report = {
        "runs": args.runs, "max_tokens": args.max_tokens,
        "plain": {k: round(med(plain, k), 3) for k in ("wall_s", "import_s", "load_s", "answer_s")},
        "edgeroute": {k: round(med(ours, k), 3) for k in ("wall_s", "import_s", "load_s", "answer_s")},
        "same_answer": all(p["text"] == o["text"] for p, o in zip(plain, ours)),
    }
    report["ratio"] = round(report["edgeroute"]["wall_s"] / report["plain"]["wall_s"], 3)
    report["ratios_per_run"] = [round(o["wall_s"] / p["wall_s"], 3) for p, o in zip(plain, ours)]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        p, o = report["plain"], report["edgeroute"]
        print(f"cold start, median of {args.runs} (s): plain {p['wall_s']} (import {p['import_s']}, load "
              f"{p['load_s']}, answer {p['answer_s']}); edgeroute {o['wall_s']} (import {o['import_s']}, load "
              f"{o['load_s']}, answer {o['answer_s']}); ratio {report['ratio']} (target <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
