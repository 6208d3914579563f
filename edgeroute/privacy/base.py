"""The privacy seam: a ``Detector`` finds sensitive spans in text; ``Finding`` says what and where (never the text)."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One sensitive span: its kind and [start, end) character offsets in the original text (never the text)."""

    kind: str
    start: int
    end: int


class Detector(abc.ABC):
    """Finds data that must not leave the device. A plugin (e.g. a Presidio-based detector) is one class with
    ``find`` and ``from_config``, registered in ``edgeroute.registry.DETECTORS`` by name (or through the
    ``edgeroute.detectors`` entry-point group) and named in ``privacy_detectors``."""

    #: Registry name.
    name: str = "detector"
    #: The kinds this detector may report (for display; findings may use any kind name).
    kinds: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Any) -> "Detector":
        """Build from a ``RouterConfig`` (the registry's factory). Default: no arguments."""
        return cls()

    @abc.abstractmethod
    def find(self, text: str) -> list[Finding]:
        """Every sensitive span in ``text``."""
