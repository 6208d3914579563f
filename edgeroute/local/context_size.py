"""How large a context window to allocate for a GGUF: its trained context, within a memory budget.

The budget covers what grows with the window: the KV cache (f16: ``2 x n_layer x n_kv_heads x head_dim x 2`` bytes
per token) and the attention scores of one prompt batch (f32: ``n_head x n_batch x 4`` bytes per token). The
weights and the fixed buffers are not in it. Read from the file's header, so nothing is loaded to decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .._constants import CTX_ROUND_TOKENS, DEFAULT_N_CTX_TOKENS, MIN_AUTO_N_CTX_TOKENS
from .gguf_meta import read_metadata

_MIB = 1 << 20


@dataclass(frozen=True)
class ContextSize:
    """``n_ctx`` tokens chosen; ``trained`` the model's trained context (None: the header does not say);
    ``bytes_per_token`` the memory one more token of window costs; ``budget_mib`` the budget it was chosen in
    (None: ``n_ctx`` was set explicitly)."""

    n_ctx: int
    trained: Optional[int]
    bytes_per_token: int
    budget_mib: Optional[int]

    @property
    def note(self) -> str:
        """One line for ``edgeroute models`` and logs."""
        mib = self.n_ctx * self.bytes_per_token / _MIB
        trained = f"trained {self.trained}" if self.trained else "trained context unknown"
        if self.budget_mib is None:
            return f"{self.n_ctx} tokens (set explicitly; {trained}; ~{mib:.0f} MiB)"
        return f"{self.n_ctx} tokens ({trained}; ~{mib:.0f} MiB of the {self.budget_mib} MiB context budget)"


def _int(meta: dict[str, Any], key: str) -> Optional[int]:
    value = meta.get(key)
    if isinstance(value, list):  # per-layer values (some architectures): the largest
        value = max((v for v in value if isinstance(v, int)), default=None)
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


def bytes_per_token(meta: dict[str, Any], n_batch: int) -> int:
    """Memory per context token (bytes) from GGUF metadata; a conservative guess where keys are missing."""
    arch = str(meta.get("general.architecture", ""))
    n_layer = _int(meta, f"{arch}.block_count") or 32
    n_head = _int(meta, f"{arch}.attention.head_count") or 32
    n_kv = _int(meta, f"{arch}.attention.head_count_kv") or n_head
    embd = _int(meta, f"{arch}.embedding_length") or 4096
    k_len = _int(meta, f"{arch}.attention.key_length") or embd // n_head
    v_len = _int(meta, f"{arch}.attention.value_length") or embd // n_head
    return n_layer * n_kv * (k_len + v_len) * 2 + n_head * n_batch * 4


def choose(path: Path, requested: Optional[int], budget_mib: int, n_batch: int) -> ContextSize:
    """The window for ``path``: ``requested`` when given, else the trained context capped by ``budget_mib``
    (rounded down to ``CTX_ROUND_TOKENS``, never below ``MIN_AUTO_N_CTX_TOKENS``)."""
    meta = read_metadata(path)
    arch = str(meta.get("general.architecture", ""))
    trained = _int(meta, f"{arch}.context_length")
    per_token = bytes_per_token(meta, n_batch)
    if requested is not None:
        return ContextSize(requested, trained, per_token, None)
    fits = budget_mib * _MIB // per_token
    n_ctx = min(trained or DEFAULT_N_CTX_TOKENS, fits)
    if n_ctx != trained:
        n_ctx = n_ctx // CTX_ROUND_TOKENS * CTX_ROUND_TOKENS
    return ContextSize(max(n_ctx, MIN_AUTO_N_CTX_TOKENS), trained, per_token, budget_mib)


def load_hint(n_ctx: int) -> int:
    """A smaller window to suggest when llama.cpp could not allocate ``n_ctx`` tokens."""
    return DEFAULT_N_CTX_TOKENS if n_ctx > DEFAULT_N_CTX_TOKENS else max(n_ctx // 2, 256)
