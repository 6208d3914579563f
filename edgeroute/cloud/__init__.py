"""Cloud backends."""

from typing import Any

from .base import CloudAnswer, CloudBackend


def __getattr__(name: str) -> Any:  # the providers (and httpx) load when first used, not at import
    if name == "OpenAICompatBackend":
        from .openai_compat import OpenAICompatBackend

        return OpenAICompatBackend
    raise AttributeError(name)


__all__ = ["CloudAnswer", "CloudBackend", "OpenAICompatBackend"]
