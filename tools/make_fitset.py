"""Build the fit set (``edgeroute/bench/data/fitset.json``): which shipped items ``edgeroute fit`` answers, and the
licence of each source.

The items themselves are in ``items.jsonl`` (``tools/make_corpus.py``); the fit set names a few thousand of them: up
to ``--per-family`` from every family of the train / calibration / test splits (the map is fitted on train, the
threshold calibrated on calibration, test is scored), and up to ``--heldout-per-family`` from the held-out families
(scored only). Only sources whose licence allows redistribution are in it: a source whose copy has no licence and
whose original has none either is left out. Deterministic: the first items of each family in file order.

    python tools/make_fitset.py
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "edgeroute" / "bench" / "data"


def licences() -> dict[str, str]:
    """source -> licence text, from the table in DATA_LICENSES.md."""
    out = {}
    for line in (DATA / "DATA_LICENSES.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| `([^`]+)` \|[^|]*\|[^|]*\| ([^|]+) \|", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def redistributable(licence: str) -> bool:
    """False for a source with no licence in its repository and no original licence named."""
    return not (licence.startswith("none in the repository") and "(" not in licence)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-family", type=int, default=60)
    ap.add_argument("--heldout-per-family", type=int, default=40)
    args = ap.parse_args()
    lic = licences()
    by_family: dict[tuple[str, str], list[str]] = defaultdict(list)
    sources: dict[str, str] = {}
    for line in (DATA / "items.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        source = item.get("source", item["family"])
        role = "heldout" if item.get("split") == "heldout-families" else "fit"
        by_family[(role, item["family"])].append(item["id"])
        sources[item["family"]] = source
    excluded = sorted({s for s in sources.values() if not redistributable(lic.get(s, "none in the repository"))})
    chosen: dict[str, list[str]] = {"fit": [], "heldout": []}
    for (role, family), ids in sorted(by_family.items()):
        if sources[family] in excluded:
            continue
        chosen[role] += ids[: args.per_family if role == "fit" else args.heldout_per_family]
    used = sorted({sources[f] for (r, f) in by_family if sources[f] not in excluded})
    out = {
        "version": 1,
        "built_by": "tools/make_fitset.py",
        "items_file": "items.jsonl",
        "licences": {s: lic.get(s, "unknown") for s in used},
        "excluded_sources": {s: f"no redistributable licence ({lic.get(s, 'unknown')})" for s in excluded},
        "fit": chosen["fit"],
        "heldout": chosen["heldout"],
    }
    (DATA / "fitset.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"fit set: {len(out['fit'])} fit items, {len(out['heldout'])} held-out items, {len(used)} sources; "
          f"excluded {excluded}")


if __name__ == "__main__":
    main()
