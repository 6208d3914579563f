"""The hidden-state probes as ONNX graphs: the export (needs the ``onnx`` package, the ``[train]`` extra; the
runtime needs only onnxruntime), the raw input rows a graph reads, and a check that onnxruntime reproduces the
numpy estimator.

Used by ``edgeroute fit`` (any GGUF) and ``tools/train_probe.py`` (the shipped probes of the default model).
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..signals.probe import LAYOUT_VERSION, SCALAR_FEATURES
from .transfer import Dataset, Fitted


def onnx_missing() -> Optional[str]:
    """Why probes cannot be exported here (None when the ``onnx`` package imports)."""
    if importlib.util.find_spec("onnx") is None:
        return "the onnx package is not installed (pip install 'edgeroute[train]')"
    return None


def export(path: Path, kind: str, params: dict[str, Any], layout: list[list[Any]], meta: dict[str, str]) -> None:
    """Graph: z = (x - mean) / scale; probe = sigmoid(z . w + b) (or an MLP's logit); novelty = distance of z's first block (``n_embd``
    columns) to the nearest centroid; post: combined = probe if novelty < tau else sigmoid(z . wf + bf); pre:
    pregen = probe if novelty < tau else 1. A ``tau`` of infinity (no gate) is stored as float32's largest value."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    f32 = np.float32
    arr = numpy_helper.from_array
    mean, scale, centroids = params["mean"], params["scale"], params["centroids"]
    d, n_embd = len(mean), int(params["n_embd"])
    tau = min(float(params["tau"]), float(np.finfo(f32).max))
    inits = [arr(mean.astype(f32), "mean"), arr((1 / scale).astype(f32), "inv"),
             arr(np.array([0], np.int64), "s0"), arr(np.array([n_embd], np.int64), "s1"),
             arr(np.array([1], np.int64), "ax"), arr(centroids.T.astype(f32), "ct"),
             arr((centroids**2).sum(1).astype(f32)[None, :], "c2"), arr(np.array([tau], f32), "tau"),
             arr(np.array([-2.0], f32), "m2"), arr(np.array([0.0], f32), "zero")]
    nodes = [helper.make_node("Sub", ["features", "mean"], ["centred"]),
             helper.make_node("Mul", ["centred", "inv"], ["z"])]
    if "w1" in params:  # one hidden ReLU layer
        hidden = params["w1"].shape[1]
        inits += [arr(params["w1"].astype(f32), "w1"), arr(params["b1"].astype(f32), "b1"),
                  arr(params["w2"].astype(f32).reshape(hidden, 1), "w2"), arr(np.array([params["b2"]], f32), "b2")]
        nodes += [helper.make_node("MatMul", ["z", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h1"]),
                  helper.make_node("Relu", ["h1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["o0"]),
                  helper.make_node("Add", ["o0", "b2"], ["probe_logit"])]
    else:
        inits += [arr(params["w"].astype(f32).reshape(d, 1), "wp"), arr(np.array([params["b"]], f32), "bp")]
        nodes += [helper.make_node("MatMul", ["z", "wp"], ["zp"]),
                  helper.make_node("Add", ["zp", "bp"], ["probe_logit"])]
    nodes += [helper.make_node("Sigmoid", ["probe_logit"], ["probe"]),
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
             helper.make_node("Less", ["novelty", "tau"], ["familiar"])]
    outputs = [helper.make_tensor_value_info("probe", TensorProto.FLOAT, ["n", 1]),
               helper.make_tensor_value_info("novelty", TensorProto.FLOAT, ["n", 1])]
    if kind == "post":
        inits += [arr(params["wf"].astype(f32).reshape(d, 1), "wf"), arr(np.array([params["bf"]], f32), "bf")]
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
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeroute")
    model.ir_version = 8
    for k, v in {**meta, "feature_layout": json.dumps(layout), "version": str(LAYOUT_VERSION), "kind": kind}.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def rows(data: Dataset, layout: list[list[Any]]) -> np.ndarray:
    """The raw ONNX input rows of ``data`` for ``layout`` (float32)."""
    parts = []
    for name, width in layout:
        if isinstance(width, int):
            parts.append(data.vectors[name])
        else:
            parts.append(data.scalars[:, [SCALAR_FEATURES.index(f) for f in width]])
    return np.hstack(parts).astype(np.float32)


def pregen_scores(pre: Fitted, data: Dataset) -> np.ndarray:
    """What the pre-generation graph outputs: the probe for familiar prompts, 1.0 (never skip) for novel ones."""
    out = pre.predict(data)
    return np.where(out["novelty"] < pre.tau, out["probe"], 1.0)


def check_onnx(path: Path, fitted: Fitted, data: Dataset, layout: list[list[Any]], kind: str) -> dict[str, Any]:
    """Max |ONNX - numpy| per output on ``data``, and the ms per one-row inference."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    x = rows(data, layout)
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"features": x})))
    ref = fitted.predict(data)
    if kind == "pre":
        ref = {"probe": ref["probe"], "pregen": pregen_scores(fitted, data)}
    if fitted.spec.gate == "none" and kind == "post":
        ref.pop("novelty")  # an ungated probe's graph distance is never read (ProbeSignal leaves it out)
    diff = {k: float(np.abs(outs[k][:, 0] - ref[k]).max()) for k in ref if k in outs}
    row = x[:1]
    for _ in range(50):
        sess.run(None, {"features": row})
    t = time.perf_counter()
    for _ in range(1000):
        sess.run(None, {"features": row})
    return {"onnx_max_abs_diff": diff, "onnx_ms_per_query": time.perf_counter() - t, "bytes": path.stat().st_size}
