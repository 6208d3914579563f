"""Train the correctness probes of a local model, chosen by transfer, and export them to ONNX (``models/probe.onnx``,
``models/pregen.onnx``).

Features come from the evaluation harness's cached runs (``run_local(need_hidden=True)``: every captured block's
hidden states, the decode's token evidence), computed by the Router's own code (``signals.probe.scalar_values``);
labels from the grader. Only the ``train`` split is fitted and selected on: 60 % of the items of every family that
is not held out. The ``heldout-families`` (whole families, from sources that appear nowhere else) are never trained,
selected or calibrated on, and ``test`` / ``calibration`` are only scored.

Selection (``edgeroute.bench.crossval.select``), by leave-one-source-out (LOSO) AUROC on train (the average of the
mean per-source AUROC and the pooled one), in three rounds:

1. which hidden-state blocks (none; answer means of one, two or four blocks; the prompt state), how many principal
   components per block, and the L2 strength of the logistic regression;
2. with the best of round 1: a novelty gate with a training-free fallback or none, training on every family or
   without the multiple-choice families at chance, and a one-hidden-layer MLP (16 units) instead of the logistic;
3. the pre-generation probe (prompt state and query features): components and L2, always gated (never skip a
   novel prompt); its skip threshold is chosen on ``calibration`` so that at most ``--max-skip-correct`` of the
   locally-correct answers would be skipped.

Prints every candidate's LOSO figures, the chosen model's LOFO / LOSO per family and source, the best
training-free signal's, the ``test`` and ``heldout-families`` AUROCs, checks that onnxruntime reproduces the numpy
outputs and times one ONNX inference.

    python tools/train_probe.py                       # default model -> models/probe.onnx, models/pregen.onnx
    python tools/train_probe.py --out-dir /tmp/probes --report /tmp/probes/train.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeroute.bench.datasets import load_items
from edgeroute.bench.metrics import auroc
from edgeroute.bench.runner import RunParams, run_local
from edgeroute.bench.crossval import cross_validate, select, single_signal_cv
from edgeroute.bench.onnx_export import check_onnx, export, pregen_scores
from edgeroute.bench.transfer import Dataset, Fitted, Spec, at_chance_families, build_dataset, export_layout, fit, linear
from edgeroute.signals.probe import SCALAR_FEATURES
from edgeroute.signals.query import QUERY_FEATURES


# --- selection --------------------------------------------------------------------------------------------------------
def post_candidates(layer: int, layers: tuple[int, ...]) -> list[Spec]:
    am = [f"answer_mean@{l}" for l in layers]
    block_sets = [(), (f"answer_mean@{layer}",), (am[0], f"answer_mean@{layer}"), tuple(am),
                  (f"prompt@{layer}", f"answer_mean@{layer}")]
    out = [Spec(blocks=(), l2=l2, novelty_block=f"prompt@{layer}") for l2 in (1.0, 10.0, 100.0)]
    for blocks in block_sets[1:]:
        for pcs in (8, 32):
            for l2 in (10.0, 100.0, 1000.0):
                out.append(Spec(blocks=blocks, pcs=pcs, l2=l2, novelty_block=f"prompt@{layer}"))
    return out


def auroc_on(fitted: Fitted, data: Dataset, key: str = "combined") -> Optional[float]:
    return auroc(fitted.predict(data)[key], data.y) if len(data) else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="GGUF path (default: the default model)")
    ap.add_argument("--out-dir", default=str(Path(__file__).resolve().parents[1] / "models"))
    ap.add_argument("--report", default=None, help="also write the JSON report here")
    ap.add_argument("--max-tokens", type=int, default=RunParams().max_tokens)
    ap.add_argument("--max-skip-correct", type=float, default=0.05,
                    help="pre-generation threshold: at most this share of locally-correct answers skipped")
    ap.add_argument("--quick", action="store_true", help="a small candidate grid (for tests)")
    ap.add_argument("--cached-only", action="store_true",
                    help="train on the answers already cached (a generation still running); generates nothing")
    ap.add_argument("--data", default=None, help="a corpus JSONL in the shipped format (default: the shipped one)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    from edgeroute.bench.api import open_model

    model, _ = open_model(args.model, selfref=True, hidden_layers="candidates")  # every block a probe may read
    fingerprint, n_embd, layer, layers = model.fingerprint, model.n_embd, model.hidden_layer, model.hidden_layers
    engine = json.dumps(model.golden())  # recorded in both probes; the Router refuses them on an engine that differs
    items = load_items(args.data)
    records, _ = run_local(items, model, RunParams(max_tokens=args.max_tokens), need_hidden=True,
                           generate=not args.cached_only)
    model.close()
    cached = {r["id"] for r in records}
    items = [i for i in items if i["id"] in cached]
    data = build_dataset(items, records)
    pool = data.subset(data.split == "train")
    report: dict[str, Any] = {"n_train": len(pool), "families": len(set(pool.family)), "sources": len(set(pool.source)),
                              "hidden_layers": list(layers), "at_chance_families": at_chance_families(pool)}
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = sys.stderr

    # round 1 and 2: the post-generation probe
    cands = post_candidates(layer, layers)
    if args.quick:
        cands = cands[:1] + cands[3:5]
    log.write(f"round 1: {len(cands)} candidates, LOSO over {report['sources']} sources\n")
    best, table1 = select(cands, pool, progress=log)
    round2 = [best, replace(best, gate="novelty"), replace(best, train_on="no-chance"),
              replace(best, gate="novelty", train_on="no-chance"), replace(best, hidden=16),
              replace(best, hidden=16, l2=best.l2 * 10)]
    log.write("round 2: gate and training families\n")
    best, table2 = select(round2, pool, progress=log)
    report["post_candidates"] = table1 + table2
    report["post_spec"] = best.to_dict()

    final = fit(best, pool)
    lofo, loso = cross_validate(best, pool, "lofo"), cross_validate(best, pool, "loso")
    tf_spec = Spec(blocks=(), l2=10.0, novelty_block=best.novelty_block)
    tf_lofo, tf_loso = cross_validate(tf_spec, pool, "lofo"), cross_validate(tf_spec, pool, "loso")
    singles = single_signal_cv(pool, "loso")
    best_single = max(singles, key=lambda k: singles[k].mean or 0.0)
    report["transfer"] = {
        "confidence": {"lofo": lofo.summary(), "loso": loso.summary()},
        "training_free_logistic": {"lofo": tf_lofo.summary(), "loso": tf_loso.summary()},
        "best_single_signal": {"name": best_single, "loso": singles[best_single].summary()},
        "single_signals_loso_mean": {k: v.mean for k, v in sorted(singles.items(), key=lambda kv: -(kv[1].mean or 0))},
    }
    scored = {}
    for split in ("test", "calibration", "heldout-families"):
        part = data.subset(data.split == split)
        scored[split] = {"n": len(part), "accuracy": float(part.y.mean()) if len(part) else None,
                         "confidence_auroc": auroc_on(final, part), "probe_auroc": auroc_on(final, part, "probe"),
                         "mean_nll_auroc": auroc(-part.scalars[:, SCALAR_FEATURES.index("mean_nll")], part.y)}
    report["splits"] = scored

    layout = export_layout(best, n_embd)
    meta = {"model_sha256": fingerprint,
            "trained_on": f"edgeroute corpus train split ({len(pool)} answers, {report['families']} families, "
                          f"{report['sources']} sources)",
            "model_type": json.dumps({"type": "transfer-logistic", **best.to_dict()}),
            "validation": "mean leave-one-source-out AUROC on the train split",
            "validation_auroc": f"{loso.mean:.4f}", "loso_mean_auroc": f"{loso.mean:.4f}",
            "loso_pooled_auroc": f"{loso.pooled:.4f}", "lofo_mean_auroc": f"{lofo.mean:.4f}",
            "novelty_tau": f"{final.tau:.4f}", "gate": best.gate,
            "fallback": "training-free logistic" if best.gate == "novelty" else "none", "engine": engine}
    path = out_dir / "probe.onnx"
    export(path, "post", linear(final, layout), layout, meta)
    report["post_onnx"] = check_onnx(path, final, data.subset(data.split == "test"), layout, "post")

    # round 3: the pre-generation probe
    pre_cands = [Spec(scalars=QUERY_FEATURES, blocks=(f"prompt@{layer}",), pcs=pcs, l2=l2, gate="novelty",
                      novelty_block=f"prompt@{layer}") for pcs in (8, 32) for l2 in (10.0, 100.0, 1000.0)]
    if args.quick:
        pre_cands = pre_cands[:1]
    log.write("round 3: pre-generation probe\n")
    pre_best, table3 = select(pre_cands, pool, progress=log)
    pre_best = replace(pre_best, gate="none")  # the gate is the pregen rule (1.0 for novel prompts), not a fallback
    pre = fit(replace(pre_best, gate="novelty"), pool)
    pre.fallback = None
    cal = data.subset(data.split == "calibration")
    p_cal = pregen_scores(pre, cal)
    correct = p_cal[cal.y > 0.5]
    threshold = float(np.quantile(correct, args.max_skip_correct)) if len(correct) else 0.0
    test = data.subset(data.split == "test")
    p_test = pregen_scores(pre, test)
    skipped = p_test < threshold
    heldout = data.subset(data.split == "heldout-families")
    p_held = pregen_scores(pre, heldout)
    pre_loso = cross_validate(replace(pre_best, gate="none"), pool, "loso")
    report["pregen"] = {"spec": pre_best.to_dict(), "candidates": table3, "loso": pre_loso.summary(),
                        "skip_threshold": threshold, "test_auroc": auroc(p_test, test.y),
                        "heldout_auroc": auroc(p_held, heldout.y),
                        "test_skip_rate": float(skipped.mean()),
                        "test_skipped_that_were_correct": float(test.y[skipped].mean()) if skipped.any() else 0.0,
                        "heldout_skip_rate": float((p_held < threshold).mean())}
    pre_layout = [[f"prompt@{layer}", n_embd], ["features", list(QUERY_FEATURES)]]
    pre_meta = {"model_sha256": fingerprint, "trained_on": meta["trained_on"],
                "model_type": json.dumps({"type": "transfer-logistic", **pre_best.to_dict()}),
                "validation": meta["validation"], "validation_auroc": f"{pre_loso.mean:.4f}",
                "novelty_tau": f"{pre.tau:.4f}", "skip_threshold": f"{threshold:.8g}", "engine": engine}
    pre_path = out_dir / "pregen.onnx"
    export(pre_path, "pre", linear(pre, pre_layout), pre_layout, pre_meta)
    report["pre_onnx"] = check_onnx(pre_path, pre, test, pre_layout, "pre")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(report, indent=2, default=float)
    if args.report:
        Path(args.report).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
