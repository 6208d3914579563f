"""The monitor (fallbacks, attribution, GPU on top) and the Router's per-query energy, with replayed meters."""

from __future__ import annotations

import json
import threading

import pytest

from edgeroute import EnergyError, EnergyMonitor, Router
from edgeroute.energy import QueryEnergy, build_monitor, combine
from edgeroute.energy.base import EnergyReading
from edgeroute.energy.cputime import CpuClock, CpuSnapshot
from edgeroute.energy.estimate import EstimateMeter
from edgeroute.testing import MockCloud, MockLocalModel, ReplayEnergyMeter
from conftest import run_cli


class ScriptedClock:
    """CPU clocks that advance by fixed steps per snapshot: own +``own`` s, system busy +``busy`` s."""

    def __init__(self, own: float, busy: float | None) -> None:
        self.own, self.busy, self.n = own, busy, 0

    def snapshot(self, scope="process") -> CpuSnapshot:
        self.n += 1
        return CpuSnapshot(self.own * self.n, None if self.busy is None else self.busy * self.n)


NO_SYSTEM_CLOCK = CpuClock(proc_root="/nonexistent")  # no /proc/stat: the whole window is attributed


def test_counter_is_attributed_by_cpu_share():
    meter = ReplayEnergyMeter([0.0, 10.0], times_s=[0.0, 2.0])
    mon = EnergyMonitor([meter], clock=ScriptedClock(own=0.5, busy=1.0))
    r = mon.end(mon.begin())
    assert r.joules == pytest.approx(5.0) and r.method == "counter" and r.source == "replay"
    assert r.attribution == "cpu-share 0.50" and r.kind == "measured"
    assert any("idle power unknown" in w for w in r.warnings)


def test_known_idle_power_is_subtracted_before_the_share():
    meter = ReplayEnergyMeter([0.0, 10.0], times_s=[0.0, 2.0])
    mon = EnergyMonitor([meter], idle_w=1.5, clock=ScriptedClock(own=0.5, busy=1.0))
    r = mon.end(mon.begin())
    assert r.joules == pytest.approx((10.0 - 1.5 * 2.0) * 0.5)
    assert "idle 1.5 W subtracted" in r.attribution and not any("idle power unknown" in w for w in r.warnings)


def test_idle_larger_than_the_reading_clamps_at_zero_never_negative():
    meter = ReplayEnergyMeter([0.0, 1.0], times_s=[0.0, 2.0])
    mon = EnergyMonitor([meter], idle_w=5.0, clock=NO_SYSTEM_CLOCK)
    assert mon.end(mon.begin()).joules == 0.0


def test_meter_failing_at_the_end_falls_back_to_the_estimate_and_says_why():
    meter = ReplayEnergyMeter([0.0, EnergyError("counter vanished")])
    mon = EnergyMonitor([meter], estimate=EstimateMeter("x", watts_per_core=4.0), clock=ScriptedClock(0.25, 1.0))
    r = mon.end(mon.begin())
    assert r.method == "estimated" and r.joules == pytest.approx(1.0)  # 0.25 CPU-s x 4 W
    assert "counter vanished" in r.reason and any("estimated instead" in w for w in r.warnings)


def test_meter_unavailable_at_the_start_uses_the_next_one():
    bad = ReplayEnergyMeter([EnergyError("not discharging")])
    bad.name = "battery"
    good = ReplayEnergyMeter([0.0, 3.0], times_s=[0, 1])
    mon = EnergyMonitor([bad, good], clock=NO_SYSTEM_CLOCK)
    r = mon.end(mon.begin())
    assert r.joules == pytest.approx(3.0) and r.source == "replay"


class GpuReplay(ReplayEnergyMeter):
    name = "gpu-replay"
    additive = True


def test_gpu_meter_adds_to_the_cpu_side():
    cpu = ReplayEnergyMeter([0.0, 2.0], times_s=[0, 1])
    gpu = GpuReplay([0.0, 30.0], times_s=[0, 1], scope="gpu")
    mon = EnergyMonitor([cpu, gpu], clock=NO_SYSTEM_CLOCK)
    r = mon.end(mon.begin())
    assert r.joules == pytest.approx(32.0) and r.scope == "package+gpu" and r.source == "replay+gpu-replay"


def test_combine_takes_the_least_direct_method_and_is_unknown_if_a_part_is():
    a = EnergyReading(1.0, "counter", "rapl", "package", 1.0, 0.1)
    b = EnergyReading(3.0, "estimated", "estimate", "thread", 1.0, 0.5)
    c = combine([a, b])
    assert c.joules == 4.0 and c.method == "estimated" and c.relative_uncertainty == pytest.approx(1.6 / 4)
    assert combine([a, EnergyReading.unmeasured("off")]).joules is None


def test_query_energy_totals_parts_and_per_token():
    q = QueryEnergy(
        local=EnergyReading(2.0, "counter", "rapl", "package"),
        cloud_wait=EnergyReading(0.5, "counter", "rapl", "package"),
        local_tokens=8,
    )
    d = q.to_dict()
    assert d["joules"] == 2.5 and d["method"] == "counter" and d["kind"] == "measured"
    assert d["joules_per_token"] == 0.25 and d["local"]["joules"] == 2.0 and d["cloud_wait"]["joules"] == 0.5


def test_unknown_backend_name_is_a_config_error():
    from edgeroute import ConfigError

    with pytest.raises(ConfigError, match="unknown energy backend"):
        build_monitor(["rapll"])


def test_requested_but_unavailable_backend_is_reported_on_every_reading():
    mon = build_monitor(["nvml"])  # not installed here
    r = mon.end(mon.begin())
    assert r.method == "estimated"
    assert any(w.startswith("nvml requested but unavailable") for w in r.warnings)


# --- Router --------------------------------------------------------------------------------------------------------
SURE = [-0.01] * 3
UNSURE = [-3.0] * 3


def test_router_reports_local_and_cloud_wait_energy_each_with_its_method(tmp_path):
    local, cloud = MockLocalModel(), MockCloud()
    local.enqueue("Lyon maybe perhaps", logprobs=UNSURE)
    meter = ReplayEnergyMeter([0.0, 4.0, 4.0, 5.0], times_s=[0, 1, 1, 2])
    router = Router(
        local_model=local, cloud=cloud, energy_monitor=EnergyMonitor([meter], clock=NO_SYSTEM_CLOCK),
        trace_path=str(tmp_path / "t.db"),
    )
    a = router.ask("What is the capital of France?")
    assert a.route == "cloud"
    assert a.energy.local.joules == pytest.approx(4.0) and a.energy.cloud_wait.joules == pytest.approx(1.0)
    assert a.energy.joules == pytest.approx(5.0) and a.energy.method == "counter"
    assert a.energy.joules_per_token == pytest.approx(4.0 / 3)
    d = json.loads(a.to_json())["energy"]
    assert {"joules", "method", "source", "local", "cloud_wait", "joules_per_token"} <= set(d)
    row = router.store.get(a.id)
    assert row["joules"] == pytest.approx(5.0) and row["energy_method"] == "counter"
    assert row["energy"]["cloud_wait"]["joules"] == pytest.approx(1.0)
    router.close()


def test_router_with_energy_off_says_unmeasured_and_why():
    router = Router(local_model=MockLocalModel(), local_only=True, energy=False, trace=False)
    a = router.ask("hello there")
    assert a.energy.joules is None and a.energy.method == "unmeasured" and "energy=False" in a.energy.reason


def test_concurrent_queries_are_not_charged_for_each_others_generation():
    """Each local window opens only once the model is free: with a counter that rises 1 J per sample and local
    windows that are strictly sequential, every answer gets exactly 1 J."""
    local = MockLocalModel(token_delay_s=0.002)
    meter = ReplayEnergyMeter([float(i) for i in range(200)])
    router = Router(
        local_model=local, local_only=True, trace=False, energy_monitor=EnergyMonitor([meter], clock=NO_SYSTEM_CLOCK)
    )
    answers, errors = [], []

    def worker() -> None:
        try:
            for _ in range(5):
                answers.append(router.ask("one two three four five"))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(answers) == 20
    assert [a.energy.local.joules for a in answers] == [1.0] * 20


def test_cli_energy_json_lists_every_backend_with_a_reason():
    out = run_cli("energy", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    names = [b["name"] for b in data["backends"]]
    assert names == ["rapl", "nvml", "apple", "emi", "battery", "estimate"]
    for b in data["backends"]:
        assert {"name", "available", "reason", "method"} <= set(b) and b["reason"]
    est = data["backends"][-1]
    assert est["available"] and est["method"] == "estimated"
    assert data["selected"]


def test_cli_energy_text_says_why_each_backend_was_rejected():
    out = run_cli("energy")
    assert out.returncode == 0, out.stderr
    assert "estimate" in out.stdout and "rapl" in out.stdout
    assert "powercap" in out.stdout  # the reason RAPL is absent on this VM
