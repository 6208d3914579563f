"""Which block's hidden states tell right from wrong answers best? Cross-validated AUROC per block, train split only.

For every cached ``train`` answer of the harness, the prompt and answer are run once through the same GGUF with
transformers (which dequantizes it), and each block's output is averaged over the answer's tokens. Per block, the
probe ``tools/train_probe.py`` ships (the MLP, 32 hidden units, weight decay 0.01) is cross-validated on
[answer-averaged state, perplexity features, query features], 5 folds by item hash, as ``train_probe.py`` does; the
final, post-norm layer (what the probes read before block 19) is scored the same way. ``capture.default_layer``
was chosen from this table. Needs the ``train-selfref`` extra (torch, transformers, gguf) and the harness's cache
(``edgeroute bench --split all`` or ``python tools/train_probe.py`` fills it).

    python tools/scan_layers.py --json          # about 12 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from typing import Any

import numpy as np

from edgeroute.bench.metrics import auroc
from edgeroute.bench.runner import Progress, RunParams
from edgeroute.local.llama import LlamaCppModel
from train_probe import FOLDS, SEED, collect, fit_mlp, mlp_logit
from train_selfref import examples


def cv_auroc(x: np.ndarray, y: np.ndarray, fold: np.ndarray) -> float:
    oof = np.zeros(len(y))
    for f in range(FOLDS):
        held = fold == f
        mean, scale = x[~held].mean(0), x[~held].std(0) + 1e-6
        params = fit_mlp((x[~held] - mean) / scale, y[~held], 32, 1e-2, 400, SEED)
        oof[held] = mlp_logit(params, (x[held] - mean) / scale)
    return float(auroc(oof, y))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM

    t0 = time.perf_counter()
    model = LlamaCppModel()
    exs = {e["id"]: e for e in examples(model, RunParams().max_tokens)}
    train = collect(model, RunParams().max_tokens)["train"]
    path = model.path
    model.close()
    keep = [i for i, k in enumerate(train["id"]) if k in exs]
    ids = [train["id"][i] for i in keep]
    y = train["y"][keep].astype(np.float64)
    side = np.hstack([train["ppl"][keep], train["q"][keep]])
    fold = np.array([int(hashlib.sha256(k.encode()).hexdigest()[:8], 16) % FOLDS for k in ids])

    hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    n_layer = hf.config.num_hidden_layers
    states = np.zeros((n_layer + 1, len(ids), hf.config.hidden_size), dtype=np.float32)
    bar = Progress(len(ids), "states", sys.stderr)
    with torch.no_grad():
        for j, k in enumerate(ids):
            e = exs[k]
            hidden = hf(torch.tensor([e["prompt"] + e["answer"]]), output_hidden_states=True).hidden_states
            # hidden[b + 1] is block b's output; hidden[-1] has the final norm applied (transformers' convention)
            for b in range(n_layer):
                states[b, j] = hidden[b + 1][0, len(e["prompt"]):].mean(0).numpy()
            states[n_layer, j] = hidden[-1][0, -1].numpy()  # the final layer at the last answer token
            bar.step()
    result: dict[str, Any] = {"n_train": len(ids), "folds": FOLDS, "blocks": {}}
    for b in range(n_layer + 1):
        name = f"block {b} (answer mean)" if b < n_layer else "final layer, post-norm (last answer token)"
        result["blocks"][name] = round(cv_auroc(np.hstack([states[b], side]), y, fold), 4)
        print(f"  {name}: {result['blocks'][name]}", file=sys.stderr, flush=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
