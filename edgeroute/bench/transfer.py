"""Judging by transfer: the correctness estimator (numpy only), its data and the leave-one-group-out splitters;
cross-validation, selection and risk-coverage are in ``crossval``.

A user's traffic comes from task families the probe never saw. So a candidate (which features, which model, a
novelty gate or not) is scored by how well it ranks right above wrong answers on a family, or a whole source, that
was left out of its training, and the one shipped is the best by LOSO AUROC (``crossval.select``). Near-duplicate families of one
source (two EntityQuestions relations, two MMLU subject groups) leak into each other under LOFO, so LOSO is the
honest figure. Both are reported as the **mean** of the per-group AUROCs (groups with both classes) and as the
**pooled** AUROC of all out-of-fold scores together (what one threshold across all traffic sees).

The estimator (``Spec`` -> ``fit`` -> ``Fitted``): standardized scalar features (``SCALAR_FEATURES``), plus for each
hidden-state block its standardized values projected on their first ``pcs`` principal components (fitted on the
training rows only), then L2-regularised logistic regression (or a one-hidden-layer MLP). The projection is linear
in the raw inputs, so the shipped ONNX graph folds it into the first layer's weights (``linear``). Optionally a **novelty gate**: a prompt whose hidden state
(``prompt@<layer>``) lies farther from every training family's centroid than the 99th percentile of the training
items' own distances is scored by a training-free fallback (logistic on the scalar features alone) instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Optional

import numpy as np

from ..signals.probe import SCALAR_FEATURES

#: Novelty threshold: this percentile of the training items' own distances to their nearest family centroid.
NOVELTY_PERCENTILE = 99.0
#: A multiple-choice family whose local accuracy is within this of chance (1 / options) counts as "at chance".
CHANCE_MARGIN = 0.05


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50, tol: float = 1e-8,
                 weights: Optional[np.ndarray] = None) -> tuple[np.ndarray, float]:
    """Newton-IRLS logistic regression with an L2 penalty on the weights (not the intercept): (weights, intercept).
    ``weights`` (per row, optional) scale each row's loss. Stops after ``iters`` steps or when no weight moves more
    than ``tol``."""
    n, d = x.shape
    xb = np.hstack([np.ones((n, 1)), x])
    sw = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    w = np.zeros(d + 1)
    penalty = np.eye(d + 1) * l2
    penalty[0, 0] = 0.0
    for _ in range(iters):
        p = sigmoid(xb @ w)
        grad = xb.T @ (sw * (p - y)) + penalty @ w
        hess = xb.T @ (xb * (sw * p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < tol:
            break
    return w[1:], float(w[0])


MLP_EPOCHS = 300
MLP_SEED = 20261201


def fit_mlp(x: np.ndarray, y: np.ndarray, hidden: int, wd: float, epochs: int = MLP_EPOCHS,
            seed: int = MLP_SEED) -> dict[str, np.ndarray]:
    """One hidden ReLU layer, full-batch Adam on the mean logistic loss with weight decay ``wd`` (fixed seed)."""
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    params = {"w1": rng.normal(0, 1 / np.sqrt(d), (d, hidden)), "b1": np.zeros(hidden),
              "w2": rng.normal(0, 1 / np.sqrt(hidden), hidden), "b2": np.zeros(1)}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    lr, b1, b2, eps = 3e-3, 0.9, 0.999, 1e-8
    for t in range(1, epochs + 1):
        h_pre = x @ params["w1"] + params["b1"]
        h = np.maximum(h_pre, 0)
        p = sigmoid(h @ params["w2"] + params["b2"][0])
        g_out = (p - y) / len(y)
        grads = {"w2": h.T @ g_out + wd * params["w2"], "b2": np.array([g_out.sum()])}
        g_h = np.outer(g_out, params["w2"]) * (h_pre > 0)
        grads["w1"] = x.T @ g_h + wd * params["w1"]
        grads["b1"] = g_h.sum(0)
        for k in params:
            m[k] = b1 * m[k] + (1 - b1) * grads[k]
            v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
            params[k] -= lr * (m[k] / (1 - b1**t)) / (np.sqrt(v[k] / (1 - b2**t)) + eps)
    return params


# --- data --------------------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    """One row per graded local answer: ``y`` (1 = correct), group labels, ``scalars`` (n x ``SCALAR_FEATURES``)
    and hidden-state ``vectors`` by block name (n x n_embd each)."""

    ids: np.ndarray
    family: np.ndarray
    source: np.ndarray
    split: np.ndarray
    y: np.ndarray
    scalars: np.ndarray
    vectors: dict[str, np.ndarray]
    n_choices: np.ndarray  # options of a multiple-choice item, 0 otherwise

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask: np.ndarray) -> "Dataset":
        return Dataset(self.ids[mask], self.family[mask], self.source[mask], self.split[mask], self.y[mask],
                       self.scalars[mask], {k: v[mask] for k, v in self.vectors.items()}, self.n_choices[mask])


def build_dataset(items: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]],
                  blocks: Optional[Sequence[str]] = None) -> Dataset:
    """Rows for the items whose cached answer scored at least one token (the Router escalates the others anyway):
    the same features the Router computes (``scalar_values``), the hidden states named in ``blocks`` (default:
    every one cached), and the grader's verdict."""
    from ..signals.probe import scalar_values
    from .grading import grade
    from .runner import generation_of

    rows: dict[str, list[Any]] = {k: [] for k in ("ids", "family", "source", "split", "y", "scalars", "n_choices")}
    vectors: dict[str, list[np.ndarray]] = {}
    for item, record in zip(items, records):
        gen = generation_of(record)
        values = scalar_values(gen, [{"role": "user", "content": item["question"]}])
        if not all(f in values for f in SCALAR_FEATURES):
            continue
        names = list(blocks) if blocks is not None else sorted(gen.hidden)
        if not names or any(b not in gen.hidden for b in names):
            continue
        if not vectors:
            vectors = {b: [] for b in names}
        if set(vectors) != set(names):
            continue
        for b in names:
            vectors[b].append(gen.hidden[b])
        rows["ids"].append(item["id"])
        rows["family"].append(item["family"])
        rows["source"].append(item.get("source", item["family"]))
        rows["split"].append(item.get("split", "train"))
        rows["y"].append(1.0 if grade(record["text"], item) else 0.0)
        rows["scalars"].append([values[f] for f in SCALAR_FEATURES])
        rows["n_choices"].append(len(item.get("choices") or ()))
    return Dataset(np.asarray(rows["ids"]), np.asarray(rows["family"]), np.asarray(rows["source"]),
                   np.asarray(rows["split"]), np.asarray(rows["y"], dtype=np.float64),
                   np.asarray(rows["scalars"], dtype=np.float64).reshape(-1, len(SCALAR_FEATURES)),
                   {b: np.asarray(v, dtype=np.float32) for b, v in vectors.items()},
                   np.asarray(rows["n_choices"], dtype=np.int64))


# --- splitters ---------------------------------------------------------------------------------------------------
def leave_one_group_out(groups: np.ndarray) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(group, train mask, test mask) for each distinct group: the test side is that group's rows, the train side
    every other group's. No group is ever on both sides."""
    for g in sorted(set(groups.tolist())):
        test = groups == g
        yield str(g), ~test, test


def at_chance_families(data: Dataset) -> list[str]:
    """Multiple-choice families whose accuracy is within ``CHANCE_MARGIN`` of 1 / options (or below): their
    "correct" labels are mostly lucky guesses."""
    out = []
    for fam in sorted(set(data.family.tolist())):
        m = data.family == fam
        k = data.n_choices[m]
        if k.max() >= 2 and data.y[m].mean() <= float(np.mean(1.0 / np.maximum(k, 1))) + CHANCE_MARGIN:
            out.append(fam)
    return out


# --- the estimator -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """One candidate estimator. ``scalars``: scalar features used; ``blocks``: hidden-state blocks used (each
    reduced to ``pcs`` principal components); ``l2``: ridge strength on the standardized inputs; ``gate``: "none"
    or "novelty" (novel prompts get the training-free fallback); ``train_on``: "all" or "no-chance" (multiple-choice
    families at chance left out of training; they stay in every evaluation)."""

    scalars: tuple[str, ...] = SCALAR_FEATURES
    blocks: tuple[str, ...] = ()
    pcs: int = 32
    l2: float = 10.0
    gate: str = "none"
    train_on: str = "all"
    novelty_block: str = "prompt@19"
    #: 0: logistic regression; > 0: one hidden ReLU layer of this many units (weight decay l2 / n).
    hidden: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scalars"], d["blocks"] = list(self.scalars), list(self.blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Spec":
        return cls(**{**d, "scalars": tuple(d["scalars"]), "blocks": tuple(d["blocks"])})

    def label(self) -> str:
        blocks = "+".join(self.blocks) or "no hidden states"
        model = f"MLP {self.hidden}" if self.hidden else "logistic"
        return (f"{model}: {blocks}{f' ({self.pcs} PCs)' if self.blocks else ''}, {len(self.scalars)} scalars, "
                f"l2 {self.l2:g}, gate {self.gate}, train on {self.train_on}")


@dataclass
class Fitted:
    spec: Spec
    s_mean: np.ndarray
    s_scale: np.ndarray
    s_cols: np.ndarray  # indices into SCALAR_FEATURES
    blocks: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    # block -> (mean, scale, basis (n_embd x pcs), pc scale)
    w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    b: float = 0.0
    mlp: Optional[dict[str, np.ndarray]] = None  # w1 (design x hidden), b1, w2 (hidden), b2 (1)
    fallback: Optional[tuple[np.ndarray, float]] = None  # over standardized s_cols
    centroids: Optional[np.ndarray] = None  # over the standardized novelty block
    nov_mean: Optional[np.ndarray] = None
    nov_scale: Optional[np.ndarray] = None
    tau: float = float("inf")

    def _design(self, data: Dataset) -> np.ndarray:
        parts = [(data.scalars[:, self.s_cols] - self.s_mean) / self.s_scale]
        for name, (mean, scale, basis, pc_scale) in self.blocks.items():
            parts.append((((data.vectors[name] - mean) / scale) @ basis) / pc_scale)
        return np.hstack(parts)

    def _logit(self, x: np.ndarray) -> np.ndarray:
        if self.mlp is not None:
            m = self.mlp
            return np.maximum(x @ m["w1"] + m["b1"], 0.0) @ m["w2"] + float(m["b2"][0])
        return x @ self.w + self.b

    def novelty(self, data: Dataset) -> np.ndarray:
        if self.centroids is None:
            return np.zeros(len(data))
        z = (data.vectors[self.spec.novelty_block] - self.nov_mean) / self.nov_scale
        return _nearest(z, self.centroids)

    def predict(self, data: Dataset) -> dict[str, np.ndarray]:
        """``probe``, ``novelty``, ``fallback`` and ``combined`` (the confidence) per row."""
        probe = sigmoid(self._logit(self._design(data)))
        nov = self.novelty(data)
        out = {"probe": probe, "novelty": nov, "combined": probe}
        if self.fallback is not None:
            zs = (data.scalars[:, self.s_cols] - self.s_mean) / self.s_scale
            fb = sigmoid(zs @ self.fallback[0] + self.fallback[1])
            out["fallback"] = fb
            out["combined"] = np.where(nov < self.tau, probe, fb)
        return out


def _nearest(z: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    d2 = (z**2).sum(1)[:, None] - 2 * z @ centroids.T + (centroids**2).sum(1)[None, :]
    return np.sqrt(np.maximum(d2.min(1), 0.0))


def _standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0)
    scale = x.std(0)
    return mean, np.where(scale > 1e-8, scale, 1.0)


_PCA_CACHE: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
_PCA_MAX = 64


def _pca(x: np.ndarray, key: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, scale, the first ``_PCA_MAX`` principal axes of the standardized rows), memoised by ``key`` (the
    block and the training rows): cross-validation asks for the same fold's PCA once per candidate."""
    hit = _PCA_CACHE.get(key)
    if hit is None:
        x = x.astype(np.float64)
        mean, scale = _standardize(x)
        z = (x - mean) / scale
        _, _, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
        hit = (mean, scale, vt[:_PCA_MAX].T.copy())
        if len(_PCA_CACHE) > 512:
            _PCA_CACHE.clear()
        _PCA_CACHE[key] = hit
    return hit


def fit(spec: Spec, data: Dataset, mask: Optional[np.ndarray] = None) -> Fitted:
    """Fit ``spec`` on the rows of ``data`` selected by ``mask`` (default: all)."""
    rows = np.ones(len(data), dtype=bool) if mask is None else mask
    train = data if mask is None else data.subset(mask)
    if spec.train_on == "no-chance":
        drop = set(at_chance_families(train))
        keep = np.array([f not in drop for f in train.family])
        if keep.sum() >= 50:
            train = train.subset(keep)
    s_cols = np.array([SCALAR_FEATURES.index(f) for f in spec.scalars], dtype=np.int64)
    s_mean, s_scale = _standardize(train.scalars[:, s_cols])
    fitted = Fitted(spec, s_mean, s_scale, s_cols)
    for name in spec.blocks:
        key = (name, id(data.vectors[name]), len(data), hashlib.sha1(np.packbits(rows).tobytes()).hexdigest(),
               spec.train_on, float(train.vectors[name][:, :4].sum()))
        mean, scale, axes = _pca(train.vectors[name], key)
        basis = axes[:, : spec.pcs]
        proj = ((train.vectors[name] - mean) / scale) @ basis
        pc_scale = proj.std(0)
        fitted.blocks[name] = (mean, scale, basis, np.where(pc_scale > 1e-8, pc_scale, 1.0))
    x = fitted._design(train)
    if spec.hidden:
        fitted.mlp = fit_mlp(x, train.y, spec.hidden, spec.l2 / max(len(train), 1))
    else:
        fitted.w, fitted.b = fit_logistic(x, train.y, spec.l2)
    if spec.gate == "novelty":
        zs = (train.scalars[:, s_cols] - s_mean) / s_scale
        fitted.fallback = fit_logistic(zs, train.y, 1.0)
        v = train.vectors[spec.novelty_block].astype(np.float64)
        fitted.nov_mean, fitted.nov_scale = _standardize(v)
        zn = (v - fitted.nov_mean) / fitted.nov_scale
        fams = sorted(set(train.family.tolist()))
        fitted.centroids = np.stack([zn[train.family == f].mean(0) for f in fams])
        fitted.tau = float(np.percentile(_nearest(zn, fitted.centroids), NOVELTY_PERCENTILE))
    return fitted


def linear(fitted: Fitted, layout: list[list[Any]]) -> dict[str, Any]:
    """The fitted estimator as the ONNX graph's parameters over the raw ``layout`` row: ``mean``, ``scale`` (z =
    (x - mean) / scale); the probe as ``w``, ``b`` (logit = z . w + b) or, for an MLP, ``w1``, ``b1``, ``w2``,
    ``b2``; ``wf``, ``bf`` (fallback); ``centroids`` and ``tau`` over z's first block (the novelty block). The
    design matrix the estimator was fitted on is exactly z @ M (standardized scalars; each block's standardized
    values times its principal axes over their scales), so every weight is folded through M."""
    spec = fitted.spec
    width = sum(w if isinstance(w, int) else len(w) for _, w in layout)
    k = len(spec.scalars)
    n_design = k + sum(basis.shape[1] for _, _, basis, _ in fitted.blocks.values())
    mean, scale = np.zeros(width), np.ones(width)
    big_m = np.zeros((width, n_design))
    wf = np.zeros(width)
    offsets, offset = {}, k
    for name, (_, _, basis, _) in fitted.blocks.items():  # the design matrix's order
        offsets[name] = offset
        offset += basis.shape[1]
    col = 0
    for name, size in layout:
        if isinstance(size, int):
            if name in fitted.blocks:
                m, s, basis, pc_scale = fitted.blocks[name]
                mean[col: col + size], scale[col: col + size] = m, s
                big_m[col: col + size, offsets[name]: offsets[name] + basis.shape[1]] = basis / pc_scale
            elif name == spec.novelty_block and fitted.nov_mean is not None:
                mean[col: col + size], scale[col: col + size] = fitted.nov_mean, fitted.nov_scale
            col += size
        else:
            assert list(size) == list(spec.scalars)
            mean[col: col + k], scale[col: col + k] = fitted.s_mean, fitted.s_scale
            big_m[col: col + k, :k] = np.eye(k)
            if fitted.fallback is not None:
                wf[col: col + k] = fitted.fallback[0]
            col += k
    first = layout[0][1]
    n_embd = first if isinstance(first, int) else 0
    centroids = fitted.centroids if fitted.centroids is not None else np.zeros((1, max(n_embd, 1)))
    tau = fitted.tau if fitted.fallback is not None or spec.gate == "novelty" else float("inf")
    out: dict[str, Any] = {"mean": mean, "scale": scale, "wf": wf,
                           "bf": fitted.fallback[1] if fitted.fallback is not None else 0.0,
                           "centroids": centroids, "tau": tau, "n_embd": n_embd}
    if fitted.mlp is not None:
        out.update(w1=big_m @ fitted.mlp["w1"], b1=fitted.mlp["b1"], w2=fitted.mlp["w2"], b2=float(fitted.mlp["b2"][0]))
    else:
        out.update(w=big_m @ fitted.w, b=fitted.b)
    return out


def export_layout(spec: Spec, n_embd: int) -> list[list[Any]]:
    """The ONNX input layout for ``spec``: the novelty block first, then the other blocks, then the scalars."""
    blocks = [spec.novelty_block] + [b for b in spec.blocks if b != spec.novelty_block]
    return [[b, n_embd] for b in blocks] + [["features", list(spec.scalars)]]
