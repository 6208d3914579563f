"""Local models."""

from .base import Generation, LocalModel
from .llama import LlamaCppModel
from .resolve import default_model_path, resolve_model_path

__all__ = ["Generation", "LlamaCppModel", "LocalModel", "default_model_path", "resolve_model_path"]
