"""The privacy gate's detectors: find data that must never leave the device.

``PrivacyDetector`` combines the built-in ``PatternDetector`` (kinds ``email``, ``phone``, ``card``, ``api_key``,
``iban``, matched after ``normalize`` undoes the usual disguises) with any other ``Detector`` an app adds. Findings
carry the kind and the character span only: the matched text is never copied into an Answer, a log or the trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Optional

from .base import Detector, Finding
from .patterns import KINDS, PatternDetector, iban_ok, luhn_ok


class PrivacyDetector:
    """The built-in detector for ``kinds`` (default: all of ``KINDS``), plus ``extra`` detectors."""

    def __init__(self, kinds: Optional[Iterable[str]] = None, *, extra: Sequence[Detector] = ()) -> None:
        self.builtin = PatternDetector(tuple(kinds) if kinds is not None else None)
        self.kinds = self.builtin.kinds
        self.detectors: tuple[Detector, ...] = (self.builtin, *extra)

    def find(self, text: str) -> list[Finding]:
        out: list[Finding] = []
        for detector in self.detectors:
            out += detector.find(text)
        return sorted(set(out), key=lambda f: (f.start, f.end, f.kind))

    def kinds_in(self, texts: Sequence[str]) -> list[str]:
        """The distinct kinds found in any of ``texts``: ``KINDS`` order first, then others by name."""
        found = {f.kind for t in texts for f in self.find(t)}
        return [k for k in KINDS if k in found] + sorted(found - set(KINDS))


__all__ = ["Detector", "Finding", "KINDS", "PatternDetector", "PrivacyDetector", "iban_ok", "luhn_ok"]
