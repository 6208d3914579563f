"""Energy backends on fake sysfs trees, a fake NVML, a fake IOReport module and canned EMI buffers."""

from __future__ import annotations

import builtins
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgeroute import EnergyError
from edgeroute.energy.apple import AppleMeter
from edgeroute.energy.base import Sample
from edgeroute.energy.battery import BatteryMeter
from edgeroute.energy.cputime import CpuSnapshot, cpu_share, system_busy_s
from edgeroute.energy.emi import EmiMeter, parse_measurement, parse_metadata, select_channels
from edgeroute.energy.estimate import EstimateMeter, core_power, cpu_brand
from edgeroute.energy.nvml import NvmlMeter
from edgeroute.energy.rapl import RaplMeter


def write_tree(root: Path, files: dict[str, object]) -> str:
    for rel, value in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")
    return str(root)


def rapl_zone(name: str, energy: int, max_uj: int | None = 262143328850) -> dict[str, object]:
    files: dict[str, object] = {"name": name, "energy_uj": energy}
    if max_uj is not None:
        files["max_energy_range_uj"] = max_uj
    return files


def rapl_tree(tmp_path: Path, zones: dict[str, dict[str, object]]) -> str:
    return write_tree(tmp_path / "powercap", {f"{z}/{k}": v for z, files in zones.items() for k, v in files.items()})


def set_energy(root: str, zone: str, value: int) -> None:
    (Path(root) / zone / "energy_uj").write_text(f"{value}\n")


def after(start: Sample, end: Sample, dt: float = 0.5) -> Sample:
    """``end``'s values, timed exactly ``dt`` seconds after ``start``."""
    return Sample(start.t + dt, end.values)


# --- RAPL ---------------------------------------------------------------------------------------------------------
def test_rapl_sums_package_and_dram_and_skips_core_subzones(tmp_path):
    root = rapl_tree(tmp_path, {
        "intel-rapl:0": rapl_zone("package-0", 1_000_000),
        "intel-rapl:0:0": rapl_zone("core", 500_000),
        "intel-rapl:0:1": rapl_zone("dram", 200_000),
        "intel-rapl:1": rapl_zone("package-1", 3_000_000),
    })
    meter = RaplMeter(root)
    s0 = meter.sample()
    set_energy(root, "intel-rapl:0", 3_000_000)  # +2 J
    set_energy(root, "intel-rapl:0:0", 900_000)  # core is inside the package: not added
    set_energy(root, "intel-rapl:0:1", 700_000)  # +0.5 J
    set_energy(root, "intel-rapl:1", 4_000_000)  # +1 J
    r = meter.delta(s0, after(s0, meter.sample()))
    assert r.joules == pytest.approx(3.5)
    assert r.method == "counter" and r.scope == "package+dram" and r.joules >= 0
    assert sorted(z.name for z in meter.zones) == ["dram-0", "package-0", "package-1"]


def test_rapl_wraparound_is_corrected_with_max_energy_range(tmp_path):
    root = rapl_tree(tmp_path, {"intel-rapl:0": rapl_zone("package-0", 999_000_000, max_uj=1_000_000_000)})
    meter = RaplMeter(root)
    s0 = meter.sample()
    set_energy(root, "intel-rapl:0", 4_000_000)  # wrapped: 1 J to the top, then 4 J
    r = meter.delta(s0, after(s0, meter.sample()))
    assert r.joules == pytest.approx(5.0)
    assert any("wrapped" in w for w in r.warnings)


def test_rapl_backwards_counter_without_max_file_invalidates_the_window(tmp_path):
    root = rapl_tree(tmp_path, {"intel-rapl:0": rapl_zone("package-0", 9_000_000, max_uj=None)})
    meter = RaplMeter(root)
    s0 = meter.sample()
    set_energy(root, "intel-rapl:0", 1_000_000)
    with pytest.raises(EnergyError, match="max_energy_range_uj.*window invalid"):
        meter.delta(s0, after(s0, meter.sample()))


def test_rapl_uses_psys_alone_when_present(tmp_path):
    root = rapl_tree(tmp_path, {
        "intel-rapl:0": rapl_zone("package-0", 1_000_000),
        "intel-rapl:1": rapl_zone("psys", 10_000_000),
    })
    meter = RaplMeter(root)
    s0 = meter.sample()
    set_energy(root, "intel-rapl:0", 2_000_000)
    set_energy(root, "intel-rapl:1", 14_000_000)
    r = meter.delta(s0, after(s0, meter.sample()))
    assert [z.name for z in meter.zones] == ["psys"]
    assert r.scope == "psys" and r.joules == pytest.approx(4.0)


def test_rapl_msr_and_mmio_copies_of_one_zone_count_once(tmp_path):
    root = rapl_tree(tmp_path, {
        "intel-rapl:0": rapl_zone("package-0", 1_000_000),
        "intel-rapl-mmio:0": rapl_zone("package-0", 1_000_000),
    })
    meter = RaplMeter(root)
    s0 = meter.sample()
    set_energy(root, "intel-rapl:0", 2_000_000)
    set_energy(root, "intel-rapl-mmio:0", 2_000_000)
    r = meter.delta(s0, after(s0, meter.sample()))
    assert r.joules == pytest.approx(1.0)
    assert [Path(z.path).name for z in meter.zones] == ["intel-rapl:0"]  # MSR preferred


def test_rapl_permission_denied_is_a_reason_never_zero(tmp_path):
    root = rapl_tree(tmp_path, {"intel-rapl:0": rapl_zone("package-0", 1_000_000)})

    def opener(path, *a, **kw):  # CI runs as root, so chmod proves nothing: inject the error instead
        if path.endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", path)
        return builtins.open(path, *a, **kw)

    meter = RaplMeter(root, opener=opener)
    status = meter.availability()
    assert not status.available
    assert "permission denied" in status.reason and "energy_uj" in status.reason and "root-only" in status.reason
    with pytest.raises(EnergyError):
        meter.sample()


def test_rapl_absent_tree_says_so(tmp_path):
    status = RaplMeter(str(tmp_path / "nope")).availability()
    assert not status.available and "does not exist" in status.reason


def test_zero_length_window_is_invalid(tmp_path):
    root = rapl_tree(tmp_path, {"intel-rapl:0": rapl_zone("package-0", 1_000_000)})
    meter = RaplMeter(root)
    s = meter.sample()
    with pytest.raises(EnergyError, match="invalid window"):
        meter.delta(s, s)


# --- battery ------------------------------------------------------------------------------------------------------
def battery_tree(tmp_path: Path, **bat0: object) -> str:
    files = {"BAT0/type": "Battery", "BAT0/status": "Discharging", "AC/type": "Mains", "AC/online": 0}
    files |= {f"BAT0/{k}": v for k, v in bat0.items()}
    files |= {"hid-mouse/type": "Battery", "hid-mouse/scope": "Device", "hid-mouse/status": "Discharging"}
    return write_tree(tmp_path / "power_supply", files)


def test_battery_energy_now_variant(tmp_path):
    root = battery_tree(tmp_path, energy_now=50_000_000, power_now=8_000_000)
    meter = BatteryMeter(root)
    s0 = meter.sample()
    (Path(root) / "BAT0/energy_now").write_text("49_990_000".replace("_", ""))  # 10 mWh drained
    r = meter.delta(s0, after(s0, meter.sample(), 5.0))
    assert r.method == "counter" and r.scope == "battery"
    assert r.joules == pytest.approx(10_000 * 3.6e-3)  # 10,000 uWh = 36 J


def test_battery_charge_now_variant_uses_voltage(tmp_path):
    root = battery_tree(tmp_path, charge_now=4_000_000, voltage_now=12_000_000, current_now=500_000)
    meter = BatteryMeter(root)
    s0 = meter.sample()
    (Path(root) / "BAT0/charge_now").write_text("3999000")  # 1 mAh at 12 V = 12 mWh = 43.2 J
    r = meter.delta(s0, after(s0, meter.sample(), 5.0))
    assert r.method == "counter" and r.joules == pytest.approx(43.2)


def test_battery_gauge_that_did_not_move_integrates_power(tmp_path):
    root = battery_tree(tmp_path, energy_now=50_000_000, power_now=8_000_000)
    meter = BatteryMeter(root)
    s0 = meter.sample()
    r = meter.delta(s0, after(s0, meter.sample(), 2.0))
    assert r.method == "power_integrated" and r.joules == pytest.approx(16.0)  # 8 W x 2 s


def test_battery_on_ac_is_not_used_and_says_why(tmp_path):
    root = battery_tree(tmp_path, energy_now=50_000_000)
    (Path(root) / "BAT0/status").write_text("Charging")
    meter = BatteryMeter(root)
    status = meter.availability()
    assert not status.available and "not discharging" in status.reason and "BAT0 Charging" in status.reason
    assert meter.present()


def test_battery_plugged_in_during_the_window_invalidates_it(tmp_path):
    root = battery_tree(tmp_path, energy_now=50_000_000)
    meter = BatteryMeter(root)
    s0 = meter.sample()
    (Path(root) / "BAT0/status").write_text("Charging")
    end = Sample(s0.t + 1, tuple(meter._read(str(Path(root) / "BAT0")) for _ in [0]))
    with pytest.raises(EnergyError, match="stopped discharging"):
        meter.delta(s0, end)


def test_no_battery(tmp_path):
    root = write_tree(tmp_path / "ps", {"AC/type": "Mains"})
    assert not BatteryMeter(root).present()
    assert "no system battery" in BatteryMeter(root).availability().reason


# --- NVML (fake module) ---------------------------------------------------------------------------------------------
class FakeNvml:
    """Just the calls NvmlMeter makes; energy in mJ, power in mW."""

    def __init__(self, energy_mj=(1000, 5000), power_mw=(60_000, 90_000), supported=True, init_error=None):
        self.energy = list(energy_mj)
        self.power = list(power_mw)
        self.supported = supported
        self.init_error = init_error
        self.shutdowns = 0

    def nvmlInit(self):
        if self.init_error:
            raise RuntimeError(self.init_error)

    def nvmlDeviceGetCount(self):
        return len(self.energy)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if not self.supported:
            raise RuntimeError("Not Supported")
        return self.energy[h]

    def nvmlDeviceGetPowerUsage(self, h):
        return self.power[h]

    def nvmlShutdown(self):
        self.shutdowns += 1


def test_nvml_counter_sums_gpus():
    nv = FakeNvml()
    meter = NvmlMeter(nvml=nv)
    s0 = meter.sample()
    nv.energy = [3000, 9000]  # +2 J, +4 J
    r = meter.delta(s0, after(s0, meter.sample(), 1.0))
    assert r.method == "counter" and r.scope == "gpu" and r.joules == pytest.approx(6.0)
    meter.close()
    assert nv.shutdowns == 1


def test_nvml_short_window_integrates_power_instead():
    nv = FakeNvml()
    meter = NvmlMeter(nvml=nv)
    s0 = meter.sample()
    r = meter.delta(s0, after(s0, meter.sample(), 0.05))
    assert r.method == "power_integrated"
    assert r.joules == pytest.approx((60 + 90) * 0.05)  # 150 W x 50 ms


def test_nvml_unsupported_or_failing_is_a_reason():
    assert "NVML unavailable" in NvmlMeter(nvml=FakeNvml(supported=False)).availability().reason
    assert "driver not loaded" in NvmlMeter(nvml=FakeNvml(init_error="driver not loaded")).availability().reason


def test_nvml_missing_package_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    assert "edgeroute[nvidia]" in NvmlMeter().availability().reason


# --- Apple (fake zeus_apple_silicon) ---------------------------------------------------------------------------------
def test_apple_meter_sums_soc_fields_and_is_labelled_os_model():
    readings = iter([
        SimpleNamespace(cpu_total_mj=1000, gpu_mj=500, gpu_sram_mj=None, dram_mj=100, ane_mj=0),
        SimpleNamespace(cpu_total_mj=3000, gpu_mj=1500, gpu_sram_mj=None, dram_mj=300, ane_mj=0),
    ])
    module = SimpleNamespace(AppleEnergyMonitor=lambda: SimpleNamespace(get_cumulative_energy=lambda: next(readings)))
    meter = AppleMeter(module=module)
    s0 = meter.sample()
    r = meter.delta(s0, after(s0, meter.sample()))
    assert r.method == "os_model" and r.scope == "soc" and r.joules == pytest.approx(3.2)
    assert r.source == "ioreport:cpu_total+gpu+dram+ane"


def test_apple_meter_elsewhere_says_why():
    import sys

    reason = AppleMeter().availability().reason
    assert ("not an Apple Silicon Mac" in reason) if sys.platform != "darwin" else reason


# --- Windows EMI (canned buffers) -----------------------------------------------------------------------------------
def wname(s: str, size: int) -> bytes:
    return s.encode("utf-16-le").ljust(size, b"\0")


def emi_v2_metadata(channels: list[str]) -> bytes:
    out = wname("Intel", 32) + wname("RAPL", 32) + struct.pack("<HH", 1, len(channels))
    for name in channels:
        raw = (name + "\0").encode("utf-16-le")
        out += struct.pack("<IH", 0, len(raw)) + raw
    return out


def emi_measurement(values: list[tuple[int, int]]) -> bytes:
    return b"".join(struct.pack("<QQ", e, t) for e, t in values)


def test_emi_v2_metadata_parses_variable_length_channel_names():
    names = ["RAPL_Package0_PKG", "RAPL_Package0_PP0", "RAPL_Package0_DRAM"]
    channels = parse_metadata(2, emi_v2_metadata(names))
    assert [c.name for c in channels] == names and [c.index for c in channels] == [0, 1, 2]
    chosen, scope = select_channels(channels)
    assert [c.name for c in chosen] == ["RAPL_Package0_PKG", "RAPL_Package0_DRAM"] and scope == "package+dram"


def test_emi_psys_alone_and_v1_metadata():
    chosen, scope = select_channels(parse_metadata(2, emi_v2_metadata(["RAPL_Package0_PKG", "RAPL_PSYS"])))
    assert [c.name for c in chosen] == ["RAPL_PSYS"] and scope == "psys"
    v1 = struct.pack("<I", 0) + wname("OEM", 32) + wname("M", 32) + struct.pack("<HH", 1, 10) + wname("CPU0", 10)
    assert [(c.name, c.unit) for c in parse_metadata(1, v1)] == [("CPU0", 0)]


def test_emi_truncated_buffers_are_typed_errors():
    raw = emi_v2_metadata(["RAPL_Package0_PKG"])
    with pytest.raises(EnergyError, match="truncated"):
        parse_metadata(2, raw[:-4])
    with pytest.raises(EnergyError):
        parse_metadata(2, raw[:40])
    with pytest.raises(EnergyError, match="bytes"):
        parse_measurement(b"\0" * 20, 2)
    with pytest.raises(EnergyError, match="version"):
        parse_metadata(7, raw)


def test_emi_meter_on_a_fake_device():
    class Device:
        version = 2
        metadata = emi_v2_metadata(["RAPL_Package0_PKG", "RAPL_Package0_PP0"])
        values = [(10**12, 0), (5 * 10**11, 0)]

        def measure(self):
            return emi_measurement(self.values)

    dev = Device()
    meter = EmiMeter(dev)
    s0 = meter.sample()
    dev.values = [(10**12 + 10**9, 10**7), (6 * 10**11, 10**7)]  # PKG +1e9 pWh = 3.6 J; PP0 ignored (inside PKG)
    r = meter.delta(s0, after(s0, meter.sample()))
    assert r.method == "counter" and r.joules == pytest.approx(3.6) and r.source == "emi:RAPL_Package0_PKG"


def test_emi_elsewhere_says_why():
    import sys

    if sys.platform != "win32":
        assert EmiMeter().availability().reason == "not Windows"


# --- estimate and CPU-time attribution ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("brand", "watts"),
    [
        ("Intel(R) Core(TM) i7-1165G7 @ 2.80GHz", 3.5),
        ("Intel(R) Core(TM) i9-12900K", 10.0),
        ("Intel(R) Xeon(R) Processor", 6.0),
        ("AMD Ryzen 7 7840U w/ Radeon 780M Graphics", 3.5),
        ("AMD Ryzen 9 7950X 16-Core Processor", 9.0),
        ("Apple M2 Pro", 4.0),
        ("Some Future CPU 9000", 5.0),
    ],
)
def test_core_power_table(brand, watts):
    assert core_power(brand).watts == watts


def test_estimate_is_cpu_seconds_times_watts_per_core():
    meter = EstimateMeter("Intel(R) Xeon(R) Processor")
    r = meter.for_cpu_seconds(0.5, 0.4)
    assert r.joules == pytest.approx(3.0) and r.method == "estimated" and r.relative_uncertainty == 0.5
    assert EstimateMeter("x", watts_per_core=2.0).for_cpu_seconds(1.0, 1.0).joules == 2.0
    assert EstimateMeter("unknown thing").entry.note.startswith("default")


def test_cpu_brand_reads_proc_cpuinfo(tmp_path):
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("procfs is Linux-only")
    root = write_tree(tmp_path / "proc", {"cpuinfo": "processor\t: 0\nmodel name\t: AMD Ryzen 5 5600X\n"})
    assert cpu_brand(root) == "AMD Ryzen 5 5600X"


def test_system_busy_time_and_share(tmp_path):
    root = write_tree(tmp_path / "proc", {"stat": "cpu  100 0 50 1000 20 5 5 0 0 0\ncpu0 1 2 3\n"})
    assert system_busy_s(root) == pytest.approx(160 / 100)  # user+nice+system+irq+softirq+steal ticks
    assert system_busy_s(str(tmp_path / "missing")) is None
    share, note = cpu_share(CpuSnapshot(1.0, 10.0), CpuSnapshot(1.5, 11.0))
    assert share == pytest.approx(0.5) and note == "cpu-share 0.50"
    assert cpu_share(CpuSnapshot(1.0, 10.0), CpuSnapshot(3.0, 11.0))[0] == 1.0  # tick granularity: clamped
    assert cpu_share(CpuSnapshot(1.0, None), CpuSnapshot(2.0, None)) == (1.0, "system CPU time unavailable: whole window attributed")
