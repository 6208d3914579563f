"""Hidden-state probes, exported to ONNX and run with onnxruntime.

Two probes ship for the default model (``models/probe.onnx``, ``models/pregen.onnx``), trained by
``tools/train_probe.py``:

- the **post-generation probe** reads hidden states of one block (the engine's ``hidden_layer``, 19 of 30 for the
  default model) at the end of the prompt, at the end of the answer and averaged over the answer, the perplexity
  features and the query features. It outputs ``probe_confidence`` (the probe), ``probe_novelty`` (how
  far the prompt's hidden state is from every family the probe was trained on) and ``combined_confidence``, the
  Router's default confidence: the probe for familiar prompts, a family-agnostic perplexity score for novel ones;
- the **pre-generation probe** reads the prompt-end hidden state and the query features only, so the Router can
  send a hopeless query to the cloud before decoding a single token (never for a novel prompt).

Each file carries metadata (the GGUF's SHA-256, the feature layout including the block the states come from, the
version, the training data and validation AUROC). A probe whose model hash or layout does not match is refused with
one warning, and the other signals carry on. One onnxruntime session per file, shared by all threads
(``InferenceSession.run`` is thread-safe).
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

from ..local.base import Generation
from ..messages import Message
from .base import Signal
from .perplexity import FEATURES as PPL_FEATURES
from .perplexity import features as ppl_features
from .query import QUERY_FEATURES, query_features

PROBE_FILE = "probe.onnx"
PREGEN_FILE = "pregen.onnx"
LAYOUT_VERSION = 2
#: The hidden-state blocks of a post-generation probe's input, in order (``Generation`` fields).
HIDDEN_BLOCKS = ("prompt_hidden", "answer_hidden", "answer_hidden_mean")


def layout(kind: str, n_embd: int, hidden_layer: Optional[int]) -> list[list[Any]]:
    """The feature layout a probe of ``kind`` (``post`` or ``pre``) expects: [name, width] blocks in order. Hidden
    blocks are named ``<field>@<layer>``: a probe trained on one block's states refuses another's."""
    hidden = HIDDEN_BLOCKS if kind == "post" else HIDDEN_BLOCKS[:1]
    blocks: list[list[Any]] = [[f"{name}@{hidden_layer}", n_embd] for name in hidden]
    if kind == "post":
        blocks.append(["perplexity", list(PPL_FEATURES)])
    blocks.append(["query", list(QUERY_FEATURES)])
    return blocks


def feature_vector(
    kind: str,
    hidden: Sequence[np.ndarray],
    ppl: Optional[Sequence[float]],
    query: Sequence[float],
) -> np.ndarray:
    """The input row for a probe of ``kind``, float32, in ``layout`` order: ``hidden`` holds the states named in
    ``HIDDEN_BLOCKS`` (post) or the prompt's alone (pre)."""
    parts = [np.asarray(h, dtype=np.float32) for h in hidden]
    if kind == "post":
        assert ppl is not None and len(parts) == len(HIDDEN_BLOCKS)
        parts.append(np.asarray(ppl, dtype=np.float32))
    parts.append(np.asarray(query, dtype=np.float32))
    return np.concatenate(parts)[None, :]


def model_identity(model: Any) -> dict[str, Any]:
    """The keyword arguments that tie a probe to a ``LocalModel``: its fingerprint, hidden-state width and block."""
    return {"model_sha256": model.fingerprint, "n_embd": getattr(model, "n_embd", None),
            "hidden_layer": getattr(model, "hidden_layer", None)}


class _Onnx:
    """One onnxruntime session and the file's metadata; ``error`` says why it is unusable (None when usable)."""

    def __init__(self, path: Union[str, Path], kind: str, model_sha256: str, n_embd: Optional[int],
                 hidden_layer: Optional[int]) -> None:
        self.path, self.kind, self.session, self.meta, self.error = Path(path), kind, None, {}, None
        self.sha256 = ""
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
        want = json.dumps(layout(kind, n_embd, hidden_layer)) if n_embd else None
        if self.meta.get("kind") != kind:
            self.error = f"{self.path} is a {self.meta.get('kind')!r} probe, not {kind!r}"
        elif model_sha256 and self.meta.get("model_sha256") != model_sha256:
            self.error = f"{self.path} was trained for another model (sha256 {self.meta.get('model_sha256', '?')[:12]})"
        elif want is not None and self.meta.get("feature_layout") != want:
            self.error = (f"{self.path} expects another feature layout than this model provides (hidden states "
                          f"from block {hidden_layer}, version {LAYOUT_VERSION})")
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


class ProbeSignal(Signal):
    """``probe_confidence`` and ``combined_confidence`` from the post-generation ONNX probe.

    ``path`` defaults to the shipped probe; ``model_sha256``, ``n_embd`` and ``hidden_layer`` are the loaded
    model's (``model_identity(model)``; a mismatch disables the probe with one warning). ``available`` says whether
    it will produce values, ``error`` why not.
    """

    name = "probe"
    provides_confidence = "combined_confidence"

    def __init__(self, path: Optional[Union[str, Path]] = None, *, model_sha256: str = "",
                 n_embd: Optional[int] = None, hidden_layer: Optional[int] = None) -> None:
        target = Path(path) if path is not None else shipped(PROBE_FILE)
        self._onnx = _Onnx(target, "post", model_sha256, n_embd, hidden_layer) if target is not None else None
        self.error = "no probe file" if self._onnx is None else self._onnx.error
        if self.error and path is not None:
            _warn_once(self.error)
        self.meta = self._onnx.meta if self._onnx else {}
        self.confidence_id = self._onnx.sha256[:16] if self._onnx else ""

    @property
    def available(self) -> bool:
        return self.error is None

    def _score(self, hidden: Sequence[Optional[np.ndarray]], ppl: Optional[Sequence[float]],
               messages: Sequence[Message]) -> dict[str, float]:
        if not self.available or ppl is None or any(h is None for h in hidden):
            return {}  # no answer token was evaluated: nothing to judge
        assert self._onnx is not None
        out = self._onnx.run(feature_vector("post", hidden, ppl, query_features(messages)))  # type: ignore[arg-type]
        return {"probe_confidence": out["probe"], "probe_novelty": out["novelty"],
                "combined_confidence": out["combined"]}

    def compute(self, generation: Generation, messages: Sequence[Message]) -> dict[str, float]:
        return self._score([getattr(generation, name) for name in HIDDEN_BLOCKS], ppl_features(generation), messages)

    def from_cache(self, record: Mapping[str, Any], messages: Sequence[Message]) -> dict[str, float]:
        from ..bench.runner import decode_vector

        sig = record.get("signals", {})
        ppl = [sig[f] for f in PPL_FEATURES] if all(f in sig for f in PPL_FEATURES) else None
        return self._score([decode_vector(record.get(name)) for name in HIDDEN_BLOCKS], ppl, messages)


class PregenProbe:
    """P(local answer correct) before generation, from the prompt-end hidden state and the query features.

    ``threshold`` (from the file's metadata unless given): below it the Router skips local generation when the
    cloud can take the query."""

    def __init__(self, path: Optional[Union[str, Path]] = None, *, model_sha256: str = "",
                 n_embd: Optional[int] = None, hidden_layer: Optional[int] = None,
                 threshold: Optional[float] = None) -> None:
        target = Path(path) if path is not None else shipped(PREGEN_FILE)
        self._onnx = _Onnx(target, "pre", model_sha256, n_embd, hidden_layer) if target is not None else None
        self.error = "no pre-generation probe file" if self._onnx is None else self._onnx.error
        if self.error and path is not None:
            _warn_once(self.error)
        meta = self._onnx.meta if self._onnx else {}
        self.threshold = float(threshold if threshold is not None else meta.get("skip_threshold", 0.0))

    @property
    def available(self) -> bool:
        return self.error is None

    def score(self, prompt_hidden: np.ndarray, messages: Sequence[Message]) -> float:
        assert self._onnx is not None
        return self._onnx.run(feature_vector("pre", [prompt_hidden], None, query_features(messages)))["pregen"]
