"""The decode thread count: a pure choice from cores, performance cores, load and measured rates; the engine
honours an explicit count and changes the count between answers without changing them."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from edgeroute import ConfigError
from edgeroute.local.threads import LoadMeter, ThreadPolicy, Topology, choose_threads, parse_cpu_list, topology

TWO = Topology(logical=2, physical=2)
LAPTOP = Topology(logical=8, physical=4)
HYBRID = Topology(logical=20, physical=14, performance=tuple(range(12)), performance_cores=6)  # 6P (HT) + 8E


@pytest.mark.parametrize("topo, others, rates, expected", [
    (TWO, 0.0, {}, 2),           # idle 2-core machine: both cores (one thread loses ~20 % there)
    (TWO, 1.0, {}, 1),           # one core busy with another program: 2 threads would halve the speed
    (TWO, 0.7, {}, 1),           # a busy program squeezed by our own two threads still counts
    (TWO, 0.3, {}, 2),
    (TWO, 2.0, {}, 1),           # everything busy: still one
    (LAPTOP, 0.0, {}, 4),        # physical cores, not hyper-threads
    (LAPTOP, 2.2, {}, 2),
    (HYBRID, 0.0, {}, 6),        # the performance cores of a hybrid CPU
    (HYBRID, 1.0, {}, 5),
    (TWO, 0.0, {1: 60.0, 2: 40.0}, 1),   # one thread was measured faster under this load
    (TWO, 0.0, {1: 41.0, 2: 40.0}, 2),   # within the margin: keep the free-core count
])
def test_choose_threads_table(topo, others, rates, expected):
    n, why = choose_threads(topo, others, rates)
    assert n == expected and str(n) in why


def test_cpu_lists_and_a_sysfs_topology(tmp_path):
    assert parse_cpu_list("0-3,8,10-11\n") == (0, 1, 2, 3, 8, 10, 11) and parse_cpu_list("") == ()
    cpu = tmp_path / "system" / "cpu"
    for i, (core, freq) in enumerate([(0, 5000), (0, 5000), (1, 5000), (1, 5000), (2, 3000), (3, 3000)]):
        (cpu / f"cpu{i}" / "topology").mkdir(parents=True)
        (cpu / f"cpu{i}" / "topology" / "core_id").write_text(f"{core}\n")
        (cpu / f"cpu{i}" / "topology" / "physical_package_id").write_text("0\n")
        (cpu / f"cpu{i}" / "cpufreq").mkdir()
        (cpu / f"cpu{i}" / "cpufreq" / "cpuinfo_max_freq").write_text(f"{freq}000\n")
    (cpu / "online").write_text("0-5\n")
    t = topology(str(cpu))
    assert (t.logical, t.physical, t.performance, t.performance_cores, t.usable) == (6, 4, (0, 1, 2, 3), 2, 2)
    (tmp_path / "cpu_core").mkdir()
    (tmp_path / "cpu_core" / "cpus").write_text("0-1\n")  # the kernel's own P-core list wins over frequencies
    assert topology(str(cpu)).performance == (0, 1)


def test_explicit_counts_are_kept_and_bad_ones_refused():
    policy = ThreadPolicy(3)
    assert policy.before() == 3 and policy.why == "n_threads set explicitly" and policy.load is None
    with pytest.raises(ConfigError, match="n_threads"):
        ThreadPolicy(0)
    with pytest.raises(ConfigError, match="n_threads"):
        ThreadPolicy("lots")


@pytest.mark.slow
def test_the_load_meter_sees_another_program_and_not_this_one():
    meter = LoadMeter()
    time.sleep(0.4)
    meter.sample()
    baseline = meter.last_window  # whatever else this machine runs
    t = time.monotonic()
    while time.monotonic() - t < 0.6:  # this process's own work is not "others"
        sum(range(10_000))
    meter.sample()
    own = meter.last_window
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"])
    try:
        time.sleep(1.0)
        meter.sample()
        others = meter.last_window
    finally:
        busy.wait()
    assert baseline is not None and own is not None and others is not None
    assert own < baseline + 0.4
    assert others > baseline + 0.6  # one more busy core (less what the scheduler gave the others)


@pytest.mark.slow
def test_the_engine_honours_n_threads_and_a_change_between_answers_keeps_the_answer():
    from edgeroute.local.llama import LlamaCppModel

    messages = [{"role": "user", "content": "Name three primary colours."}]
    fixed = LlamaCppModel(n_threads=1, hidden_states=False)
    try:
        gen = fixed.generate(messages, max_tokens=12)
        assert gen.n_threads == 1 and fixed._lc.llama_n_threads(fixed._llama._ctx.ctx) == 1
    finally:
        fixed.close()
    auto = LlamaCppModel(hidden_states=False)
    try:
        auto.threads.before = lambda: 2  # type: ignore[method-assign]
        a = auto.generate(messages, max_tokens=12)
        auto.threads.before = lambda: 1  # type: ignore[method-assign]
        b = auto.generate(messages, max_tokens=12)
        assert (a.n_threads, b.n_threads) == (2, 1) and auto._lc.llama_n_threads(auto._llama._ctx.ctx) == 1
        assert a.token_ids == b.token_ids == gen.token_ids and a.text == b.text
        np.testing.assert_allclose(a.token_logprobs, b.token_logprobs, atol=1e-3)
    finally:
        auto.close()


def test_measured_energy_weighs_in_only_with_an_energy_weight():
    rates, joules = {1: 50.0, 2: 60.0}, {1: 0.10, 2: 0.20}  # one thread: 17 % slower, half the joules
    assert choose_threads(TWO, 0.0, rates, joules, energy_weight=0.0)[0] == 2
    assert choose_threads(TWO, 0.0, rates, joules, energy_weight=0.1)[0] == 2   # quality-first-like
    n, why = choose_threads(TWO, 0.0, rates, joules, energy_weight=10.0)        # battery-saver
    assert n == 1 and "J/token measured" in why
    assert choose_threads(TWO, 0.0, rates, {}, energy_weight=10.0)[0] == 2       # no counter: no energy term


def test_the_preset_sets_the_engines_energy_weight(monkeypatch):
    from edgeroute import assembly, config

    made = []

    class Engine:
        def __init__(self, *a, **kw):
            self.threads = ThreadPolicy(kw.get("n_threads", "auto"))
            made.append(self)

    monkeypatch.setattr("edgeroute.local.llama.LlamaCppModel", Engine)
    assembly.build_local(config.RouterConfig(preset="battery-saver"))
    assembly.build_local(config.RouterConfig(preset="quality-first"))
    assert made[0].threads.energy_weight == 10.0 and made[1].threads.energy_weight == 1.0


def test_the_count_used_is_in_the_answer_and_its_trace_row(tmp_path):
    from edgeroute import Router, TraceStore
    from edgeroute.testing import MockLocalModel

    class Counted(MockLocalModel):
        def stream(self, messages, **kw):
            gen = yield from super().stream(messages, **kw)
            gen.n_threads = 3
            return gen

    router = Router(local_model=Counted(), local_only=True, trace_path=str(tmp_path / "t.db"))
    a = router.ask("hello there")
    router.close()
    assert a.latency_ms["threads"] == 3.0
    with TraceStore(tmp_path / "t.db") as store:
        assert store.get(a.id)["latency_ms"]["threads"] == 3.0


@pytest.mark.slow
def test_without_proc_the_load_comes_from_psutil(tmp_path):
    """macOS and Windows have no /proc/stat: psutil's CPU times stand in (the [load] extra)."""
    psutil = pytest.importorskip("psutil")
    meter = LoadMeter(proc_root=str(tmp_path))  # an empty folder: no stat file
    assert meter._read() is not None
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.2: pass"])
    try:
        time.sleep(0.8)
        meter.sample()
    finally:
        busy.wait()
    assert meter.last_window is not None and meter.last_window > 0.4
    t = topology(str(tmp_path / "no-sysfs"))
    assert t.physical == psutil.cpu_count(logical=False) and t.logical == (__import__("os").cpu_count() or 1)
