"""``edgeroute fit``'s hidden-state probes, for any GGUF whose block outputs can be captured.

Both read the engine's primary block (``hidden_layer``) only: it is the one the Router captures (each captured block
costs a graph split and a copy per token).

- **The post-generation probe.** Candidates (no hidden states; the answer mean; the prompt state and the answer
  mean; principal components and L2; then with and without a novelty gate) are scored by leave-one-family-out
  (LOFO) AUROC on the ``train`` answers (``crossval.select(level="lofo")``). The best is **shipped only when its
  LOFO AUROC beats the training-free map's** (by ``probe_margin``), on at least ``PROBE_LABEL_FACTOR`` times the
  map's minimum of right and of wrong answers. It then becomes the Router's confidence, and the threshold is
  calibrated on it.
- **The pre-generation probe** (prompt state and query features; a novel prompt is never skipped) ships when the
  bootstrap interval of its LOFO AUROC lies above 0.5 and, refitted without each source in turn, it skips at most
  ``TRANSFER_SLACK`` x ``MAX_SKIP_CORRECT`` of that source's locally-correct answers (pooled): a skip that does not
  transfer sends right answers to the cloud, unseen. Its skip threshold is the ``k``-th lowest score among the
  locally-correct ``calibration`` answers, ``k = floor(MAX_SKIP_CORRECT * (n + 1))``. For a new correct answer
  exchangeable with them, P(skipped) <= k / (n + 1) <= ``MAX_SKIP_CORRECT``: a conformal bound that covers traffic
  like the calibration mixture only.

Without capture (``LocalModel.capture_failure``, hidden states off, answers cached without them, or no ``onnx``
package to export with) nothing is fitted here, and the report says why. The map and the threshold are fitted
either way.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..local.capture import BLOCK_OUTPUT
from ..signals.probe import PREGEN_FILE, PROBE_FILE
from ..signals.query import QUERY_FEATURES
from .crossval import CVResult, cross_validate, select
from .metrics import auroc, auroc_interval, mean_interval, round4
from .onnx_export import check_onnx, export, onnx_missing, pregen_scores
from .transfer import Dataset, Fitted, Spec, build_dataset, export_layout, fit, leave_one_group_out, linear

#: A probe needs this many times the map's minimum of right (and of wrong) train answers: it has more parameters.
PROBE_LABEL_FACTOR = 2
#: The pre-generation skip threshold skips at most this share of locally-correct answers (conformal, see above).
MAX_SKIP_CORRECT = 0.05
#: The pre-generation probe ships only when, on sources left out of its fit (LOSO), it skips at most this many times
#: ``MAX_SKIP_CORRECT`` of the locally-correct answers.
TRANSFER_SLACK = 2.0
#: The ONNX graph must reproduce the numpy estimator to within this (absolute, on a probability).
ONNX_TOLERANCE = 1e-4


def post_candidates(layer: int) -> list[Spec]:
    p, a = f"prompt@{layer}", f"answer_mean@{layer}"
    out = [Spec(blocks=(), l2=l2, novelty_block=p) for l2 in (1.0, 10.0, 100.0)]
    out += [Spec(blocks=blocks, pcs=pcs, l2=l2, novelty_block=p)
            for blocks in ((a,), (p, a)) for pcs in (8, 32) for l2 in (10.0, 100.0, 1000.0)]
    return out


def pre_candidates(layer: int) -> list[Spec]:
    p = f"prompt@{layer}"
    return [Spec(scalars=QUERY_FEATURES, blocks=(p,), pcs=pcs, l2=l2, novelty_block=p)
            for pcs in (8, 32) for l2 in (10.0, 100.0, 1000.0)]


def capture_problem(local: Any, records: list[dict[str, Any]]) -> Optional[str]:
    """Why no probe can be fitted from these answers (None when one can)."""
    if not getattr(local, "hidden_states", False):
        return "hidden-state capture is off for this engine (hidden_states=False)"
    if getattr(local, "capture_failure", None):
        return f"hidden states cannot be captured from this model: {local.capture_failure}"
    layer = local.hidden_layer
    need = (f"prompt@{layer}", f"answer_mean@{layer}")
    n = sum(1 for r in records if all((r.get("hidden") or {}).get(k) for k in need))
    if n < len(records) / 2:
        return (f"only {n} of {len(records)} answers carry block {layer}'s hidden states (answers cached by a run "
                "without capture): the probes need them")
    return onnx_missing()


def _cv(result: CVResult) -> dict[str, Any]:
    vals = [v for v in result.per_group.values() if v is not None]
    return {"mean": round4(result.mean), "interval": mean_interval(vals), "groups": len(vals), "pooled": round4(result.pooled)}


def _scored(scores: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    value = auroc(scores, y) if len(y) else None
    return {"auroc": round4(value), "interval": auroc_interval(scores, y) if value is not None else None,
            "labels": int(len(y))}


def fit_probes(local: Any, items: list[dict[str, Any]], records: list[dict[str, Any]], *, map_lofo: Optional[float],
               min_per_class: int, margin: float, out_dir: Path, trained_on: str
               ) -> tuple[dict[str, Any], Optional[tuple[np.ndarray, np.ndarray, str]]]:
    """Fit, select and export both probes into ``out_dir`` (see the module docstring): (the report's ``probes``
    part, and when the post-generation probe ships, its calibration-split confidences, labels and confidence id).
    ``items`` carry their ``split``. A probe not shipped this time has its earlier file removed."""
    layer = getattr(local, "hidden_layer", None)
    report: dict[str, Any] = {"architecture": getattr(local, "architecture", "") or None, "block": layer,
                              "node": BLOCK_OUTPUT.format(layer=layer) if layer is not None else None}
    for name in (PROBE_FILE, PREGEN_FILE):
        (out_dir / name).unlink(missing_ok=True)
    why = capture_problem(local, records)
    if why is not None:
        report["why"] = why
        return report, None
    data = build_dataset(items, records, blocks=[f"prompt@{layer}", f"answer_mean@{layer}"])
    pool = data.subset(data.split == "train")
    right, wrong, need = int(pool.y.sum()), int((1 - pool.y).sum()), PROBE_LABEL_FACTOR * min_per_class
    report["labels"] = {"train": len(pool), "right": right, "wrong": wrong}
    if min(right, wrong) < need:
        report["why"] = (f"{right} right and {wrong} wrong train answers with hidden states; a probe needs {need} of "
                         f"each: about {need - min(right, wrong)} more {'right' if right < wrong else 'wrong'} answers")
        return report, None
    meta = {"model_sha256": local.fingerprint, "engine": json.dumps(local.golden()), "trained_on": trained_on,
            "validation": "mean leave-one-family-out AUROC on the fit set's train split"}
    report["post"], calibration = _post(local, data, pool, layer, map_lofo, margin, out_dir, meta)
    report["pre"] = _pre(local, data, pool, layer, out_dir, meta)
    return report, calibration


def _post(local: Any, data: Dataset, pool: Dataset, layer: int, map_lofo: Optional[float], margin: float,
          out_dir: Path, meta: dict[str, str]) -> tuple[dict[str, Any], Optional[tuple[np.ndarray, np.ndarray, str]]]:
    best, table = select(post_candidates(layer), pool, progress=None, level="lofo")
    best, table2 = select([best, replace(best, gate="novelty")], pool, progress=None, level="lofo")
    lofo, loso = cross_validate(best, pool, "lofo"), cross_validate(best, pool, "loso")
    final = fit(best, pool)
    out: dict[str, Any] = {"spec": best.label(), "candidates": len(table) + 1, "lofo_auroc": _cv(lofo),
                           "loso_auroc": _cv(loso), "map_lofo_auroc": round4(map_lofo)}
    for name, split in (("test", "test"), ("heldout", "heldout-families")):
        part = data.subset(data.split == split)
        out[f"{name}_auroc"] = _scored(final.predict(part)["combined"], part.y)
    if map_lofo is None or lofo.mean is None or lofo.mean < map_lofo + margin:
        out["shipped"] = False
        out["why"] = (f"its LOFO AUROC {lofo.mean or 0:.3f} does not beat the training-free map's "
                      f"{map_lofo or 0:.3f} by {margin:g}: the map stays the confidence")
        return out, None
    layout = export_layout(best, local.n_embd)
    path = out_dir / PROBE_FILE
    extra = {"model_type": json.dumps({"type": "transfer-logistic", **best.to_dict()}),
             "validation_auroc": f"{lofo.mean:.4f}", "lofo_mean_auroc": f"{lofo.mean:.4f}",
             "loso_mean_auroc": f"{(loso.mean or 0):.4f}", "novelty_tau": f"{final.tau:.4f}", "gate": best.gate,
             "fallback": "training-free logistic" if best.gate == "novelty" else "none"}
    export(path, "post", linear(final, layout), layout, {**meta, **extra})
    if not _reproduced(path, final, data, layout, "post", out):
        return out, None
    cal = data.subset(data.split == "calibration")
    out["shipped"] = True
    confidence_id = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return out, (final.predict(cal)["combined"], cal.y, confidence_id)


def _reproduced(path: Path, fitted: Fitted, data: Dataset, layout: list[list[Any]], kind: str,
                out: dict[str, Any]) -> bool:
    """Whether onnxruntime reproduces the numpy estimator on ``data`` (the file is removed when not)."""
    check = check_onnx(path, fitted, data, layout, kind)
    out["onnx"] = {"max_abs_diff": max(check["onnx_max_abs_diff"].values()), "bytes": check["bytes"],
                   "ms_per_query": round(check["onnx_ms_per_query"], 4)}
    if out["onnx"]["max_abs_diff"] > ONNX_TOLERANCE:
        path.unlink(missing_ok=True)
        out["shipped"], out["why"] = False, f"onnxruntime differs from the estimator by {out['onnx']['max_abs_diff']:.2g}"
        return False
    return True


def _loso_correct_skipped(spec: Spec, pool: Dataset) -> Optional[float]:
    """The share of locally-correct answers a pre-generation probe skips on a source it was not fitted on: for each
    source, the probe and its skip threshold (the conformal rule, on the other sources' correct answers) from the
    other sources; pooled over every source's correct answers. By source, not family: the families of one source
    leak into each other, and the held-out families come from sources seen nowhere else."""
    skipped, total = 0, 0
    for _, train, test in leave_one_group_out(pool.source):
        inner, outer = pool.subset(train), pool.subset(test)
        if not (outer.y > 0.5).any():
            continue
        pre = fit(replace(spec, gate="novelty"), inner)
        pre.fallback = None
        correct = np.sort(pregen_scores(pre, inner)[inner.y > 0.5])
        k = math.floor(MAX_SKIP_CORRECT * (len(correct) + 1))
        if k < 1:
            return None
        p = pregen_scores(pre, outer)[outer.y > 0.5]
        skipped, total = skipped + int((p < correct[k - 1]).sum()), total + len(p)
    return round4(skipped / total) if total else None


def _pre(local: Any, data: Dataset, pool: Dataset, layer: int, out_dir: Path, meta: dict[str, str]) -> dict[str, Any]:
    best, table = select(pre_candidates(layer), pool, progress=None, level="lofo")
    lofo = cross_validate(best, pool, "lofo")
    pre = fit(replace(best, gate="novelty"), pool)  # the gate's centroids: a novel prompt is never skipped
    pre.fallback = None
    out: dict[str, Any] = {"spec": best.label(), "candidates": len(table), "lofo_auroc": _cv(lofo)}
    cal = data.subset(data.split == "calibration")
    correct = np.sort(pregen_scores(pre, cal)[cal.y > 0.5])
    k = math.floor(MAX_SKIP_CORRECT * (len(correct) + 1))
    out["loso_correct_skipped"] = _loso_correct_skipped(best, pool)
    low = (out["lofo_auroc"]["interval"] or [0.0])[0]
    if out["loso_correct_skipped"] is None or out["loso_correct_skipped"] > TRANSFER_SLACK * MAX_SKIP_CORRECT:
        out["shipped"], out["why"] = False, (
            f"on sources left out of its training it skips {out['loso_correct_skipped']} of the locally-correct "
            f"answers (LOSO), more than {TRANSFER_SLACK:g} x the {MAX_SKIP_CORRECT:g} it promises on its own mixture")
        return out
    if low <= 0.5:
        out["shipped"], out["why"] = False, (f"its LOFO AUROC interval {out['lofo_auroc']['interval']} does not "
                                             "lie above 0.5: it would skip queries it cannot judge")
        return out
    if k < 1:
        need = math.ceil(1 / MAX_SKIP_CORRECT) - 1
        out["shipped"], out["why"] = False, (f"{len(correct)} locally-correct calibration answers; a skip bound of "
                                             f"{MAX_SKIP_CORRECT:g} needs {need}: about {need - len(correct)} more")
        return out
    threshold = float(correct[k - 1])
    out["skip_threshold"] = threshold
    out["skip_bound"] = f"at most {k / (len(correct) + 1):.3f} of locally-correct answers skipped (n={len(correct)})"
    for name, split in (("test", "test"), ("heldout", "heldout-families")):
        part = data.subset(data.split == split)
        p = pregen_scores(pre, part)
        skipped, right = p < threshold, part.y > 0.5
        out[name] = {"auroc": round4(auroc(p, part.y)) if len(part) else None, "labels": len(part),
                     "skip_rate": round4(skipped.mean()) if len(part) else None,
                     "correct_skipped": round4(skipped[right].mean()) if right.any() else None}
    pre_layout = [[f"prompt@{layer}", local.n_embd], ["features", list(QUERY_FEATURES)]]
    path = out_dir / PREGEN_FILE
    extra = {"model_type": json.dumps({"type": "transfer-logistic", **best.to_dict()}),
             "validation_auroc": f"{(lofo.mean or 0):.4f}", "novelty_tau": f"{pre.tau:.4f}",
             "skip_threshold": f"{threshold:.8g}"}
    export(path, "pre", linear(pre, pre_layout), pre_layout, {**meta, **extra})
    if _reproduced(path, pre, data, pre_layout, "pre", out):
        out["shipped"] = True
    return out
