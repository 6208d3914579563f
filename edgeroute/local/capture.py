"""Reading transformer blocks' outputs from llama.cpp while it decodes.

llama.cpp's scheduler calls an *eval callback* for every node of the compute graph (``cb_eval`` in the context
parameters), in graph order: first to ask whether the caller needs that node's result, then, for the nodes it said
yes to, once the result is computed. ``LayerCapture`` answers yes only for the block outputs it was built for
(``l_out-<layer>``, one ``n_embd`` row per evaluated token) and only while armed; it then copies the last row out.

That is about 1,100 calls per decoded token on SmolLM2-135M, so each must be cheap. Unarmed, a call returns at once.
Armed, the nodes of a one-token decode are found by name once and then by their positions in the graph (``begin`` restarts the count before each evaluation): one name check per captured block per
evaluation instead of 1,100. If a rebuilt graph moved a node, the name check at the remembered position fails and
the search goes on by name; ``missed`` tells the caller when an evaluation produced no row for some block, so it can
evaluate again. A batch (a prompt, perhaps split into several decodes) is always searched by name: once per query.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

_GGML_TYPE_F32 = 0  # enum ggml_type; the first field of struct ggml_tensor
#: The name llama.cpp gives a block's output in the compute graph (``cb(cur, "l_out", il)``): every architecture
#: llama-cpp-python 0.3.36 builds names its blocks this way (llama, qwen, gemma, phi, ...). A graph without these
#: names is reported by ``LayerCapture.error`` / ``LlamaCppModel.capture_failure``, and the probes are skipped.
BLOCK_OUTPUT = "l_out-{layer}"
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
    """The primary block (0-based): two thirds of the way up (19 of 30 for SmolLM2-135M). Its states fill
    ``Generation.prompt_hidden`` / ``answer_hidden`` / ``answer_hidden_mean`` (the pre-generation probe reads it).

    Middle-to-upper blocks separate right from wrong answers better than the final, post-norm layer, which is tuned
    to predict the next token (an earlier per-block scan on the train split put blocks 9-22 ahead of it); which of
    the captured blocks the shipped probe reads is chosen by ``tools/train_probe.py``."""
    return max(0, (2 * n_layer) // 3 - 1)


def candidate_layers(n_layer: int) -> tuple[int, ...]:
    """The blocks a probe may be trained on: a third, half, two thirds and five sixths of the way up (9, 14, 19, 24
    of SmolLM2-135M's 30). ``tools/train_probe.py`` captures them all and chooses; the Router captures only the
    primary block (``default_layer``), the one the shipped probes read: each captured block costs a graph split and
    a copy per token."""
    return tuple(sorted({max(0, (k * n_layer) // 6 - 1) for k in (2, 3, 4, 5)}))


class LayerCapture:
    """Captures the outputs of some blocks (``n_embd`` float32 values per token, the last token's row) while armed.

    Per block: ``last`` (the last row), ``total`` / ``count`` (the sum of the rows since ``arm``). Keep this object
    alive as long as the context that calls ``callback``. Not thread-safe on its own: the model's lock serialises
    evaluation.
    """

    def __init__(self) -> None:
        import llama_cpp.llama_cpp as native

        self._lib = _ggml()
        self._armed = False
        self._node = 0  # position of the next node asked about in the current evaluation
        self._shape = 1  # 1: a one-token decode, 2: a batch (their graphs differ)
        #: per graph shape: {position: block index}, once every block was found in one evaluation
        self._at: dict[int, Optional[dict[int, int]]] = {1: None, 2: None}
        self._seen: dict[int, int] = {}  # positions found by name in the current evaluation
        self._at_begin: list[int] = []
        self.layers: tuple[int, ...] = ()
        self.n_embd = 0
        self._names: list[bytes] = []
        self._by_name: dict[bytes, int] = {}
        self._row = np.zeros(0, dtype=np.float32)
        self.last: list[Optional[np.ndarray]] = []
        self.total: list[np.ndarray] = []
        self.count: list[int] = []
        self.error: Optional[str] = None
        #: Put this in ``llama_context_params.cb_eval`` before the context is made (``target`` can come later).
        self.callback = native.ggml_backend_sched_eval_callback(self._on_node)

    def target(self, layers: Sequence[int], n_embd: int) -> None:
        """Capture the outputs of blocks ``layers`` (0-based), ``n_embd`` values per token."""
        self.layers, self.n_embd = tuple(layers), n_embd
        self._names = [BLOCK_OUTPUT.format(layer=layer).encode() for layer in self.layers]
        self._by_name = {name: k for k, name in enumerate(self._names)}
        self._at = {1: None, 2: None}
        self._row = np.empty(n_embd, dtype=np.float32)
        self.last = [None] * len(self.layers)
        self.total = [np.zeros(n_embd, dtype=np.float64) for _ in self.layers]
        self.count = [0] * len(self.layers)

    def arm(self) -> None:
        """Start capturing (and forget earlier rows). Needs ``target`` first."""
        self.error = None
        for k in range(len(self.layers)):
            self.last[k], self.count[k] = None, 0
            self.total[k][:] = 0.0
        self._armed = True

    def disarm(self) -> None:
        self._armed = False

    def begin(self, n_tokens: int = 1) -> None:
        """Call before each evaluation (of ``n_tokens`` tokens) while armed."""
        self._node = 0
        self._shape = 1 if n_tokens == 1 else 2
        self._seen = {}
        self._at_begin = list(self.count)

    def missed(self) -> bool:
        """True when the evaluation since ``begin`` produced no row for some block (the next one searches by name);
        otherwise the positions found are remembered for graphs of this shape."""
        if all(c > b for c, b in zip(self.count, self._at_begin)):
            if self._shape == 1 and self._at[1] is None and len(self._seen) == len(self.layers):
                self._at[1] = dict(self._seen)
            return False
        if self._shape == 1:
            self._at[1] = None
        return True

    def missing(self) -> list[str]:
        """The node names of the blocks that produced no row in the evaluation since ``begin``."""
        return [name.decode() for name, c, b in zip(self._names, self.count, self._at_begin) if c <= b]

    def mean(self, k: int) -> Optional[np.ndarray]:
        """Mean of block ``k``'s rows captured since ``arm`` (float32), or None."""
        return (self.total[k] / self.count[k]).astype(np.float32) if self.count[k] else None

    def _on_node(self, tensor: int, ask: bool, _user: Any) -> bool:
        if not self._armed:
            return False
        lib = self._lib
        if ask:
            node = self._node
            self._node = node + 1
            at = self._at[1] if self._shape == 1 else None  # a batch may be split into several decodes
            if at is not None:
                k = at.get(node)
                if k is None:
                    return False
                if lib.ggml_get_name(tensor) == self._names[k]:
                    return True
                self._at[1] = None  # the graph changed: search by name from here on
            k = self._by_name.get(lib.ggml_get_name(tensor))
            if k is None:
                return False
            self._seen[node] = k
            return True
        try:
            k = self._by_name.get(lib.ggml_get_name(tensor))
            if k is None:
                return True
            n = int(lib.ggml_nelements(tensor))
            kind = ctypes.c_int32.from_address(tensor).value
            if kind != _GGML_TYPE_F32 or n % self.n_embd or not lib.ggml_is_contiguous(tensor):
                self.error = f"{self._names[k].decode()} is not a contiguous float32 [n_embd, tokens] tensor"
                return True
            offset = (n - self.n_embd) * 4  # the last token's row
            lib.ggml_backend_tensor_get(tensor, self._row.ctypes.data, offset, self.n_embd * 4)
            self.last[k] = self._row.copy()
            self.total[k] += self._row
            self.count[k] += 1
        except Exception as exc:  # never let an exception cross into C; report it instead
            self.error = f"capturing block outputs failed: {exc}"
        return True  # carry on computing the graph
