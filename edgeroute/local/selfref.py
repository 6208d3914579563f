"""Self-REF confidence tokens: the adapter that learned them, and the score read from them.

A Self-REF adapter (``tools/train_selfref.py``) is a llama.cpp LoRA GGUF plus a manifest (``selfref.json``) naming
the base model it was trained on and the two vocabulary tokens used as <CN> and <UN>. At run time the answer is
generated with the adapter off; the confidence slot (the answer's last token re-evaluated with the adapter on) gives
two next-token logits, and ``selfref_confidence`` turns them into P(<CN>) / (P(<CN>) + P(<UN>)).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from .._errors import ModelCorruptError, ModelNotFoundError

#: The existing vocabulary tokens that stand for <CN> (confident) and <UN> (unsure): no new embeddings needed.
CN_TOKEN = " confident"
UN_TOKEN = " unsure"
MANIFEST = "selfref.json"


def selfref_confidence(logit_cn: float, logit_un: float) -> float:
    """P(<CN>) / (P(<CN>) + P(<UN>)) from the two next-token logits (the softmax's normaliser cancels), in [0, 1]."""
    if not (math.isfinite(logit_cn) and math.isfinite(logit_un)):
        raise ValueError(f"confidence-token logits must be finite, got {logit_cn!r}, {logit_un!r}")
    d = logit_cn - logit_un
    return 1.0 / (1.0 + math.exp(-d)) if d >= 0 else math.exp(d) / (1.0 + math.exp(d))


@dataclass(frozen=True)
class SelfRefAdapter:
    """A trained Self-REF adapter: the GGUF ``path``, the base model's SHA-256 and the <CN> / <UN> token ids."""

    path: Path
    base_model_sha256: str
    cn_token_id: int
    un_token_id: int
    validation_auroc: Optional[float] = None
    #: SHA-256 of the adapter file (cached benchmark scores are keyed by it).
    sha256: str = ""

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], path: Path) -> "SelfRefAdapter":
        try:
            sha = str(manifest.get("adapter_sha256") or hashlib.sha256(Path(path).read_bytes()).hexdigest())
            return cls(Path(path), str(manifest["base_model_sha256"]), int(manifest["cn_token_id"]),
                       int(manifest["un_token_id"]), manifest.get("validation_auroc"), sha)
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise ModelCorruptError(f"Self-REF manifest for {path} is malformed: {exc}") from exc

    @classmethod
    def load(cls, manifest_path: os.PathLike[str] | str) -> "SelfRefAdapter":
        """From a ``selfref.json`` (the adapter GGUF named in it lies beside it); checks the adapter's hash."""
        mp = Path(manifest_path)
        try:
            manifest = json.loads(mp.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelNotFoundError(f"no Self-REF manifest at {mp}") from None
        except (OSError, ValueError) as exc:
            raise ModelCorruptError(f"cannot read the Self-REF manifest {mp}: {exc}") from exc
        gguf = mp.parent / str(manifest.get("adapter", "selfref.gguf"))
        if not gguf.is_file():
            raise ModelNotFoundError(f"the Self-REF adapter {gguf} named in {mp} is missing")
        want = manifest.get("adapter_sha256")
        if want and hashlib.sha256(gguf.read_bytes()).hexdigest() != want:
            raise ModelCorruptError(f"the Self-REF adapter {gguf} does not match its manifest's SHA-256")
        return cls.from_manifest(manifest, gguf)

    @classmethod
    def shipped(cls) -> Optional["SelfRefAdapter"]:
        """The adapter shipped in the wheel for the default model, or None when there is none."""
        try:
            ref = resources.files("edgeroute._models").joinpath(MANIFEST)
            with resources.as_file(ref) as p:
                return cls.load(p) if Path(p).is_file() else None
        except (ModuleNotFoundError, FileNotFoundError):
            return None

    def fits(self, model_sha256: str) -> bool:
        return self.base_model_sha256 == model_sha256
