"""The benchmark scripts in tools/ run and print what the README quotes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
TOOLS = Path(__file__).resolve().parents[1] / "tools"


def test_bench_energy_prints_overhead_fractions_side_by_side():
    proc = subprocess.run(
        [sys.executable, str(TOOLS / "bench_energy.py"), "--json", "--n", "2", "--max-tokens", "16", "--windows", "20"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["prompts"] == 2 and d["mean_answer_ms"] > 0 and d["energy_on_vs_off_ratio"] > 0
    assert set(d["window_us"]) == {"this_machine", "rapl_fake_sysfs", "battery_fake_sysfs"}
    assert all(v["local"] > 0 and v["escalated"] == pytest.approx(2 * v["local"], rel=0.01)
               for v in d["overhead_fraction"].values())
    assert d["method"].startswith("estimated") and d["joules_per_token"] > 0


def test_bench_probe_prints_milliseconds_per_query():
    proc = subprocess.run([sys.executable, str(TOOLS / "bench_probe.py"), "--json", "--repeat", "5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["prompts"] == 10 and 0 < d["probe_ms_per_query"] and 0 < d["pregen_ms_per_query"]
