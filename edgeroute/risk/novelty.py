"""The novelty measure: how far a prompt lies from the calibration distribution, from its hidden state.

The prompt-end hidden state of the engine's primary block is standardised, projected on the calibration prompts'
first ``k`` principal components (each scaled to unit variance), and its distance to the nearest task family's
centroid is taken. A prompt is *novel* when that distance exceeds ``tau``, the calibration prompts' own
``quantile`` (0.95): by construction about 5 % of prompts like the calibration ones are novel, so a much larger
share says the traffic has moved (``risk.control`` raises the drift flag on it). The map is fitted per model
(``tools/fit_novelty.py``) and refused for any other model by hash.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import numpy as np

NOVELTY_FILE = "novelty.json"
#: Principal components kept, and the calibration quantile that sets ``tau``.
NOVELTY_COMPONENTS = 16
NOVELTY_QUANTILE = 0.95


class NoveltyMap:
    """A fitted novelty map (see the module docstring). ``distance`` and ``novel`` take one hidden state."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.meta = {k: v for k, v in data.items() if k not in ("mean", "scale", "components", "pc_scale",
                                                                   "centroids")}
        self.model_sha256: str = str(data["model_sha256"])
        self.mean = np.asarray(data["mean"], dtype=np.float64)
        self.scale = np.asarray(data["scale"], dtype=np.float64)
        self.components = np.asarray(data["components"], dtype=np.float64)
        self.pc_scale = np.asarray(data["pc_scale"], dtype=np.float64)
        self.centroids = np.asarray(data["centroids"], dtype=np.float64)
        self.tau = float(data["tau"])
        self.expected_share = float(data.get("expected_share", 1.0 - NOVELTY_QUANTILE))
        n = self.mean.shape[0]
        k = self.components.shape[0]
        if (self.scale.shape != (n,) or self.components.shape != (k, n) or self.pc_scale.shape != (k,)
                or self.centroids.ndim != 2 or self.centroids.shape[1] != k or not np.isfinite(self.tau)):
            raise ValueError("the novelty map's arrays do not fit together")

    @property
    def n_embd(self) -> int:
        return int(self.mean.shape[0])

    def distance(self, hidden: np.ndarray) -> float:
        z = ((np.asarray(hidden, dtype=np.float64) - self.mean) / self.scale) @ self.components.T / self.pc_scale
        return float(np.sqrt(((self.centroids - z) ** 2).sum(axis=1)).min())

    def novel(self, hidden: np.ndarray) -> bool:
        return self.distance(hidden) > self.tau

    @classmethod
    def load(cls, path: Path) -> "NoveltyMap":
        return cls(json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def for_model(cls, model_sha256: str, n_embd: Optional[int], path: Optional[Path] = None) -> Optional["NoveltyMap"]:
        """The shipped map (or ``path``) when it was fitted on this model; None otherwise (a damaged file: a
        warning)."""
        target = path or Path(str(resources.files("edgeroute._models").joinpath(NOVELTY_FILE)))
        if not target.is_file():
            return None
        try:
            found = cls.load(target)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(f"edgeroute: ignoring the novelty map {target}: {exc}", RuntimeWarning, stacklevel=2)
            return None
        if found.model_sha256 != model_sha256 or (n_embd is not None and found.n_embd != n_embd):
            return None
        return found


def fit_novelty(vectors: np.ndarray, families: Sequence[str], *, model_sha256: str, fitted_on: str,
                components: int = NOVELTY_COMPONENTS, quantile: float = NOVELTY_QUANTILE) -> dict[str, Any]:
    """The novelty map of these calibration prompts (``vectors``: one hidden state per row), as JSON data."""
    x = np.asarray(vectors, dtype=np.float64)
    fams = np.asarray(families)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    comp = vt[:components]
    proj = z @ comp.T
    pc_scale = proj.std(axis=0) + 1e-9
    proj /= pc_scale
    names = sorted(set(fams.tolist()))
    centroids = np.stack([proj[fams == f].mean(axis=0) for f in names])
    dist = np.sqrt(((proj[:, None, :] - centroids[None]) ** 2).sum(-1)).min(axis=1)
    tau = float(np.quantile(dist, quantile))
    r = lambda a: np.round(a, 6).tolist()  # noqa: E731
    return {"model_sha256": model_sha256, "n": int(len(x)), "families": names, "components_kept": components,
            "quantile": quantile, "expected_share": round(float(np.mean(dist > tau)), 4), "tau": tau,
            "fitted_on": fitted_on, "mean": r(mean), "scale": r(scale), "components": r(comp),
            "pc_scale": r(pc_scale), "centroids": r(centroids)}


def save_novelty(data: dict[str, Any], path: Path) -> Path:
    """Write atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, path)
    return path
