"""Hidden-state probes, exported to ONNX and run with onnxruntime.

Two probes ship for the default model (``models/probe.onnx``, ``models/pregen.onnx``), trained by
``tools/train_probe.py``; ``edgeroute fit`` saves the same two files for another GGUF in its fitted directory, and
those are loaded first. Both are selected by how well they transfer to task sources they were not trained on
(``edgeroute.bench.transfer``):

- the **post-generation probe** reads a row of named inputs: hidden states of some blocks (``answer_mean@19`` is
  block 19's output averaged over the answer's tokens, ``prompt@19`` its output at the last prompt token), and
  scalar features (``TOKEN_FEATURES``, the perplexity features, ``QUERY_FEATURES``). It outputs ``probe_confidence``,
  ``probe_novelty`` (how far the prompt's hidden state, the layout's first block, is from every family the probe was
  trained on) and ``combined_confidence``, the Router's default confidence: the probe for familiar prompts, a
  training-free fallback for novel ones (when the selection kept a novelty gate at all);
- the **pre-generation probe** reads the prompt-end hidden state of the engine's primary block and the query
  features, so the Router can send a hopeless query to the cloud before decoding a single token (never for a novel
  prompt).

Each file carries metadata: the GGUF's SHA-256, the feature layout (``[[name, width or feature names], ...]``), the
layout version, the training data and the transfer figures. A probe whose model hash, version or layout does not fit
the loaded model is refused with one warning, and the other signals carry on. One onnxruntime session per file,
shared by all threads (``InferenceSession.run`` is thread-safe).
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .. import paths
from ..local.base import Generation
from ..messages import Message
from .base import Features, Signal
from .perplexity import FEATURES as PPL_FEATURES
from .perplexity import features as ppl_features
from .query import QUERY_FEATURES, last_user_text, query_features
from .tokens import TOKEN_FEATURES, token_features

PROBE_FILE = "probe.onnx"
PREGEN_FILE = "pregen.onnx"
LAYOUT_VERSION = 3
#: The kinds of hidden-state block a layout can name (``<kind>@<layer>``; see ``Generation.hidden``).
VECTOR_KINDS = ("prompt", "answer", "answer_mean")
#: Every scalar feature a layout can name.
SCALAR_FEATURES = tuple(dict.fromkeys((*PPL_FEATURES, *TOKEN_FEATURES, *QUERY_FEATURES)))

Layout = list[list[Any]]


def parse_layout(layout: Layout, n_embd: Optional[int], hidden_layers: Optional[Sequence[int]]) -> Optional[str]:
    """Why ``layout`` cannot be served by a model with ``n_embd`` and ``hidden_layers`` (None when it can)."""
    if not isinstance(layout, list) or not layout:
        return "an empty or malformed feature layout"
    for block in layout:
        if not (isinstance(block, list) and len(block) == 2 and isinstance(block[0], str)):
            return f"a malformed layout block {block!r}"
        name, width = block
        if isinstance(width, int):
            kind, _, layer = name.partition("@")
            if kind not in VECTOR_KINDS or not layer.isdigit():
                return f"an unknown hidden-state block {name!r}"
            if n_embd is not None and width != n_embd:
                return f"{width}-wide hidden states (this model has {n_embd})"
            if hidden_layers is not None and int(layer) not in hidden_layers:
                return f"hidden states from block {layer}, which this engine does not capture ({list(hidden_layers)})"
        elif isinstance(width, list):
            unknown = [f for f in width if f not in SCALAR_FEATURES]
            if unknown:
                return f"features this version does not compute ({', '.join(map(str, unknown[:3]))})"
        else:
            return f"a malformed layout block {block!r}"
    return None


def layout_width(layout: Layout) -> int:
    return sum(w if isinstance(w, int) else len(w) for _, w in layout)


def feature_row(layout: Layout, values: Mapping[str, Any]) -> Optional[np.ndarray]:
    """The input row (1 x width, float32) for ``layout`` from named ``values``, or None when one is missing."""
    parts = []
    for name, width in layout:
        if isinstance(width, int):
            v = values.get(name)
            if not isinstance(v, np.ndarray) or v.shape != (width,):
                return None
            parts.append(v.astype(np.float32, copy=False))
        else:
            try:
                parts.append(np.asarray([float(values[f]) for f in width], dtype=np.float32))
            except KeyError:
                return None
    return np.concatenate(parts)[None, :]


def scalar_values(generation: Generation, messages: Sequence[Message]) -> dict[str, float]:
    """Every scalar feature a layout can name, for one generation."""
    out: dict[str, float] = dict(zip(QUERY_FEATURES, query_features(messages)))
    ppl = ppl_features(generation)
    if ppl is not None:
        out.update(zip(PPL_FEATURES, ppl))
        out.update(token_features(generation, last_user_text(messages)))
    return out


def model_identity(model: Any) -> dict[str, Any]:
    """The keyword arguments that tie a probe to a ``LocalModel``: its fingerprint, hidden-state width, captured
    blocks and primary block."""
    return {"model_sha256": model.fingerprint, "n_embd": model.n_embd,
            "hidden_layers": tuple(model.hidden_layers or ()) or None, "hidden_layer": model.hidden_layer}


class _Onnx:
    """One onnxruntime session and the file's metadata; ``error`` says why it is unusable (None when usable)."""

    @property
    def engine(self) -> Optional[dict[str, Any]]:
        """The engine record it was fitted with (``local.golden``), or None for files from before engine records."""
        try:
            record = json.loads(self.meta.get("engine", "null"))
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    def __init__(self, path: Union[str, Path], kind: str, model_sha256: str, n_embd: Optional[int],
                 hidden_layers: Optional[Sequence[int]]) -> None:
        self.path, self.kind, self.session, self.meta, self.error = Path(path), kind, None, {}, None
        self.sha256 = ""
        self.layout: Layout = []
        try:
            self.sha256 = hashlib.sha256(self.path.read_bytes()).hexdigest()
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1  # a few thousand multiply-adds: threads would only add latency
            opts.inter_op_num_threads = 1
            session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
            self.meta = dict(session.get_modelmeta().custom_metadata_map)
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            self.error = f"cannot load {self.path}: {exc}"
            return
        try:
            self.layout = json.loads(self.meta.get("feature_layout", "[]"))
        except json.JSONDecodeError:
            self.layout = []
        problem = parse_layout(self.layout, n_embd, hidden_layers)
        width = session.get_inputs()[0].shape[-1]
        if self.meta.get("kind") != kind:
            self.error = f"{self.path} is a {self.meta.get('kind')!r} probe, not {kind!r}"
        elif model_sha256 and self.meta.get("model_sha256") != model_sha256:
            self.error = f"{self.path} was trained for another model (sha256 {self.meta.get('model_sha256', '?')[:12]})"
        elif self.meta.get("version") != str(LAYOUT_VERSION):
            self.error = (f"{self.path} has feature layout version {self.meta.get('version')!r}; this edgeroute reads "
                          f"version {LAYOUT_VERSION}")
        elif problem is not None:
            self.error = f"{self.path} expects {problem}"
        elif isinstance(width, int) and width != layout_width(self.layout):
            self.error = f"{self.path}: its graph takes {width} inputs but its layout names {layout_width(self.layout)}"
        else:
            self.session = session
            self.input = session.get_inputs()[0].name

    def run(self, row: np.ndarray) -> dict[str, float]:
        """Every output of the graph for one input row, by output name."""
        assert self.session is not None
        outs = self.session.run(None, {self.input: row})
        return {o.name: float(np.asarray(v).reshape(-1)[0]) for o, v in zip(self.session.get_outputs(), outs)}


_warned: set[str] = set()
_warn_lock = threading.Lock()


def _warn_once(message: str) -> None:
    with _warn_lock:
        if message in _warned:
            return
        _warned.add(message)
    warnings.warn(f"edgeroute: probe disabled: {message}; using the other signals", RuntimeWarning, stacklevel=3)


def shipped(name: str) -> Optional[Path]:
    ref = resources.files("edgeroute._models").joinpath(name)
    return Path(str(ref)) if ref.is_file() else None


def default_file(name: str, model_sha256: str) -> tuple[Optional[Path], bool]:
    """(the probe file to load, whether it was fitted for this model): the one ``edgeroute fit`` saved in
    ``paths.fitted_dir(model_sha256)`` when there is one, else the shipped one (which fits only the default model)."""
    if model_sha256:
        fitted = paths.fitted_dir(model_sha256) / name
        if fitted.is_file():
            return fitted, True
    return shipped(name), False


class ProbeSignal(Signal):
    """``probe_confidence``, ``probe_novelty`` and ``combined_confidence`` from the post-generation ONNX probe.

    ``path`` defaults to the shipped probe; ``model_sha256``, ``n_embd``, ``hidden_layers`` are the loaded model's
    (``model_identity(model)``; a mismatch disables the probe, with one warning for a file the caller named).
    ``available`` says whether it will produce values, ``error`` why not.
    """

    name = "probe"
    provides_confidence = "combined_confidence"

    @classmethod
    def from_model(cls, model: Any, config: Any) -> list[Signal]:
        """The shipped probe when it fits ``model`` (none otherwise), followed by its blend with the Self-REF
        confidence when the engine runs an adapter."""
        probe = cls(**model_identity(model))
        if not probe.available:
            return []
        out: list[Signal] = [probe]
        if model.selfref is not None:
            from .selfref import SelfRefBlend

            out.append(SelfRefBlend(probe.confidence_id, model.selfref.sha256))
        return out

    def __init__(self, path: Optional[Union[str, Path]] = None, *, model_sha256: str = "",
                 n_embd: Optional[int] = None, hidden_layers: Optional[Sequence[int]] = None,
                 hidden_layer: Optional[int] = None) -> None:
        target, fitted = (Path(path), False) if path is not None else default_file(PROBE_FILE, model_sha256)
        self._onnx = _Onnx(target, "post", model_sha256, n_embd, hidden_layers) if target is not None else None
        self.error = "no probe file" if self._onnx is None else self._onnx.error
        #: True when the file is the one ``edgeroute fit`` saved for this model.
        self.fitted = fitted
        if self.error and (path is not None or fitted):
            _warn_once(self.error)
        self.meta = self._onnx.meta if self._onnx else {}
        self.layout: Layout = self._onnx.layout if self._onnx and not self.error else []
        self.confidence_id = self._onnx.sha256[:16] if self._onnx else ""
        self._vectors = [name for name, width in self.layout if isinstance(width, int)]

    @property
    def available(self) -> bool:
        return self.error is None

    @property
    def engine(self) -> Optional[dict[str, Any]]:
        """The engine record of the probe file (None: none recorded)."""
        return self._onnx.engine if self._onnx is not None else None

    def features(self, generation: Generation, messages: Sequence[Message]) -> Features:
        if not self.available:
            return {}
        out: Features = dict(scalar_values(generation, messages))
        for name in self._vectors:
            vec = generation.hidden.get(name)
            if vec is not None:
                out[name] = vec
        return out

    def score(self, values: Mapping[str, Any], messages: Sequence[Message]) -> dict[str, float]:
        if not self.available:
            return {}
        row = feature_row(self.layout, values)
        if row is None:
            return {}  # no answer token was evaluated (or a state is missing): nothing to judge
        assert self._onnx is not None
        out = self._onnx.run(row)
        values = {"probe_confidence": out["probe"], "combined_confidence": out["combined"]}
        if self.meta.get("gate", "novelty") != "none":  # an ungated probe's distance means nothing
            values["probe_novelty"] = out["novelty"]
        return values


class PregenProbe:
    """P(local answer correct) before generation, from the prompt-end hidden state of the engine's primary block
    and the query features.

    ``threshold`` (from the file's metadata unless given): below it the Router skips local generation when the
    cloud can take the query."""

    def __init__(self, path: Optional[Union[str, Path]] = None, *, model_sha256: str = "",
                 n_embd: Optional[int] = None, hidden_layers: Optional[Sequence[int]] = None,
                 hidden_layer: Optional[int] = None, threshold: Optional[float] = None) -> None:
        target, fitted = (Path(path), False) if path is not None else default_file(PREGEN_FILE, model_sha256)
        self._onnx = _Onnx(target, "pre", model_sha256, n_embd, hidden_layers) if target is not None else None
        self.error = "no pre-generation probe file" if self._onnx is None else self._onnx.error
        self.layout: Layout = self._onnx.layout if self._onnx and not self.error else []
        vectors = [name for name, width in self.layout if isinstance(width, int)]
        if self.error is None and (len(vectors) != 1 or
                                   (hidden_layer is not None and vectors[0] != f"prompt@{hidden_layer}")):
            self.error = (f"{target} reads {vectors}; the engine's prompt state is prompt@{hidden_layer} "
                          "(a pre-generation probe reads that one block)")
        self._vector = vectors[0] if vectors else ""
        self.fitted = fitted
        if self.error and (path is not None or fitted):
            _warn_once(self.error)
        meta = self._onnx.meta if self._onnx else {}
        self.threshold = float(threshold if threshold is not None else meta.get("skip_threshold", 0.0))

    @property
    def available(self) -> bool:
        return self.error is None

    @property
    def engine(self) -> Optional[dict[str, Any]]:
        """The engine record of the probe file (None: none recorded)."""
        return self._onnx.engine if self._onnx is not None else None

    def score(self, prompt_hidden: np.ndarray, messages: Sequence[Message]) -> float:
        assert self._onnx is not None
        values: dict[str, Any] = dict(zip(QUERY_FEATURES, query_features(messages)))
        values[self._vector] = np.asarray(prompt_hidden, dtype=np.float32)
        row = feature_row(self.layout, values)
        assert row is not None
        return self._onnx.run(row)["pregen"]
