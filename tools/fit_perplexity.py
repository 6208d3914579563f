"""Fit the perplexity-family confidence map (``models/perplexity.json``) for a local model.

Uses the evaluation harness: the local model's answers to the ``train`` split (cached by ``edgeroute bench``'s
runner, so a re-fit after a first run takes seconds), graded by the harness's grader, and a logistic regression of
"answer correct" on the perplexity features. Prints 5-fold cross-validated AUROC on train and the AUROC on ``test``
and ``heldout-families`` next to mean token NLL alone.

    python tools/fit_perplexity.py                    # default model -> models/perplexity.json
    python tools/fit_perplexity.py --model my.gguf --out /tmp/perplexity.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from _fitting import fit_logistic
from edgeroute.bench.datasets import load_items
from edgeroute.bench.grading import grade
from edgeroute.bench.metrics import auroc
from edgeroute.bench.runner import RunParams, run_local
from edgeroute.local.llama import LlamaCppModel
from edgeroute.signals.perplexity import FEATURES, LogisticMap


def dataset(model: LlamaCppModel, split: str, max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    items = load_items(split=split)
    records, _ = run_local(items, model, RunParams(max_tokens=max_tokens))
    rows, labels = [], []
    for item, r in zip(items, records):
        if all(f in r["signals"] for f in FEATURES):
            rows.append([r["signals"][f] for f in FEATURES])
            labels.append(1.0 if grade(r["text"], item) else 0.0)
    return np.asarray(rows), np.asarray(labels)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="GGUF path (default: the default model)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "models" / "perplexity.json"))
    ap.add_argument("--max-tokens", type=int, default=RunParams().max_tokens)
    args = ap.parse_args()

    t0 = time.perf_counter()
    model = LlamaCppModel(args.model)
    x, y = dataset(model, "train", args.max_tokens)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = (x - mean) / scale
    rng = np.random.default_rng(0)
    folds = rng.permutation(len(y)) % 5
    cv_scores = np.empty(len(y))
    for k in range(5):
        coef, b = fit_logistic(z[folds != k], y[folds != k])
        cv_scores[folds == k] = z[folds == k] @ coef + b
    coef, b = fit_logistic(z, y)
    result: dict[str, object] = {
        "n_train": int(len(y)),
        "train_accuracy": float(y.mean()),
        "auroc_train_cv5": auroc(cv_scores, y),
        "auroc_train_mean_nll_only": auroc(-x[:, 0], y),
    }
    for split in ("test", "heldout-families"):
        xs, ys = dataset(model, split, args.max_tokens)
        result[f"auroc_{split}"] = auroc(((xs - mean) / scale) @ coef + b, ys)
        result[f"auroc_{split}_mean_nll_only"] = auroc(-xs[:, 0], ys)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    mapping = LogisticMap(
        mean=tuple(mean.tolist()),
        scale=tuple(scale.tolist()),
        coef=tuple(coef.tolist()),
        intercept=b,
        model_sha256=model.fingerprint,
        engine=model.golden(),
        info=(
            f"fitted by tools/fit_perplexity.py on the harness's train split ({result['n_train']} answers); "
            f"AUROC 5-fold CV {result['auroc_train_cv5']:.3f}, test {result['auroc_test']:.3f}"
        ),
    )
    model.close()
    Path(args.out).write_text(json.dumps(mapping.to_dict(), indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
