"""Validate and normalise what callers pass as a prompt: a string or OpenAI-style chat messages."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Union

from ._constants import MAX_PROMPT_CHARS
from ._errors import EmptyPromptError, InvalidPromptError

Message = dict[str, str]
PromptLike = Union[str, Sequence[Mapping[str, str]]]

_ROLES = frozenset({"system", "user", "assistant"})


def _check_text(text: object, where: str) -> str:
    if not isinstance(text, str):
        raise InvalidPromptError(f"{where} must be a str, got {type(text).__name__}")
    if "\x00" in text:
        raise InvalidPromptError(f"{where} contains a NUL byte")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise InvalidPromptError(f"{where} is not valid Unicode text (lone surrogate at {exc.start})") from None
    return text


def normalize(prompt: PromptLike) -> list[Message]:
    """Return ``prompt`` as a list of ``{"role", "content"}`` dicts, or raise an ``InputError``."""
    if isinstance(prompt, bytes):
        try:
            prompt = prompt.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidPromptError(f"prompt bytes are not valid UTF-8 (at byte {exc.start})") from None
    if isinstance(prompt, str):
        messages: list[Message] = [{"role": "user", "content": _check_text(prompt, "prompt")}]
    elif isinstance(prompt, Sequence):
        messages = []
        for i, m in enumerate(prompt):
            if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
                raise InvalidPromptError(f"message {i} must be a mapping with 'role' and 'content'")
            role = m["role"]
            if role not in _ROLES:
                raise InvalidPromptError(f"message {i} has unknown role {role!r}; expected one of {sorted(_ROLES)}")
            messages.append({"role": role, "content": _check_text(m["content"], f"message {i} content")})
        if not messages:
            raise EmptyPromptError("no messages given")
    else:
        raise InvalidPromptError(f"prompt must be a str or a list of messages, got {type(prompt).__name__}")
    if not any(m["content"].strip() for m in messages if m["role"] == "user"):
        raise EmptyPromptError("the prompt is empty or only whitespace")
    total = sum(len(m["content"]) for m in messages)
    if total > MAX_PROMPT_CHARS:
        raise InvalidPromptError(f"the prompt has {total} characters; the limit is {MAX_PROMPT_CHARS}")
    return messages


def prompt_hash(messages: Sequence[Message]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``messages``: lets traces group repeats without storing text."""
    canonical = json.dumps(list(messages), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
