"""Cloud backends."""

from .base import CloudAnswer, CloudBackend
from .openai_compat import OpenAICompatBackend

__all__ = ["CloudAnswer", "CloudBackend", "OpenAICompatBackend"]
