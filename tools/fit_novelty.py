"""Fit the novelty map (``models/novelty.json``) for a local model: how far a prompt is from the calibration split.

Reads the prompt-end hidden states of the calibration split's answers from the bench cache (generated where
missing) and fits ``edgeroute.risk.novelty.fit_novelty``. Prints the share of prompts flagged novel on each split:
about 5 % on the calibration families by construction, and what it is on families the map never saw.

    python tools/fit_novelty.py                       # default model -> models/novelty.json
    python tools/fit_novelty.py --model my.gguf --out /tmp/novelty.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgeroute.bench.datasets import SPLITS, load_items
from edgeroute.bench.runner import RunParams, decode_vector, run_local
from edgeroute.local.llama import LlamaCppModel
from edgeroute.risk.novelty import NoveltyMap, fit_novelty, save_novelty


def hidden(model: LlamaCppModel, split: str) -> tuple[np.ndarray, list[str]]:
    items = load_items(split=split)
    records, _ = run_local(items, model, RunParams(), need_hidden=True)
    rows = [(decode_vector(r.get("prompt_hidden")), i["family"]) for i, r in zip(items, records)]
    rows = [(v, f) for v, f in rows if v is not None]
    return np.stack([v for v, _ in rows]), [f for _, f in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="GGUF path (default: the default model)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "models" / "novelty.json"))
    args = ap.parse_args()
    model = LlamaCppModel(args.model)
    try:
        x, fams = hidden(model, "calibration")
        data = fit_novelty(x, fams, model_sha256=model.fingerprint,
                           fitted_on=f"edgeroute calibration split ({len(x)} prompts, {len(set(fams))} families)")
        shares = {}
        fitted = NoveltyMap(data)
        for split in SPLITS:
            v, _ = hidden(model, split)
            shares[split] = round(float(np.mean([fitted.novel(row) for row in v])), 4)
        data["novel_share"] = shares
        save_novelty(data, Path(args.out))
        print(json.dumps({"out": args.out, "tau": data["tau"], "novel_share": shares}, indent=2))
    finally:
        model.close()


if __name__ == "__main__":
    main()
