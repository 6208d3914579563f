"""Train the hidden-state probes of a local model and export them to ONNX (``models/probe.onnx``, ``pregen.onnx``).

Features come from the evaluation harness's cached runs (``run_local(need_hidden=True)``: the hidden states of the
engine's ``hidden_layer`` block at the end of the prompt, at the end of the answer and averaged over the answer, the
perplexity features, the query features), labels from its grader. Only the ``train`` split is trained on. Models
are picked by 5-fold cross-validated AUROC on it (folds by item hash): L2 logistic regression at two strengths or a
one-hidden-layer MLP (numpy, Adam, fixed seed), each on several subsets of the feature blocks (``BLOCK_SETS``).

Which block: ``capture.default_layer`` (19 of SmolLM2-135M's 30, 0-based) was chosen the same way, on the train split
only, by ``tools/scan_layers.py`` (block states read with transformers from the same GGUF): answer-averaged states of
blocks 9-22 reach 0.926-0.937 cross-validated AUROC, block 19 0.936, the final post-norm layer 0.920. Then:

- ``probe.onnx``: ``probe``, the chosen in-distribution model;
  ``novelty``, the distance of the prompt's hidden state to the nearest training family's centroid; and
  ``combined``: the probe where the prompt looks like the training families (novelty below the 99th percentile of
  the training items' own), else a fallback chosen by leave-one-family-out AUROC on train (a probe learns the
  families it saw; on an unseen family it has little to say, so a family-agnostic score takes over);
- ``pregen.onnx``: the same selection on [prompt hidden, query] -> P(correct) before generating (1.0 for novel
  prompts: never skip what the probe does not know), with the skip threshold chosen on the ``calibration`` split so
  that at most ``--max-skip-correct`` of the locally-correct answers would be skipped.

Prints validation and test / heldout-families AUROCs, checks that onnxruntime reproduces the numpy outputs, and
times one ONNX inference.

    python tools/train_probe.py                       # default model -> models/probe.onnx, models/pregen.onnx
    python tools/train_probe.py --out-dir /tmp/probes
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from _fitting import fit_logistic as _fit_logistic
from _fitting import sigmoid
from edgeroute.bench.datasets import load_items
from edgeroute.bench.grading import grade
from edgeroute.bench.metrics import auroc
from edgeroute.bench.runner import RunParams, decode_vector, run_local
from edgeroute.local.llama import LlamaCppModel
from edgeroute.signals.perplexity import FEATURES as PPL
from edgeroute.signals.perplexity import PerplexitySignal
from edgeroute.signals.probe import LAYOUT_VERSION, layout
from edgeroute.signals.query import query_features

SEED = 20261122


# --- data ------------------------------------------------------------------------------------------------------------
def collect(model: LlamaCppModel, max_tokens: int) -> dict[str, dict[str, np.ndarray]]:
    items = load_items()
    records, _ = run_local(items, model, RunParams(max_tokens=max_tokens), need_hidden=True)
    ppl_map = PerplexitySignal().mapping
    out: dict[str, dict[str, list[Any]]] = {}
    for item, r in zip(items, records):
        ph, ah, am = (decode_vector(r.get(k)) for k in ("prompt_hidden", "answer_hidden", "answer_hidden_mean"))
        sig = r["signals"]
        if ph is None or ah is None or am is None or not all(f in sig for f in PPL):
            continue  # no scored token: the Router escalates those anyway
        d = out.setdefault(item["split"], {k: [] for k in ("ph", "ah", "am", "ppl", "q", "y", "id", "ppl_conf")})
        messages = [{"role": "user", "content": item["question"]}]
        d["ph"].append(ph)
        d["ah"].append(ah)
        d["am"].append(am)
        d["ppl"].append([sig[f] for f in PPL])
        d["q"].append(query_features(messages))
        d["y"].append(grade(r["text"], item))
        d["id"].append(item["id"])
        d["ppl_conf"].append(ppl_map([sig[f] for f in PPL]))
    return {s: {k: np.asarray(v) for k, v in d.items()} for s, d in out.items()}


def matrix(d: dict[str, np.ndarray], kind: str) -> np.ndarray:
    """Rows in ``layout(kind)`` order."""
    parts = [d["ph"]] + ([d["ah"], d["am"], d["ppl"]] if kind == "post" else []) + [d["q"]]
    return np.hstack(parts).astype(np.float64)


# --- models ----------------------------------------------------------------------------------------------------------
def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, iters: int = 60) -> tuple[np.ndarray, float]:
    return _fit_logistic(x, y, l2, iters=iters, tol=1e-7)


def fit_mlp(x: np.ndarray, y: np.ndarray, hidden: int, wd: float, epochs: int, seed: int) -> dict[str, np.ndarray]:
    """One hidden ReLU layer, full-batch Adam on the logistic loss with weight decay (fixed seed)."""
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    params = {"w1": rng.normal(0, 1 / np.sqrt(d), (d, hidden)), "b1": np.zeros(hidden),
              "w2": rng.normal(0, 1 / np.sqrt(hidden), (hidden, 1)), "b2": np.zeros(1)}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(v_) for k, v_ in params.items()}
    lr, b1, b2, eps = 3e-3, 0.9, 0.999, 1e-8
    for t in range(1, epochs + 1):
        h_pre = x @ params["w1"] + params["b1"]
        h = np.maximum(h_pre, 0)
        p = sigmoid((h @ params["w2"] + params["b2"])[:, 0])
        g_out = ((p - y) / len(y))[:, None]
        grads = {"w2": h.T @ g_out + wd * params["w2"], "b2": g_out.sum(0)}
        g_h = (g_out @ params["w2"].T) * (h_pre > 0)
        grads["w1"] = x.T @ g_h + wd * params["w1"]
        grads["b1"] = g_h.sum(0)
        for k in params:
            m[k] = b1 * m[k] + (1 - b1) * grads[k]
            v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
            params[k] -= lr * (m[k] / (1 - b1**t)) / (np.sqrt(v[k] / (1 - b2**t)) + eps)
    return params


def mlp_logit(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return (np.maximum(x @ params["w1"] + params["b1"], 0) @ params["w2"] + params["b2"])[:, 0]


CANDIDATES: list[dict[str, Any]] = [{"type": "logistic", "l2": l2} for l2 in (100.0, 1000.0)] + [
    {"type": "mlp", "hidden": 32, "wd": wd, "epochs": 400} for wd in (1e-3, 1e-2)
]
#: Feature blocks the in-distribution probe may use, per kind (names as in ``layout``, without the ``@layer``).
BLOCK_SETS = {"post": [("prompt_hidden", "answer_hidden", "answer_hidden_mean", "perplexity", "query"),
                       ("answer_hidden", "answer_hidden_mean", "perplexity", "query"),
                       ("prompt_hidden", "answer_hidden_mean", "perplexity", "query"),
                       ("answer_hidden_mean", "perplexity", "query"),
                       ("answer_hidden", "perplexity", "query")],
              "pre": [("prompt_hidden", "query")]}
FOLDS = 5
#: Family-agnostic fallbacks for novel prompts: (name, perplexity columns used).
FALLBACKS = [("perplexity", (0, 1, 2, 3)), ("mean_nll", (0,))]


def fit(spec: dict[str, Any], x: np.ndarray, y: np.ndarray) -> Any:
    if spec["type"] == "logistic":
        return fit_logistic(x, y, spec["l2"])
    return fit_mlp(x, y, spec["hidden"], spec["wd"], spec["epochs"], SEED)


def logit(spec: dict[str, Any], model: Any, x: np.ndarray) -> np.ndarray:
    if spec["type"] == "logistic":
        w, b = model
        return x @ w + b
    return mlp_logit(model, x)


def columns(kind: str, n_embd: int, layer: int, blocks: tuple[str, ...]) -> np.ndarray:
    """Boolean mask over the ``layout(kind)`` vector selecting ``blocks``."""
    mask = []
    for name, width in layout(kind, n_embd, layer):
        mask += [name.split("@")[0] in blocks] * (width if isinstance(width, int) else len(width))
    return np.array(mask)


def select(kind: str, n_embd: int, layer: int, z: np.ndarray, y: np.ndarray,
           fold: np.ndarray) -> tuple[dict[str, Any], list]:
    """The in-distribution model with the best cross-validated AUROC (out-of-fold scores pooled over ``FOLDS``
    folds) over ``BLOCK_SETS`` x ``CANDIDATES``."""
    results = []
    for blocks in BLOCK_SETS[kind]:
        zc = np.where(columns(kind, n_embd, layer, blocks), z, 0.0)
        for spec in CANDIDATES:
            oof = np.zeros(len(y))
            for f in range(FOLDS):
                held = fold == f
                oof[held] = logit(spec, fit(spec, zc[~held], y[~held]), zc[held])
            results.append({**spec, "blocks": list(blocks), "cv_auroc": auroc(oof, y)})
            print(f"  {kind} {spec} {blocks}: cv AUROC {results[-1]['cv_auroc']:.4f}", file=sys.stderr, flush=True)
    best = max(results, key=lambda r: r["cv_auroc"])
    return {k: v for k, v in best.items() if k != "cv_auroc"}, results


def lofo_auroc(x: np.ndarray, y: np.ndarray, fams: np.ndarray) -> float:
    """Mean within-family AUROC of a logistic fitted on the other families (leave one family out)."""
    scores = []
    for f in np.unique(fams):
        m = fams == f
        mean, scale = x[~m].mean(0), x[~m].std(0) + 1e-6
        w, b = fit_logistic((x[~m] - mean) / scale, y[~m], 1.0)
        a = auroc(((x[m] - mean) / scale) @ w + b, y[m])
        if a is not None:
            scores.append(a)
    return float(np.mean(scores))


def novelty(zph: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Euclidean distance to the nearest centroid, in standardized prompt-hidden space."""
    d2 = (zph**2).sum(1)[:, None] - 2 * zph @ centroids.T + (centroids**2).sum(1)[None, :]
    return np.sqrt(np.maximum(d2.min(1), 0.0))


def lofo_novel_share(zph: np.ndarray, fams: np.ndarray) -> dict[str, float]:
    """Per family: the share of its items the novelty test flags when the centroids and the 99th-percentile
    threshold come from the other families only (how well an unseen family would be recognised as unseen)."""
    out = {}
    for f in np.unique(fams):
        rest = fams != f
        cents = np.stack([zph[fams == g].mean(0) for g in np.unique(fams[rest])])
        tau = np.percentile(novelty(zph[rest], cents), 99)
        out[str(f)] = float((novelty(zph[~rest], cents) >= tau).mean())
    return out


# --- ONNX --------------------------------------------------------------------------------------------------------------
def export(path: Path, kind: str, spec: dict[str, Any], model: Any, mean: np.ndarray, scale: np.ndarray,
           n_embd: int, centroids: np.ndarray, tau: float, fallback: tuple[np.ndarray, float] | None,
           meta: dict[str, str]) -> None:
    """Graph: z = (x - mean) / scale; probe = sigmoid(model(z)) (unused columns have zero weights); novelty =
    distance of z[:n_embd] to the nearest centroid; post: combined = probe if novelty < tau else sigmoid(z . wf + bf);
    pre: pregen = probe if novelty < tau else 1."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    d = len(mean)
    f32 = np.float32
    arr = numpy_helper.from_array
    inits = [arr(mean.astype(f32), "mean"), arr((1 / scale).astype(f32), "inv"),
             arr(np.array([0], np.int64), "s0"), arr(np.array([n_embd], np.int64), "s1"),
             arr(np.array([1], np.int64), "ax"), arr(centroids.T.astype(f32), "ct"),
             arr((centroids**2).sum(1).astype(f32)[None, :], "c2"), arr(np.array([tau], f32), "tau"),
             arr(np.array([-2.0], f32), "m2"), arr(np.array([0.0], f32), "zero")]
    nodes = [helper.make_node("Sub", ["features", "mean"], ["centred"]), helper.make_node("Mul", ["centred", "inv"], ["z"])]
    if spec["type"] == "logistic":
        w, b = model
        inits += [arr(w.astype(f32).reshape(d, 1), "wp"), arr(np.array([b], f32), "bp")]
        nodes += [helper.make_node("MatMul", ["z", "wp"], ["zp"]), helper.make_node("Add", ["zp", "bp"], ["probe_logit"])]
    else:
        inits += [arr(model[k].astype(f32), k) for k in ("w1", "b1", "w2", "b2")]
        nodes += [helper.make_node("MatMul", ["z", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h1"]),
                  helper.make_node("Relu", ["h1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["o0"]),
                  helper.make_node("Add", ["o0", "b2"], ["probe_logit"])]
    nodes += [
        helper.make_node("Sigmoid", ["probe_logit"], ["probe"]),
        helper.make_node("Slice", ["z", "s0", "s1", "ax"], ["zph"]),
        helper.make_node("Mul", ["zph", "zph"], ["zph2"]),
        helper.make_node("ReduceSum", ["zph2", "ax"], ["x2"], keepdims=1),
        helper.make_node("MatMul", ["zph", "ct"], ["xc"]),
        helper.make_node("Mul", ["xc", "m2"], ["xc2"]),
        helper.make_node("Add", ["x2", "xc2"], ["d0"]),
        helper.make_node("Add", ["d0", "c2"], ["d1"]),
        helper.make_node("ReduceMin", ["d1"], ["dmin"], axes=[1], keepdims=1),
        helper.make_node("Max", ["dmin", "zero"], ["dpos"]),
        helper.make_node("Sqrt", ["dpos"], ["novelty"]),
        helper.make_node("Less", ["novelty", "tau"], ["familiar"]),
    ]
    outputs = [helper.make_tensor_value_info("probe", TensorProto.FLOAT, ["n", 1]),
               helper.make_tensor_value_info("novelty", TensorProto.FLOAT, ["n", 1])]
    if kind == "post":
        assert fallback is not None
        wf, bf = fallback
        inits += [arr(wf.astype(f32).reshape(d, 1), "wf"), arr(np.array([bf], f32), "bf")]
        nodes += [helper.make_node("MatMul", ["z", "wf"], ["zf"]), helper.make_node("Add", ["zf", "bf"], ["fb_logit"]),
                  helper.make_node("Sigmoid", ["fb_logit"], ["fallback"]),
                  helper.make_node("Where", ["familiar", "probe", "fallback"], ["combined"])]
        outputs.append(helper.make_tensor_value_info("combined", TensorProto.FLOAT, ["n", 1]))
    else:
        inits.append(arr(np.array([[1.0]], f32), "one"))
        nodes.append(helper.make_node("Where", ["familiar", "probe", "one"], ["pregen"]))
        outputs.append(helper.make_tensor_value_info("pregen", TensorProto.FLOAT, ["n", 1]))
    graph = helper.make_graph(nodes, f"edgeroute_{kind}_probe",
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", d])], outputs, inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeroute")
    onnx_model.ir_version = 8
    for k, v in meta.items():
        onnx_model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(onnx_model)
    path.write_bytes(onnx_model.SerializeToString())


# --- main --------------------------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="GGUF path (default: the default model)")
    ap.add_argument("--out-dir", default=str(Path(__file__).resolve().parents[1] / "models"))
    ap.add_argument("--max-tokens", type=int, default=RunParams().max_tokens)
    ap.add_argument("--max-skip-correct", type=float, default=0.05,
                    help="pre-generation threshold: at most this share of locally-correct answers skipped")
    args = ap.parse_args()
    t0 = time.perf_counter()
    model = LlamaCppModel(args.model)
    n_embd, fingerprint, layer = model.n_embd, model.fingerprint, model.hidden_layer
    data = collect(model, args.max_tokens)
    model.close()
    family = {i["id"]: i["family"] for i in load_items()}
    train = data["train"]
    fams = np.array([family[i] for i in train["id"]])
    fold = np.array([int(hashlib.sha256(i.encode()).hexdigest()[:8], 16) % FOLDS for i in train["id"]])
    y = train["y"].astype(np.float64)
    report: dict[str, Any] = {"n_train": int(len(y)), "folds": FOLDS, "hidden_layer": layer}
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    for kind, file in (("post", "probe.onnx"), ("pre", "pregen.onnx")):
        x = matrix(train, kind)
        mean, scale = x.mean(0), x.std(0) + 1e-6
        z = (x - mean) / scale
        spec, tried = select(kind, n_embd, layer, z, y, fold)
        cols = columns(kind, n_embd, layer, tuple(spec["blocks"]))
        final = fit(spec, np.where(cols, z, 0.0), y)
        if spec["type"] == "logistic":  # exact zeros on the unused columns
            final = (np.where(cols, final[0], 0.0), final[1])
        else:
            final["w1"][~cols] = 0.0
        centroids = np.stack([z[fams == f, :n_embd].mean(0) for f in np.unique(fams)])
        tau = float(np.percentile(novelty(z[:, :n_embd], centroids), 99))
        fallback, fb_name, fb_scores = None, None, {}
        if kind == "post":
            ppl0 = int(np.argmax(columns(kind, n_embd, layer, ("perplexity",))))
            for name, ppl_cols in FALLBACKS:
                fb_scores[name] = lofo_auroc(train["ppl"][:, list(ppl_cols)], y, fams)
            fb_name = max(fb_scores, key=fb_scores.get)
            ppl_cols = dict(FALLBACKS)[fb_name]
            w, b = fit_logistic(z[:, [ppl0 + c for c in ppl_cols]], y, 1.0)
            wf = np.zeros(x.shape[1])
            wf[[ppl0 + c for c in ppl_cols]] = w
            fallback = (wf, b)

        def predict(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            zz = (matrix(d, kind) - mean) / scale
            probe = sigmoid(logit(spec, final, np.where(cols, zz, 0.0)))
            nov = novelty(zz[:, :n_embd], centroids)
            out = {"probe": probe, "novelty": nov}
            if fallback is not None:
                out["combined"] = np.where(nov < tau, probe, sigmoid(zz @ fallback[0] + fallback[1]))
            else:
                out["pregen"] = np.where(nov < tau, probe, 1.0)
            return out

        res: dict[str, Any] = {"model": spec, "candidates": tried, "novelty_tau": tau, "fallback": fb_name,
                               "lofo_novel_share": lofo_novel_share(z[:, :n_embd], fams),
                               "fallback_lofo_auroc": fb_scores}
        for split in ("test", "heldout-families", "calibration"):
            pr = predict(data[split])
            ys = data[split]["y"]
            res[split] = {"n": int(len(ys)), "probe_auroc": auroc(pr["probe"], ys),
                          "perplexity_auroc": auroc(data[split]["ppl_conf"], ys),
                          "mean_nll_auroc": auroc(-data[split]["ppl"][:, 0], ys),
                          "novel_share": float((pr["novelty"] >= tau).mean())}
            if "combined" in pr:
                res[split]["combined_auroc"] = auroc(pr["combined"], ys)
        meta = {"kind": kind, "model_sha256": fingerprint, "feature_layout": json.dumps(layout(kind, n_embd, layer)),
                "version": str(LAYOUT_VERSION), "trained_on": f"edgeroute bench train split ({len(y)} answers)",
                "model_type": json.dumps(spec), "validation_auroc": f"{max(t['cv_auroc'] for t in tried):.4f}",
                "validation": f"{FOLDS}-fold cross-validation on the train split (folds by item hash)",
                "novelty_tau": f"{tau:.4f}", "fallback": str(fb_name)}
        if kind == "pre":
            p_cal = predict(data["calibration"])["pregen"]
            correct = p_cal[data["calibration"]["y"]]
            threshold = float(np.quantile(correct, args.max_skip_correct)) if len(correct) else 0.0
            meta["skip_threshold"] = f"{threshold:.8g}"
            p_test = predict(data["test"])["pregen"]
            skipped = p_test < threshold
            res["skip_threshold"] = threshold
            res["test_skip_rate"] = float(skipped.mean())
            res["test_skipped_that_were_correct"] = float(data["test"]["y"][skipped].mean()) if skipped.any() else 0.0
        path = out_dir / file
        export(path, kind, spec, final, mean, scale, n_embd, centroids, tau, fallback, meta)

        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        xt = matrix(data["test"], kind).astype(np.float32)
        names = [o.name for o in sess.get_outputs()]
        outs = dict(zip(names, sess.run(None, {"features": xt})))
        ref = predict(data["test"])
        res["onnx_max_abs_diff"] = {k: float(np.abs(outs[k][:, 0] - ref[k]).max()) for k in names}
        row = xt[:1]
        for _ in range(50):
            sess.run(None, {"features": row})
        t = time.perf_counter()
        for _ in range(1000):
            sess.run(None, {"features": row})
        res["onnx_ms_per_query"] = time.perf_counter() - t  # 1000 runs: seconds == ms per run
        res["bytes"] = path.stat().st_size
        report[kind] = res
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
