"""``edgeroute bench value`` end to end: the tasks, the cached local answers, the table, and its markdown."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional, TextIO

from .collect import load_tasks, local_answers
from .value import POLICIES, CloudProfile, rows_of, value_table

#: The shipped desktop task set (``tasks.write(path, 50, seed=0)``).
TASKS_PATH = Path(__file__).resolve().parent.parent / "data" / "desktop.jsonl"


def value_report(model: Optional[str] = None, *, data: Optional[Path] = None, epsilon: float = 0.10,
                 delta: float = 0.05, cloud: CloudProfile = CloudProfile(), seed: int = 0,
                 progress: Optional[TextIO] = sys.stderr) -> dict[str, Any]:
    from ...router import Router
    from ..api import open_model

    tasks = load_tasks(data or TASKS_PATH)
    engine, owned = open_model(model)
    try:
        answers, info = local_answers(engine, tasks, progress=progress)
        with Router(local_only=True, local_model=engine, trace=False) as router:
            shipped = float(router.policy.threshold)
            source = router.threshold_source
    finally:
        if owned:
            engine.close()
    report = value_table(rows_of(tasks, answers, cloud, seed), shipped, epsilon=epsilon, delta=delta, cloud=cloud)
    report.update({"tasks": str(data or TASKS_PATH), "answers": info, "model": engine.name,
                   "shipped_threshold_source": source, "seed": seed})
    return report


def _fmt(v: Any, kind: str) -> str:
    if v is None:
        return "-"
    if kind == "pct":
        return f"{100 * v:.1f} %"
    if kind == "ms":
        return f"{v:.0f}"
    if kind == "j":
        return f"{v:.2f}"
    return f"{v:.3f}"


def markdown(report: dict[str, Any]) -> str:
    t = report["table"]
    cols = [("local_share", "answered locally", "pct"), ("accepted_error", "error among local", "pct"),
            ("quality", "quality", "pct"), ("retention", "kept of oracle's", "pct"),
            ("latency_ms_p50", "p50 ms", "ms"), ("latency_ms_p95", "p95 ms", "ms"),
            ("device_j_per_query", "device J / query", "j"), ("cloud_usd_per_1k_queries", "cloud US$ / 1k", "j")]
    out = [f"# Desktop value ({report['n']} tasks, {len(report['families'])} families, epsilon "
           f"{report['epsilon']:g}, delta {report['delta']:g})", "",
           "| policy | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for p in POLICIES:
        out.append(f"| {p} | " + " | ".join(_fmt(t[p]["all"][c[0]], c[2]) for c in cols) + " |")
    out += ["", "Per family (answered locally / error among local / kept of oracle's):", "",
            "| family | local accuracy | " + " | ".join(POLICIES[3:]) + " |", "|---" * (len(POLICIES) - 1) + "|"]
    for fam in report["families"]:
        cells = [f"{_fmt(t[p][fam]['local_share'], 'pct')} / {_fmt(t[p][fam]['accepted_error'], 'pct')} / "
                 f"{_fmt(t[p][fam]['retention'], 'pct')}" for p in POLICIES[3:]]
        out.append(f"| {fam} | {_fmt(report['local_accuracy'][fam], 'pct')} | " + " | ".join(cells) + " |")
    c = report["cloud"]
    out += ["", f"Shipped threshold {report['shipped_threshold']:.2f} ({report['shipped_threshold_source']}). Cloud: "
            f"{c['profile']}: accuracy {c['accuracy']:g}, median latency {c['latency_s']:g} s (lognormal sigma "
            f"{c['sigma']:g}), US$ {c['price_per_1k_usd']:g} per 1k tokens, {c['wait_j']:g} J waiting. Local "
            "latency and joules are measured on this machine (energy estimated where no counter exists)."]
    return "\n".join(out)


def write(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "value.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (out / "value.md").write_text(markdown(report) + "\n")
