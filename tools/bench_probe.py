"""Time the shipped probes at run time: ``ProbeSignal.compute`` (feature assembly + one onnxruntime call) and
``PregenProbe.score`` on real generations of the default model; target <= 1 ms per query.

    python tools/bench_probe.py --json
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
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeat", type=int, default=200, help="timed calls per prompt")
    args = ap.parse_args()

    from edgeroute.local.llama import LlamaCppModel
    from edgeroute.signals.probe import PregenProbe, ProbeSignal, model_identity

    model = LlamaCppModel()
    probe = ProbeSignal(**model_identity(model))
    pregen = PregenProbe(**model_identity(model))
    if not (probe.available and pregen.available):
        print(f"probes unavailable: {probe.error or pregen.error}", file=sys.stderr)
        return 1
    post_ms, pre_ms, prefill_ms = [], [], []
    for p in PROMPTS[:10]:
        msgs = [{"role": "user", "content": p}]
        t = time.perf_counter()
        hidden = model.prompt_hidden(msgs)
        prefill_ms.append((time.perf_counter() - t) * 1000)
        gen = model.generate(msgs, max_tokens=32)
        for fn, out in ((lambda: probe.compute(gen, msgs), post_ms), (lambda: pregen.score(hidden, msgs), pre_ms)):
            fn()
            t = time.perf_counter()
            for _ in range(args.repeat):
                fn()
            out.append((time.perf_counter() - t) / args.repeat * 1000)
    model.close()
    result = {
        "probe_ms_per_query": round(statistics.median(post_ms), 4),
        "pregen_ms_per_query": round(statistics.median(pre_ms), 4),
        "pregen_prefill_ms_median": round(statistics.median(prefill_ms), 2),
        "target_ms": 1.0,
        "prompts": len(post_ms),
    }
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
