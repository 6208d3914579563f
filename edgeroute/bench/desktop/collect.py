"""Local answers to the desktop tasks, generated once through a local-only Router and cached (resumable), with the
per-token evidence the long-answer signals need."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, TextIO

from ... import paths
from ...local.base import LocalModel
from ..runner import Progress, ResultCache, _Capture, cache_key, raw_generation

#: Bumped when the way answers are generated changes (the cache key includes it).
COLLECT_VERSION = 1


def load_tasks(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def local_answers(model: LocalModel, tasks: Sequence[dict[str, Any]], *, generate: bool = True,
                  progress: Optional[TextIO] = sys.stderr) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """task id -> the Router's local answer (text, signals, confidence, latency, tokens, energy, raw evidence)."""
    from ...router import Router

    capture = _Capture(model)
    router = Router(local_only=True, local_model=capture, trace=False)
    cache = ResultCache(paths.bench_cache_dir() / f"desktop-{cache_key('desktop', model.fingerprint, COLLECT_VERSION)}"
                                                  f".jsonl")
    have = cache.load()
    todo = [t for t in tasks if t["id"] not in have or have[t["id"]].get("messages") != t["messages"]] \
        if generate else []
    if todo and progress is not None:
        progress.write(f"generating {len(todo)} local answers (about 3 s each on 2 cores: ~{len(todo) * 3 / 60:.0f} "
                       f"min; resumable, cached in {cache.path})\n")
    bar = Progress(len(todo), "desktop", progress if todo else None)
    try:
        for task in todo:
            a = router.ask(task["messages"], max_tokens=task["max_tokens"])
            record = {"id": task["id"], "messages": task["messages"], "text": a.text, "signals": a.signals,
                      "confidence": a.confidence, "latency_ms": dict(a.latency_ms), "tokens": dict(a.tokens),
                      "flags": list(a.flags), "joules": a.energy.joules, "energy_method": a.energy.method,
                      "energy_source": a.energy.source, **raw_generation(capture.last)}
            have[task["id"]] = record
            cache.append(record)
            bar.step()
    finally:
        router.close()
    return {t["id"]: have[t["id"]] for t in tasks if t["id"] in have}, {"cache": str(cache.path),
                                                                         "generated": len(todo)}
