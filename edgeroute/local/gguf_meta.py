"""A GGUF file's metadata (its key-value header), read without loading the weights.

GGUF: magic ``GGUF``, version (u32), tensor count (u64), key-value count (u64), then each key (u64 length + UTF-8)
with its typed value. Arrays of strings (the vocabulary) are skipped, not kept. A file that ends early or holds an
unknown type is a ``ModelCorruptError`` naming it.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from .._errors import ModelCorruptError

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
#: Arrays longer than this are summarised by their length (the vocabulary, merges, scores).
MAX_ARRAY_KEPT = 64
MAX_STRING_BYTES = 1 << 24  # 16 MiB: a chat template is a few KB


class _Reader:
    def __init__(self, fh: BinaryIO, path: Path) -> None:
        self.fh, self.path = fh, path

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        data = self.fh.read(size)
        if len(data) != size:
            raise ModelCorruptError(f"{self.path}: the GGUF header ends early (truncated file)")
        return struct.unpack(fmt, data)[0]

    def string(self) -> str:
        n = self.take("<Q")
        if n > MAX_STRING_BYTES:
            raise ModelCorruptError(f"{self.path}: a GGUF string claims {n} bytes (corrupt header)")
        data = self.fh.read(n)
        if len(data) != n:
            raise ModelCorruptError(f"{self.path}: the GGUF header ends early (truncated file)")
        return data.decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            inner, count = self.take("<I"), self.take("<Q")
            if count > 1 << 28:
                raise ModelCorruptError(f"{self.path}: a GGUF array claims {count} items (corrupt header)")
            items = [self.value(inner) for _ in range(count)]
            return items if count <= MAX_ARRAY_KEPT else {"array_of": count}
        raise ModelCorruptError(f"{self.path}: unknown GGUF value type {kind} (corrupt or newer file)")


def read_metadata(path: Path) -> dict[str, Any]:
    """The key-value metadata of the GGUF at ``path`` (plus ``gguf.version`` and ``gguf.tensor_count``)."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ModelCorruptError(f"cannot read {path}: {exc}") from exc
    with fh:
        r = _Reader(fh, path)
        if fh.read(4) != b"GGUF":
            raise ModelCorruptError(f"{path} is not a GGUF file (bad magic bytes)")
        version = r.take("<I")
        if version < 2:
            raise ModelCorruptError(f"{path}: GGUF version {version} is too old to read")
        tensors, count = r.take("<Q"), r.take("<Q")
        out: dict[str, Any] = {"gguf.version": version, "gguf.tensor_count": tensors}
        for _ in range(count):
            key = r.string()
            out[key] = r.value(r.take("<I"))
    return out


__all__ = ["read_metadata"]
