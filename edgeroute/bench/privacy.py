"""``edgeroute bench privacy``: the privacy gate's recall and false-positive rate on the labelled corpus
(``data/privacy.jsonl``, built by ``tools/make_privacy_corpus.py``), per split, kind and disguise."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from ..privacy import PrivacyDetector


def load_corpus(path: Optional[Path] = None) -> list[dict[str, Any]]:
    text = (path.read_text(encoding="utf-8") if path is not None else
            resources.files("edgeroute.bench").joinpath("data/privacy.jsonl").read_text(encoding="utf-8"))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def privacy_report(detector: Optional[PrivacyDetector] = None, path: Optional[Path] = None) -> dict[str, Any]:
    """Recall (sensitive strings caught) and false-positive rate (benign strings flagged), per split, with the
    misses and false alarms listed and the detector's time per string (ms)."""
    detector = detector or PrivacyDetector()
    rows = load_corpus(path)
    out: dict[str, Any] = {"splits": {}, "misses": [], "false_alarms": []}
    t = time.perf_counter()
    by: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for row in rows:
        flagged = bool(detector.kinds_in([row["text"]]))
        split = row["split"]
        if row["sensitive"]:
            for key in (f"{split}:all", f"{split}:{row['kind']}", "all:all"):
                by[key]["sensitive"][0] += flagged
                by[key]["sensitive"][1] += 1
            if not flagged:
                out["misses"].append({k: row[k] for k in ("id", "kind", "evasion", "split")})
        else:
            for key in (f"{split}:all", "all:all"):
                by[key]["benign"][0] += flagged
                by[key]["benign"][1] += 1
            if flagged:
                out["false_alarms"].append({k: row[k] for k in ("id", "evasion", "split")} | {"text": row["text"]})
    out["ms_per_string"] = (time.perf_counter() - t) * 1000.0 / max(len(rows), 1)
    for key, counts in sorted(by.items()):
        caught, n = counts["sensitive"]
        flagged, m = counts["benign"]
        out["splits"][key] = {"recall": caught / n if n else None, "sensitive": n,
                              "false_positive_rate": flagged / m if m else None, "benign": m}
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = ["| split:kind | recall | sensitive | false positives | benign |", "|---|---|---|---|---|"]
    for key, r in report["splits"].items():
        recall = "" if r["recall"] is None else f"{r['recall']:.3f}"
        fpr = "" if r["false_positive_rate"] is None else f"{r['false_positive_rate']:.3%}"
        lines.append(f"| {key} | {recall} | {r['sensitive'] or ''} | {fpr} | {r['benign'] or ''} |")
    lines.append(f"\n{report['ms_per_string']:.2f} ms per string")
    for miss in report["misses"]:
        lines.append(f"- missed {miss['id']} ({miss['split']}, {miss['kind']}: {miss['evasion']})")
    for alarm in report["false_alarms"]:
        lines.append(f"- false alarm {alarm['id']} ({alarm['split']}): {alarm['text'][:80]!r}")
    return "\n".join(lines)
