"""Cost of energy metering per query, as a fraction of the local answer's time, measured in one run.

1. The same prompts through two Routers sharing one model, one with energy metering on and one with it off,
   alternating prompt by prompt: the end-to-end ratio and the mean answer time.
2. The cost of one metering window (``begin`` + ``end``) for this machine's monitor, and for RAPL and battery
   monitors reading fake sysfs trees (what a laptop with counters would pay: the same file reads).
3. Overhead = windows per query x window cost / mean answer time (a local answer has 1 window, an escalated one 2).

    python tools/bench_energy.py --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_overhead import PROMPTS


def fake_tree(root: Path, files: dict[str, object]) -> str:
    for rel, value in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"{value}\n")
    return str(root)


def window_cost_us(monitor: object, n: int) -> float:
    """Microseconds per begin()+end() pair, best of 3 runs of ``n``."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            monitor.end(monitor.begin())  # type: ignore[attr-defined]
        best = min(best, (time.perf_counter() - t) / n * 1e6)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print the result as JSON only")
    ap.add_argument("--n", type=int, default=20, help="prompts per side (default 20)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--windows", type=int, default=2000, help="metering windows timed per monitor")
    args = ap.parse_args()

    from edgeroute import EnergyMonitor, Router
    from edgeroute.energy import build_monitor
    from edgeroute.energy.battery import BatteryMeter
    from edgeroute.energy.rapl import RaplMeter
    from edgeroute.local.llama import LlamaCppModel

    local = LlamaCppModel(n_ctx=2048)
    on = Router(local_only=True, local_model=local, trace=False)
    off = Router(local_only=True, local_model=local, trace=False, energy=False)
    on.ask("warm up", max_tokens=8), off.ask("warm up", max_tokens=8)
    on_s, off_s, joules, tokens = [], [], 0.0, 0
    prompts = (PROMPTS * ((args.n + len(PROMPTS) - 1) // len(PROMPTS)))[: args.n]
    for i, p in enumerate(prompts):
        order = (on, off) if i % 2 == 0 else (off, on)
        for router in order:
            t = time.perf_counter()
            a = router.ask(p, max_tokens=args.max_tokens)
            (on_s if router is on else off_s).append(time.perf_counter() - t)
            if router is on:
                joules += a.energy.joules or 0.0
                tokens += a.tokens["completion"]
                method = f"{a.energy.method} ({a.energy.source})"
        if not args.json:
            print(f"\r{i + 1}/{len(prompts)}", end="", file=sys.stderr)
    if not args.json:
        print(file=sys.stderr)
    mean_answer_s = statistics.mean(on_s)

    tmp = Path(tempfile.mkdtemp(prefix="edgeroute-energy-bench-"))
    rapl_files: dict[str, object] = {}
    for zone, name in [("intel-rapl:0", "package-0"), ("intel-rapl:0:2", "dram"), ("intel-rapl:1", "package-1"),
                       ("intel-rapl:1:2", "dram"), ("intel-rapl-mmio:0", "package-0")]:
        rapl_files |= {f"{zone}/name": name, f"{zone}/energy_uj": 123456789, f"{zone}/max_energy_range_uj": 2**38}
    rapl = RaplMeter(fake_tree(tmp / "powercap", rapl_files))
    battery = BatteryMeter(fake_tree(tmp / "power_supply", {
        "BAT0/type": "Battery", "BAT0/status": "Discharging", "BAT0/energy_now": 40_000_000,
        "BAT0/power_now": 7_000_000, "BAT0/voltage_now": 12_000_000, "AC/type": "Mains",
    }))
    monitors = {"this_machine": build_monitor(), "rapl_fake_sysfs": EnergyMonitor([rapl]),
                "battery_fake_sysfs": EnergyMonitor([battery])}
    window_us = {name: round(window_cost_us(m, args.windows), 1) for name, m in monitors.items()}
    overhead = {
        name: {"local": float(f"{us / 1e6 / mean_answer_s:.4g}"), "escalated": float(f"{2 * us / 1e6 / mean_answer_s:.4g}")}
        for name, us in window_us.items()
    }
    result = {
        "prompts": len(prompts),
        "max_tokens": args.max_tokens,
        "mean_answer_ms": round(mean_answer_s * 1000, 1),
        "energy_on_vs_off_ratio": round(sum(on_s) / sum(off_s), 4),
        "window_us": window_us,
        "overhead_fraction": overhead,
        "target_fraction": 0.01,
        "meets_target": all(v["escalated"] <= 0.01 for v in overhead.values()),
        "joules_per_token": round(joules / max(tokens, 1), 4),
        "method": method,
        "cpu": monitors["this_machine"].estimate.brand,
    }
    print(json.dumps(result, indent=None if args.json else 2))
    on.close(), off.close(), local.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
