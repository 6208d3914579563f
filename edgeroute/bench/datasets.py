"""The labelled items: the shipped set (``data/items.jsonl``) or a user's JSONL in the same format.

An item is one JSON object per line: ``id`` (unique), ``family``, ``question``, ``answers`` (non-empty list of
accepted strings, the first canonical), optional ``split`` (train / calibration / test / heldout-families) and
optional ``choices`` (multiple choice options in letter order). ``tools/make_bench_data.py`` builds the shipped set.
"""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Union

from .._errors import DatasetError

SPLITS = ("train", "calibration", "test", "heldout-families")


def shipped_path() -> Path:
    return Path(str(resources.files("edgeroute.bench") / "data" / "items.jsonl"))


def _check(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise DatasetError(f"{where}: an item must be a JSON object")
    for key, kind in (("id", str), ("family", str), ("question", str), ("answers", list)):
        if not isinstance(item.get(key), kind):
            raise DatasetError(f"{where}: {key!r} must be a {kind.__name__}")
    if not item["question"].strip():
        raise DatasetError(f"{where}: empty question")
    if not item["answers"] or not all(isinstance(a, str) and a.strip() for a in item["answers"]):
        raise DatasetError(f"{where}: 'answers' must be a non-empty list of non-empty strings")
    if "split" in item and item["split"] not in SPLITS:
        raise DatasetError(f"{where}: unknown split {item['split']!r} (one of {SPLITS})")
    if "choices" in item and not (isinstance(item["choices"], list) and len(item["choices"]) >= 2):
        raise DatasetError(f"{where}: 'choices' must list at least two options")
    return item


def load_items(path: Optional[Union[str, Path]] = None, split: Optional[str] = None) -> list[dict[str, Any]]:
    """Items from ``path`` (default: the shipped set), restricted to ``split`` (None or "all": every item).

    A user's file without ``split`` fields counts every item in every split. Raises ``DatasetError`` naming the
    line for malformed input or duplicate ids.
    """
    if split not in (None, "all") and split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose one of {SPLITS} or 'all'")
    source = Path(path) if path is not None else shipped_path()
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {source}: {exc}") from exc
    items, seen = [], set()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = _check(json.loads(line), f"{source}:{n}")
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{source}:{n}: not JSON ({exc.msg})") from None
        if item["id"] in seen:
            raise DatasetError(f"{source}:{n}: duplicate id {item['id']!r}")
        seen.add(item["id"])
        if split in (None, "all") or item.get("split", split) == split:
            items.append(item)
    if not items:
        raise DatasetError(f"no items in {source}" + (f" for split {split!r}" if split else ""))
    return items


def describe(items: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts by family and by split."""
    return {
        "families": dict(sorted(Counter(i["family"] for i in items).items())),
        "splits": dict(sorted(Counter(i.get("split", "unsplit") for i in items).items())),
    }
