"""Windows Energy Meter Interface (EMI): the OS's view of RAPL-style counters, via ctypes (no extra package).

An EMI device answers four IOCTLs: version, metadata size, metadata, measurement. Version 2 metadata lists
channels (e.g. ``RAPL_Package0_PKG``, ``RAPL_Package0_DRAM``, ``RAPL_Package0_PSYS``); a measurement is, per
channel, the absolute energy in picowatt-hours and the absolute time in 100 ns units. The buffer parsing is plain
Python (``parse_metadata``, ``parse_measurement``) so it is tested on canned buffers on any OS.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from .._constants import COUNTER_UNCERTAINTY
from .._errors import EnergyError
from .base import EnergyMeter, EnergyReading, Sample, window_seconds

EMI_VERSION_1 = 1
EMI_VERSION_2 = 2
_NAME_MAX_BYTES = 16 * 2  # EMI_NAME_MAX WCHARs
_UNIT_PICOWATT_HOURS = 0
_PWH_TO_J = 3.6e-9  # 1 pWh = 1e-12 W x 3600 s

# CTL_CODE(FILE_DEVICE_UNKNOWN=0x22, function, METHOD_BUFFERED, FILE_READ_ACCESS)
IOCTL_EMI_GET_VERSION = 0x00224000
IOCTL_EMI_GET_METADATA_SIZE = 0x00224004
IOCTL_EMI_GET_METADATA = 0x00224008
IOCTL_EMI_GET_MEASUREMENT = 0x0022400C


@dataclass(frozen=True)
class EmiChannel:
    index: int
    name: str
    unit: int


def _wstr(raw: bytes) -> str:
    return raw.decode("utf-16-le", errors="replace").split("\x00", 1)[0]


def parse_metadata(version: int, raw: bytes) -> list[EmiChannel]:
    """Channels described by an ``EMI_METADATA_V1`` or ``_V2`` buffer. Raises ``EnergyError`` if malformed.

    V1: unit u32, OEM wchar[16], model wchar[16], revision u16, name size u16 (bytes), name wchar[] -> 1 channel.
    V2: OEM wchar[16], model wchar[16], revision u16, channel count u16, then per channel: unit u32,
    name size u16 (bytes), name wchar[] (the next channel follows the name directly).
    """
    try:
        if version == EMI_VERSION_1:
            (unit,) = struct.unpack_from("<I", raw, 0)
            off = 4 + 2 * _NAME_MAX_BYTES + 2
            (size,) = struct.unpack_from("<H", raw, off)
            name = _wstr(raw[off + 2 : off + 2 + size])
            if len(raw) < off + 2 + size:
                raise EnergyError("EMI v1 metadata truncated")
            return [EmiChannel(0, name, unit)]
        if version == EMI_VERSION_2:
            off = 2 * _NAME_MAX_BYTES + 2
            (count,) = struct.unpack_from("<H", raw, off)
            off += 2
            channels = []
            for i in range(count):
                unit, size = struct.unpack_from("<IH", raw, off)
                if off + 6 + size > len(raw):
                    raise EnergyError(f"EMI v2 metadata truncated in channel {i}")
                channels.append(EmiChannel(i, _wstr(raw[off + 6 : off + 6 + size]), unit))
                off += 6 + size
            return channels
    except struct.error as exc:
        raise EnergyError(f"EMI metadata malformed: {exc}") from exc
    raise EnergyError(f"unsupported EMI version {version}")


def parse_measurement(raw: bytes, n_channels: int) -> list[tuple[int, int]]:
    """Per channel ``(energy_pwh, time_100ns)`` from an ``EMI_CHANNEL_MEASUREMENT_DATA`` array (16 bytes each)."""
    if len(raw) < 16 * n_channels:
        raise EnergyError(f"EMI measurement has {len(raw)} bytes, {16 * n_channels} expected")
    return [struct.unpack_from("<QQ", raw, 16 * i) for i in range(n_channels)]


def select_channels(channels: list[EmiChannel]) -> tuple[list[EmiChannel], str]:
    """PSYS alone when present, else every package (PKG) and DRAM channel; with the scope that covers."""
    usable = [c for c in channels if c.unit == _UNIT_PICOWATT_HOURS]
    psys = [c for c in usable if c.name.upper().endswith("PSYS")]
    if psys:
        return psys, "psys"
    pkg = [c for c in usable if c.name.upper().endswith("_PKG")]
    dram = [c for c in usable if c.name.upper().endswith("_DRAM")]
    if pkg:
        return pkg + dram, "package+dram" if dram else "package"
    return usable, "package"


class EmiDevice(Protocol):
    """What the meter needs from an EMI device (the ctypes one below, or a fake with canned buffers)."""

    version: int
    metadata: bytes

    def measure(self) -> bytes: ...


class EmiMeter(EnergyMeter):
    """Sums the selected channels of the first EMI device. ``device`` replaces the Windows device (tests)."""

    name = "emi"
    method = "counter"

    def __init__(self, device: Optional[EmiDevice] = None) -> None:
        self._device = device
        self._channels: Optional[list[EmiChannel]] = None
        self.scope = "package"

    def _open(self) -> tuple[EmiDevice, list[EmiChannel]]:
        if self._device is None:
            if sys.platform != "win32":
                raise EnergyError("not Windows")
            try:
                self._device = _open_windows_device()
            except OSError as exc:
                raise EnergyError(f"EMI device unusable: {exc}") from exc
        if self._channels is None:
            channels, self.scope = select_channels(parse_metadata(self._device.version, self._device.metadata))
            if not channels:
                raise EnergyError("EMI device has no energy channel in picowatt-hours")
            self._channels = channels
        return self._device, self._channels

    def describe(self) -> str:
        _, channels = self._open()
        return f"EMI {', '.join(c.name for c in channels)} ({self.scope})"

    def sample(self) -> Sample:
        device, channels = self._open()
        try:
            raw = device.measure()
        except OSError as exc:
            raise EnergyError(f"EMI measurement failed: {exc}") from exc
        n = max(c.index for c in channels) + 1 if device.version == EMI_VERSION_2 else 1
        data = parse_measurement(raw, n)
        return Sample(self.now(), tuple(data[c.index] for c in channels))

    def delta(self, start: Sample, end: Sample) -> EnergyReading:
        window = window_seconds(start, end)
        pwh = 0
        for (e0, _), (e1, _) in zip(start.values, end.values):
            if e1 < e0:
                raise EnergyError("EMI energy went backwards: window invalid")
            pwh += e1 - e0
        assert self._channels is not None
        return EnergyReading(
            joules=pwh * _PWH_TO_J,
            method=self.method,
            source=f"emi:{'+'.join(c.name for c in self._channels)}",
            scope=self.scope,
            window_s=window,
            relative_uncertainty=COUNTER_UNCERTAINTY,
        )


def _open_windows_device() -> EmiDevice:  # pragma: no cover - Windows only
    """Open the first EMI device interface with SetupAPI + CreateFile and read its version and metadata."""
    import ctypes
    from ctypes import wintypes

    class GUID(ctypes.Structure):
        _fields_ = [("Data1", wintypes.DWORD), ("Data2", wintypes.WORD), ("Data3", wintypes.WORD),
                    ("Data4", ctypes.c_ubyte * 8)]

    class SP_DEVICE_INTERFACE_DATA(ctypes.Structure):
        _fields_ = [("cbSize", wintypes.DWORD), ("InterfaceClassGuid", GUID), ("Flags", wintypes.DWORD),
                    ("Reserved", ctypes.c_size_t)]

    setupapi = ctypes.WinDLL("setupapi", use_last_error=True)  # type: ignore[attr-defined]
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    setupapi.SetupDiGetClassDevsW.restype = ctypes.c_void_p
    setupapi.SetupDiGetClassDevsW.argtypes = [ctypes.c_void_p, ctypes.c_wchar_p, ctypes.c_void_p, wintypes.DWORD]
    setupapi.SetupDiEnumDeviceInterfaces.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(GUID),
                                                     wintypes.DWORD, ctypes.POINTER(SP_DEVICE_INTERFACE_DATA)]
    setupapi.SetupDiGetDeviceInterfaceDetailW.argtypes = [ctypes.c_void_p, ctypes.POINTER(SP_DEVICE_INTERFACE_DATA),
                                                          ctypes.c_void_p, wintypes.DWORD,
                                                          ctypes.POINTER(wintypes.DWORD), ctypes.c_void_p]
    setupapi.SetupDiDestroyDeviceInfoList.argtypes = [ctypes.c_void_p]
    kernel32.CreateFileW.restype = ctypes.c_void_p
    kernel32.CreateFileW.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, ctypes.c_void_p,
                                     wintypes.DWORD, wintypes.DWORD, ctypes.c_void_p]
    kernel32.DeviceIoControl.argtypes = [ctypes.c_void_p, wintypes.DWORD, ctypes.c_void_p, wintypes.DWORD,
                                         ctypes.c_void_p, wintypes.DWORD, ctypes.POINTER(wintypes.DWORD),
                                         ctypes.c_void_p]
    invalid = ctypes.c_void_p(-1).value
    last_error = getattr(ctypes, "get_last_error")  # Windows-only attribute

    guid = GUID(0x45BD8344, 0x7ED6, 0x49CF, (ctypes.c_ubyte * 8)(0xA4, 0x40, 0xC2, 0x76, 0xC9, 0x33, 0xB0, 0x53))
    info = setupapi.SetupDiGetClassDevsW(ctypes.byref(guid), None, None, 0x2 | 0x10)  # PRESENT | DEVICEINTERFACE
    if info in (None, invalid):
        raise EnergyError("no EMI device (SetupDiGetClassDevs failed)")
    try:
        iface = SP_DEVICE_INTERFACE_DATA()
        iface.cbSize = ctypes.sizeof(SP_DEVICE_INTERFACE_DATA)
        if not setupapi.SetupDiEnumDeviceInterfaces(info, None, ctypes.byref(guid), 0, ctypes.byref(iface)):
            raise EnergyError("no EMI device on this machine")
        needed = wintypes.DWORD(0)
        setupapi.SetupDiGetDeviceInterfaceDetailW(info, ctypes.byref(iface), None, 0, ctypes.byref(needed), None)
        buf = ctypes.create_string_buffer(max(needed.value, 8))
        ctypes.cast(buf, ctypes.POINTER(wintypes.DWORD))[0] = 8 if ctypes.sizeof(ctypes.c_void_p) == 8 else 6
        if not setupapi.SetupDiGetDeviceInterfaceDetailW(info, ctypes.byref(iface), buf, needed, None, None):
            raise EnergyError(f"SetupDiGetDeviceInterfaceDetail failed (error {last_error()})")
        path = ctypes.wstring_at(ctypes.addressof(buf) + 4)
    finally:
        setupapi.SetupDiDestroyDeviceInfoList(info)

    handle = kernel32.CreateFileW(path, 0x80000000, 0x1 | 0x2, None, 3, 0, None)  # GENERIC_READ, OPEN_EXISTING
    if handle in (None, invalid):
        raise EnergyError(f"cannot open EMI device {path} (error {last_error()})")

    def ioctl(code: int, size: int) -> bytes:
        out = ctypes.create_string_buffer(size)
        got = wintypes.DWORD(0)
        if not kernel32.DeviceIoControl(handle, code, None, 0, out, size, ctypes.byref(got), None):
            raise OSError(f"DeviceIoControl {code:#x} failed (error {last_error()})")
        return out.raw[: got.value]

    class _Device:
        version = struct.unpack("<H", ioctl(IOCTL_EMI_GET_VERSION, 2)[:2])[0]
        metadata = ioctl(IOCTL_EMI_GET_METADATA, struct.unpack("<I", ioctl(IOCTL_EMI_GET_METADATA_SIZE, 4)[:4])[0])

        def measure(self) -> bytes:
            return ioctl(IOCTL_EMI_GET_MEASUREMENT, 16 * 64)

    device: Any = _Device()
    return device
