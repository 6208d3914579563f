"""What ``llama_cpp.Llama`` has no keyword for, and per-step arithmetic on its logits buffer."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

_PATCH_LOCK = threading.Lock()


def cpu_has_amx() -> bool:
    """True when the CPU advertises Intel AMX (Linux /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "amx_int8" in line.split()
    except OSError:
        pass
    return False


@contextlib.contextmanager
def _native_params(use_extra_bufts: bool, cb_eval: Any = None) -> Iterator[None]:
    """Make ``llama_cpp.Llama`` load with ``use_extra_bufts`` and the context's ``cb_eval`` set (it has no keywords
    for them)."""
    import llama_cpp.llama_cpp as native

    with _PATCH_LOCK:
        model_defaults, context_defaults = native.llama_model_default_params, native.llama_context_default_params

        def model_params() -> Any:
            p = model_defaults()
            p.use_extra_bufts = use_extra_bufts
            return p

        def context_params() -> Any:
            p = context_defaults()
            if cb_eval is not None:
                p.cb_eval = cb_eval
            return p

        native.llama_model_default_params = model_params
        native.llama_context_default_params = context_params
        try:
            yield
        finally:
            native.llama_model_default_params = model_defaults
            native.llama_context_default_params = context_defaults


def file_sha256(path: Path, _chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_chunk):
            h.update(block)
    return h.hexdigest()


class StepStats:
    """Logprob of the chosen token, entropy of one step's distribution and the chosen token's logprob margin over the
    runner-up, in two preallocated buffers (nats)."""

    def __init__(self, n_vocab: int) -> None:
        self._z = np.empty(n_vocab, dtype=np.float32)
        self._e = np.empty(n_vocab, dtype=np.float32)

    def __call__(self, logits: np.ndarray, token: int, top: float) -> tuple[float, float, float]:
        """``top`` is ``logits.max()`` (the caller has it already when decoding greedily). The margin is the chosen
        token's logit minus the best other token's (>= 0 when decoding greedily)."""
        z = np.subtract(logits, top, out=self._z)
        e = np.exp(z, out=self._e)
        s = float(e.sum(dtype=np.float64))
        log_s = float(np.log(s))
        entropy = log_s - float(np.dot(e, z)) / s
        chosen = float(z[token])
        z[token] = -np.inf
        margin = chosen - float(z.max())
        return chosen - log_s, max(entropy, 0.0), margin
