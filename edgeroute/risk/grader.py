"""The agreement grader: is the local answer the same answer as the cloud's (the reference)?

A label is *agreement with the cloud*, and the cloud can itself be wrong; user feedback overrides it. By the
reference's type, in this order:

- **multiple choice** (the prompt lists options ``A) ...`` / ``(B) ...`` / ``C. ...``): the first option each answer
  names, by letter or by text;
- **yes / no, true / false, valid / invalid, even / odd**: the first such word of each;
- **number** (the reference's short form holds a number): the reference's last number must be the local answer's
  first or last (1e-6 absolute or 1e-4 relative);
- **short answer**: the reference's answer-bearing words (not in the question, not stop words; at most four) must
  all appear in the local answer; none of them: a disagreement; some: unknown.

Anything else (long free text) is unknown (``verdict`` None): a cloud judge, when configured, decides it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from ..bench.grading import grade, normalize, numbers_in

_OPTION = re.compile(r"(?m)^\s*\(?([A-H])[).:]\s+(\S.*)$")
_CLOSED = ({"yes", "no"}, {"true", "false"}, {"valid", "invalid"}, {"even", "odd"})
_LEAD = re.compile(r"^(?:the\s+)?(?:correct\s+|final\s+)?(?:answer|result)\s*(?:is|:)\s*|^(?:it\s+is|it's)\s+")
_STOP = frozenset("a an the is are was were be been of in on at to for by with and or as it its this that these "
                  "those from which what who whom whose when where why how than then so such not no yes answer "
                  "correct final also i you he she they we there here".split())
#: A short answer has at most this many answer-bearing words.
SHORT_ANSWER_WORDS = 4


@dataclass(frozen=True)
class Agreement:
    """``verdict`` True (the local answer agrees with the reference), False, or None (cannot tell); ``kind`` is the
    rule that decided."""

    verdict: Optional[bool]
    kind: str


def options_in(question: str) -> list[str]:
    """The options listed in ``question`` in letter order (``A) x`` lines), or [] when it lists none."""
    found = _OPTION.findall(question)
    letters = [letter for letter, _ in found]
    if len(found) < 2 or letters != list("ABCDEFGH"[: len(found)]):
        return []
    return [text.strip() for _, text in found]


def _first_option(text: str, choices: list[str]) -> Optional[str]:
    for letter in "ABCDEFGH"[: len(choices)]:
        if grade(text, {"answers": [letter], "choices": choices}):
            return letter
    return None


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", normalize(text))


def agree(question: str, local: str, reference: str) -> Agreement:
    """Whether ``local`` gives the same answer as ``reference`` to ``question`` (rules in the module docstring)."""
    if not reference.strip():
        return Agreement(None, "empty reference")
    choices = options_in(question)
    if choices:
        want = _first_option(reference, choices)
        if want is None:
            return Agreement(None, "choice")
        return Agreement(_first_option(local, choices) == want, "choice")
    ref_words = _words(reference)
    for closed in _CLOSED:
        ref_closed = [w for w in ref_words if w in closed]
        if ref_closed and ref_words.index(ref_closed[0]) < 3:  # the reference leads with it
            local_closed = [w for w in _words(local) if w in closed]
            return Agreement(bool(local_closed) and local_closed[0] == ref_closed[0], "closed")
    short = _LEAD.sub("", normalize(reference)).strip(" .")
    values = numbers_in(short)
    if values and len(short.split()) <= 12:
        value = values[-1]
        canonical = str(int(value)) if value == int(value) else repr(value)
        return Agreement(grade(local, {"answers": [canonical], "answer_type": "number"}), "number")
    asked = set(_words(question))
    key = [w for w in _words(short) if w not in asked and w not in _STOP]
    if not key or len(key) > SHORT_ANSWER_WORDS:
        return Agreement(None, "free text")
    have = set(_words(local))
    hits = sum(w in have for w in key)
    if hits == len(key):
        return Agreement(True, "short answer")
    if hits == 0:
        return Agreement(False, "short answer")
    return Agreement(None, "short answer")


def judge_verdict(reply: str) -> Optional[bool]:
    """A cloud judge's reply read as a verdict: its first word ``correct``/``yes``/``true`` or
    ``incorrect``/``no``/``false`` (else None)."""
    words = _words(reply)
    if not words:
        return None
    if words[0] in ("correct", "yes", "true", "right"):
        return True
    if words[0] in ("incorrect", "no", "false", "wrong"):
        return False
    return None
