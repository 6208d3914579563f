"""Start-up memo: facts about files that are expensive to recompute and cannot change without the file changing.

Two kinds, in one small JSON file (``paths.memo_file()``): a model file's SHA-256, keyed by its path, size,
modification time and inode (hashing 100 MB costs about 0.1 s per start); and an engine's golden measurement
(``local.golden``), keyed by the model's SHA-256, the engine version and its native libraries' sizes and times
(measuring it costs a short decode). A corrupt or unwritable memo is ignored: the value is recomputed.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Callable, Optional

from .. import paths

_LOCK = threading.Lock()
#: Entries kept (oldest dropped first): a few models x engines.
MAX_ENTRIES = 64


def file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"


def folder_key(folder: Optional[Path]) -> str:
    """Sizes and times of the files in ``folder`` (an engine's native libraries), or "" when there is none."""
    if folder is None or not folder.is_dir():
        return ""
    return ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(folder.iterdir())
                    if p.is_file())


def _read(target: Path) -> dict[str, Any]:
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def remembered(key: str, compute: Callable[[], Any]) -> Any:
    """The memo's value for ``key``, or ``compute()`` (then remembered). Values are JSON."""
    target = paths.memo_file()
    with _LOCK:
        found = _read(target).get(key)
    if found is not None:
        return found
    value = compute()
    with _LOCK:
        data = _read(target)
        data.pop(key, None)
        data[key] = value
        while len(data) > MAX_ENTRIES:
            data.pop(next(iter(data)))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, target)  # a crash leaves the old memo or the new one
        except OSError:
            pass
    return value


__all__ = ["file_key", "folder_key", "remembered"]
