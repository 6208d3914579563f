"""Removes secrets from text before it is stored, logged or returned: the configured values (API keys, the
serve token), anything that looks like a bearer token, and well-known key shapes (``sk-...``)."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"

_PATTERNS = (
    re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(r"(?i)\b(authorization|x-api-key|api[-_]?key)(\"?\s*[:=]\s*\"?)[^\s\"',;}]{4,}"),
    re.compile(r"\b(?:sk|pk|rk)-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{6,}"),
    re.compile(r"\b(?:AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{30,})"),
)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every value in ``secrets`` (ignored when under 4 characters) and every token-looking span
    replaced by ``[redacted]``."""
    if not text:
        return text
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _PATTERNS[0].sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _PATTERNS[1].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    for pattern in _PATTERNS[2:]:
        text = pattern.sub(REDACTED, text)
    return text


__all__ = ["REDACTED", "scrub"]
