"""Reading small sysfs/procfs files through an injectable opener (tests build fake trees and inject errors)."""

from __future__ import annotations

import os
from typing import IO, Callable, Optional

from .._errors import EnergyError

#: ``opener(path) -> text file``; ``open`` in production, anything that raises on cue in tests.
Opener = Callable[[str], IO[str]]


def read_text(path: str, opener: Opener = open) -> Optional[str]:
    """The stripped contents of ``path``, or None if it does not exist.

    Permission errors become ``EnergyError`` naming the file: an unreadable counter is a reason, never a zero.
    """
    try:
        with opener(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise EnergyError(f"permission denied reading {path}") from exc
    except OSError as exc:
        raise EnergyError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_int(path: str, opener: Opener = open) -> Optional[int]:
    """``read_text`` parsed as an integer; None if absent; ``EnergyError`` if it is not a number."""
    text = read_text(path, opener)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise EnergyError(f"{path} does not hold an integer: {text[:40]!r}") from None


def list_dir(path: str) -> list[str]:
    """Sorted entries of ``path``; empty when it does not exist or cannot be listed."""
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
