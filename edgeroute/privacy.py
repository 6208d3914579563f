"""The privacy gate's detector: finds data that must never leave the device.

Kinds: ``email``, ``phone``, ``card`` (13-19 digits that pass the Luhn check), ``api_key`` (well-known key prefixes
and long mixed letter/digit tokens), ``iban`` (country code, check digits, passes mod-97). Findings carry the kind and
the character span only: the matched text is never copied into an Answer, a log or the trace.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

KINDS = ("email", "phone", "card", "api_key", "iban")

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){2,4}"  # +44 20 7946 0958
    r"|\(\d{2,4}\)[\s.-]?\d{3,4}[\s.-]?\d{3,4}"  # (020) 7946 0958
    r"|0\d{1,4}(?:[\s.-]\d{2,4}){2,3}"  # 020 7946 0958
    r"|\d{3}[.-]\d{3}[.-]\d{4})(?![\w])"  # 555-123-4567
)
_CARD = re.compile(r"(?<!\d)(?<!\d\.)(?:\d[ -]?){12,18}\d(?!\d)(?!\.\d)")  # not part of a decimal number
_KEY_PREFIX = re.compile(
    r"(?<![\w-])(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|"
    r"xox[abpr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,})"
)
_LONG_TOKEN = re.compile(r"(?<![\w-])[A-Za-z0-9_-]{32,}(?![\w-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}(?![A-Za-z0-9])")


@dataclass(frozen=True)
class Finding:
    """One sensitive span: its kind and [start, end) character offsets (never the text itself)."""

    kind: str
    start: int
    end: int


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    s = text.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _looks_like_key(token: str) -> bool:
    """Long tokens that mix letters and digits throughout (hashes, secrets); hyphenated words with a year do not."""
    digits, letters = sum(c.isdigit() for c in token), sum(c.isalpha() for c in token)
    return digits >= 0.2 * len(token) and letters >= 0.2 * len(token)


def _card_ok(span: str) -> bool:
    digits = re.sub(r"\D", "", span)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _phone_ok(span: str) -> bool:
    return 9 <= len(re.sub(r"\D", "", span)) <= 15  # E.164 numbers have at most 15 digits


def _any(_span: str) -> bool:
    return True


#: (kind, pattern, validator of the matched text), tried in order.
_CHECKS: tuple[tuple[str, re.Pattern[str], Callable[[str], bool]], ...] = (
    ("api_key", _KEY_PREFIX, _any),
    ("email", _EMAIL, _any),
    ("iban", _IBAN, iban_ok),
    ("card", _CARD, _card_ok),
    ("api_key", _LONG_TOKEN, _looks_like_key),
    ("phone", _PHONE, _phone_ok),
)


class PrivacyDetector:
    """Finds the ``kinds`` of sensitive data (default: all of ``KINDS``) in text."""

    def __init__(self, kinds: Optional[Iterable[str]] = None) -> None:
        chosen = tuple(kinds) if kinds is not None else KINDS
        unknown = sorted(set(chosen) - set(KINDS))
        if unknown:
            from ._errors import ConfigError

            raise ConfigError(f"unknown privacy kind(s) {unknown}; known: {list(KINDS)}")
        self.kinds = chosen

    def find(self, text: str) -> list[Finding]:
        out: list[Finding] = []
        taken: list[tuple[int, int]] = []

        def add(kind: str, m: re.Match[str]) -> None:
            if any(m.start() < e and s < m.end() for s, e in taken):
                return
            taken.append((m.start(), m.end()))
            out.append(Finding(kind, m.start(), m.end()))

        for kind, pattern, valid in _CHECKS:  # in this order: an earlier match keeps its span
            if kind in self.kinds:
                for m in pattern.finditer(text):
                    if valid(m.group(0)):
                        add(kind, m)
        return sorted(out, key=lambda f: f.start)

    def kinds_in(self, texts: Sequence[str]) -> list[str]:
        """The distinct kinds found in any of ``texts``, in ``KINDS`` order."""
        found = {f.kind for t in texts for f in self.find(t)}
        return [k for k in KINDS if k in found]
