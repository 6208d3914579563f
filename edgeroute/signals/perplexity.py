"""The perplexity family: token NLL and entropy statistics, and a logistic map from them to P(correct).

Features (nats, tokens): ``mean_nll``, ``max_nll``, ``mean_entropy``, ``answer_tokens``. The map's coefficients are
fitted per model by ``tools/fit_perplexity.py`` and shipped in ``models/``; a model without its own coefficients
uses the default model's, and the answer's signals say so (``perplexity_calibrated`` = 0).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Mapping, Optional

import numpy as np

from ..local.base import Generation
from ..messages import Message
from .base import Features, Signal

FEATURES = ("mean_nll", "max_nll", "mean_entropy", "log_answer_tokens")
CALIBRATION_FILE = "perplexity.json"
#: The map ``edgeroute fit`` saves in ``paths.fitted_dir(sha256)``.
MAP_FILE = "perplexity.json"


@dataclass(frozen=True)
class LogisticMap:
    """``sigmoid(intercept + coef . ((x - mean) / scale))`` over ``FEATURES``."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    model_sha256: str = ""
    info: str = ""
    #: The engine record it was fitted with (``local.golden``), or None.
    engine: Optional[dict[str, Any]] = None

    def __call__(self, x: Sequence[float]) -> float:
        z = self.intercept + sum(c * (v - m) / s for c, v, m, s in zip(self.coef, x, self.mean, self.scale))
        z = max(min(z, 40.0), -40.0)
        return 1.0 / (1.0 + math.exp(-z))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LogisticMap":
        if tuple(d["features"]) != FEATURES:
            raise ValueError(f"feature layout {d['features']} != {FEATURES}")
        return cls(
            mean=tuple(map(float, d["mean"])),
            scale=tuple(map(float, d["scale"])),
            coef=tuple(map(float, d["coef"])),
            intercept=float(d["intercept"]),
            model_sha256=str(d.get("model_sha256", "")),
            info=str(d.get("info", "")),
            engine=d.get("engine") if isinstance(d.get("engine"), dict) else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(FEATURES),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "model_sha256": self.model_sha256,
            "info": self.info,
            **({"engine": self.engine} if self.engine else {}),
        }


def load_shipped_map() -> LogisticMap:
    """The coefficients shipped in the wheel (``models/perplexity.json``)."""
    text = resources.files("edgeroute._models").joinpath(CALIBRATION_FILE).read_text(encoding="utf-8")
    return LogisticMap.from_dict(json.loads(text))


def fitted_map(model_sha256: str) -> Optional[LogisticMap]:
    """The map ``edgeroute fit`` saved for this model (``paths.fitted_dir``), or None; a damaged file, or one fitted
    for another model, is ignored with a warning."""
    import warnings

    from .. import paths

    path = paths.fitted_dir(model_sha256) / MAP_FILE
    if not path.is_file():
        return None
    try:
        mapping = LogisticMap.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warnings.warn(f"edgeroute: ignoring the fitted map {path}: {exc}", RuntimeWarning, stacklevel=2)
        return None
    if mapping.model_sha256 != model_sha256:
        warnings.warn(f"edgeroute: ignoring the fitted map {path}: fitted for another model "
                      f"({mapping.model_sha256[:12]})", RuntimeWarning, stacklevel=2)
        return None
    return mapping


def features(generation: Generation) -> Optional[list[float]]:
    """The perplexity-family features of ``generation``, or None when it produced no scored token."""
    lp, ent = generation.token_logprobs, generation.token_entropies
    if lp.size == 0 or not np.all(np.isfinite(lp)) or not np.all(np.isfinite(ent)):
        return None
    nll = -lp
    return [float(nll.mean()), float(nll.max()), float(ent.mean()), math.log1p(lp.size)]


class PerplexitySignal(Signal):
    """Perplexity-family features and their logistic confidence ``perplexity_confidence`` in [0, 1]."""

    name = "perplexity"
    provides_confidence = "perplexity_confidence"

    @property
    def engine(self) -> Optional[dict[str, Any]]:
        return self.mapping.engine

    @classmethod
    def from_model(cls, model: Any, config: Any) -> "PerplexitySignal":
        """The map ``edgeroute fit`` fitted for this model if there is one, else the shipped map."""
        return cls(fitted_map(model.fingerprint), model_sha256=model.fingerprint)

    def __init__(self, mapping: Optional[LogisticMap] = None, model_sha256: str = "") -> None:
        self.mapping = mapping or load_shipped_map()
        self.calibrated = bool(self.mapping.model_sha256) and self.mapping.model_sha256 == model_sha256
        #: Identifies the confidence function: thresholds calibrated on another map do not apply to this one.
        weights = {k: v for k, v in self.mapping.to_dict().items() if k != "engine"}  # the function, not its record
        self.confidence_id = hashlib.sha256(json.dumps(weights, sort_keys=True).encode()).hexdigest()[:16]

    def features(self, generation: Generation, messages: Sequence[Message]) -> Features:
        x = features(generation)
        out: Features = {"answer_tokens": float(generation.completion_tokens)}
        if x is not None:
            out.update(zip(FEATURES, x))
            out["mean_entropy"] = float(out["mean_entropy"])
        return out

    def score(self, values: Mapping[str, Any], messages: Sequence[Message]) -> dict[str, float]:
        if not all(f in values for f in FEATURES):
            return {}
        return {"perplexity_confidence": self.mapping([float(values[f]) for f in FEATURES]),
                "perplexity_calibrated": 1.0 if self.calibrated else 0.0}
