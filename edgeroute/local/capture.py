"""Reading one transformer block's output from llama.cpp while it decodes.

llama.cpp's scheduler calls an *eval callback* for every node of the compute graph (``cb_eval`` in the context
parameters), in graph order: first to ask whether the caller needs that node's result, then, for the nodes it said
yes to, once the result is computed. ``LayerCapture`` answers yes only for the block output it was built for
(``l_out-<layer>``, one ``n_embd`` row per evaluated token) and only while armed; it then copies the last row out.

That is about 1,100 calls per decoded token on SmolLM2-135M, so each must be cheap. Unarmed, a call returns at once.
Armed, the node is found by name once and then by its position in the graph (``begin`` restarts the count before
each evaluation): one name check per evaluation instead of 1,100. If a rebuilt graph moved the node, the name check
at the remembered position fails and the search goes on by name; ``missed`` tells the caller when an evaluation
produced no row, so it can evaluate again.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Optional

import numpy as np

_GGML_TYPE_F32 = 0  # enum ggml_type; the first field of struct ggml_tensor
_lib_lock = threading.Lock()
_lib: Any = None


def _ggml() -> Any:
    """llama-cpp-python's libggml, with the four tensor functions typed."""
    global _lib
    with _lib_lock:
        if _lib is None:
            from llama_cpp._ggml import libggml as lib

            lib.ggml_get_name.restype, lib.ggml_get_name.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
            lib.ggml_nelements.restype, lib.ggml_nelements.argtypes = ctypes.c_int64, [ctypes.c_void_p]
            lib.ggml_is_contiguous.restype, lib.ggml_is_contiguous.argtypes = ctypes.c_bool, [ctypes.c_void_p]
            lib.ggml_backend_tensor_get.restype = None
            lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
            _lib = lib
        return _lib


def default_layer(n_layer: int) -> int:
    """The block (0-based) whose output the probes read: two thirds of the way up (19 of 30 for SmolLM2-135M).

    Chosen with ``tools/train_probe.py``'s cross-validation on the train split: middle-to-upper blocks separate right
    from wrong answers better than the final, post-norm layer, which is tuned to predict the next token."""
    return max(0, (2 * n_layer) // 3 - 1)


class LayerCapture:
    """Captures the output of one block (``n_embd`` float32 values per token, the last token's row) while armed.

    Keep this object alive as long as the context that calls ``callback``. Not thread-safe on its own: the model's
    lock serialises evaluation.
    """

    def __init__(self) -> None:
        import llama_cpp.llama_cpp as native

        self._lib = _ggml()
        self._armed = False
        self._node = 0  # position of the next node asked about in the current evaluation
        self._at: Optional[int] = None  # position of the block's output in the graph, once found
        self._count_at_begin = 0
        self.layer, self.n_embd = -1, 0
        self._name = b""
        self._row = self.total = np.zeros(0)
        #: The last captured row (a copy), or None when nothing was captured since ``arm``.
        self.last: Optional[np.ndarray] = None
        self.count = 0
        self.error: Optional[str] = None
        #: Put this in ``llama_context_params.cb_eval`` before the context is made (``target`` can come later).
        self.callback = native.ggml_backend_sched_eval_callback(self._on_node)

    def target(self, layer: int, n_embd: int) -> None:
        """Capture block ``layer``'s output (0-based), ``n_embd`` values per token."""
        self.layer, self.n_embd = layer, n_embd
        self._name = f"l_out-{layer}".encode()
        self._at = None
        self._row = np.empty(n_embd, dtype=np.float32)
        #: Sum of the rows captured since ``arm`` (float64); ``count`` says how many.
        self.total = np.zeros(n_embd, dtype=np.float64)

    def arm(self) -> None:
        """Start capturing (and forget earlier rows). Needs ``target`` first."""
        self.last, self.count, self.error = None, 0, None
        self.total[:] = 0.0
        self._armed = True

    def disarm(self) -> None:
        self._armed = False

    def begin(self) -> None:
        """Call before each evaluation while armed."""
        self._node = 0
        self._count_at_begin = self.count

    def missed(self) -> bool:
        """True when the evaluation since ``begin`` produced no row (the next one searches by name)."""
        if self.count > self._count_at_begin:
            return False
        self._at = None
        return True

    @property
    def mean(self) -> Optional[np.ndarray]:
        """Mean of the rows captured since ``arm`` (float32), or None."""
        return (self.total / self.count).astype(np.float32) if self.count else None

    def _on_node(self, tensor: int, ask: bool, _user: Any) -> bool:
        if not self._armed:
            return False
        lib = self._lib
        if ask:
            node = self._node
            self._node = node + 1
            at = self._at
            if at is not None and node != at:
                return False
            if lib.ggml_get_name(tensor) == self._name:
                self._at = node
                return True
            self._at = None  # the graph changed: search by name from here on
            return False
        try:
            n = int(lib.ggml_nelements(tensor))
            kind = ctypes.c_int32.from_address(tensor).value
            if kind != _GGML_TYPE_F32 or n % self.n_embd or not lib.ggml_is_contiguous(tensor):
                self.error = f"{self._name.decode()} is not a contiguous float32 [n_embd, tokens] tensor"
                return True
            offset = (n - self.n_embd) * 4  # the last token's row
            lib.ggml_backend_tensor_get(tensor, self._row.ctypes.data, offset, self.n_embd * 4)
            self.last = self._row.copy()
            self.total += self._row
            self.count += 1
        except Exception as exc:  # never let an exception cross into C; report it instead
            self.error = f"capturing {self._name.decode()} failed: {exc}"
        return True  # carry on computing the graph
