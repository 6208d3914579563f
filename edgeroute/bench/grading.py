"""Grading a free-text answer against an item's accepted answers.

The local model answers in sentences ("The capital of France is Paris."), so grading looks for the answer inside the
text, by the answer's type:

- **number** (the canonical answer parses as a number): numbers in the response (thousands separators removed,
  "zero".."twenty" read as digits); correct when the first or the last one equals the answer.
- **closed set** (yes/no, even/odd): the first of the set's words that appears must be the accepted one.
- **single letter**: the letter alone, quoted ('a', "B", (C)), or after "letter"/"answer"/"option".
- **multiple choice** (the item has ``choices``): the first option named, by letter or by its text, must be right.
- **text**: any accepted alias as a whole word or phrase. Case, accents and punctuation are ignored throughout.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, Optional

_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
_CLOSED_SETS = ({"yes", "no"}, {"even", "odd"}, {"true", "false"})
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def normalize(text: str) -> str:
    """Lower case, accents folded, punctuation other than ``-.'`` turned into spaces, whitespace collapsed."""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in folded if not unicodedata.combining(c)).lower()
    folded = re.sub(r"[^\w\s\-.']", " ", folded)
    return " ".join(folded.split())


def _as_number(text: str) -> Optional[float]:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def numbers_in(text: str) -> list[float]:
    """Numbers in ``text`` in order: digits (with thousands separators) and the words zero..twenty."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    out: list[float] = []
    for m in re.finditer(r"-?\d+(?:\.\d+)?|[A-Za-z]+", text):
        token = m.group(0)
        if token[0].isdigit() or token[0] == "-":
            out.append(float(token))
        elif token.lower() in _WORDS:
            out.append(float(_WORDS.index(token.lower())))
    return out


def _has_phrase(haystack: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(phrase)}(?![\w])", haystack) is not None


def _grade_letter(response: str, letter: str) -> bool:
    letter = letter.lower()
    raw = response.strip().lower()
    if re.sub(r"[^\w]", "", raw) == letter:
        return True
    if re.search(rf"['\"“‘(\[]\s*{letter}\s*['\"”’)\]]", raw):
        return True
    return re.search(rf"\b(?:letter|answer|option)\s*(?:is)?\s*:?\s*{letter}\b", raw) is not None


def _grade_choice(response: str, answers: Sequence[str], choices: Sequence[str]) -> bool:
    """The first option the response names (by ``(X)``/``X)``/a leading ``X``, or by its text) must be right."""
    right = answers[0].strip("()").upper()
    raw = response.strip()
    found: list[tuple[int, str]] = []
    for i, choice in enumerate(choices):
        letter = "ABCDEFGH"[i]
        m = re.search(rf"(?:\(\s*{letter}\s*\)|(?<![\w]){letter}\)|^{letter}(?![\w])|\b(?:answer|option)\s*(?:is)?\s*:?\s*{letter}\b)", raw)
        if m:
            found.append((m.start(), letter))
        m2 = re.search(rf"(?<![\w]){re.escape(normalize(choice))}(?![\w])", normalize(raw))
        if m2:
            found.append((len(raw) + m2.start(), letter))  # a named letter outranks a mentioned text
    if not found:
        return False
    return min(found)[1] == right


def grade(response: str, item: Mapping[str, Any]) -> bool:
    """True when ``response`` gives one of ``item["answers"]`` (see the module docstring for the rules)."""
    answers = [str(a) for a in item["answers"]]
    if item.get("choices"):
        return _grade_choice(response, answers, item["choices"])
    canonical = answers[0]
    value = _as_number(canonical)
    if value is not None:
        found = numbers_in(response)
        return bool(found) and (abs(found[0] - value) < 1e-9 or abs(found[-1] - value) < 1e-9)
    norm = normalize(response)
    for closed in _CLOSED_SETS:
        if normalize(canonical) in closed:
            words = [w for w in re.findall(r"[a-z]+", norm) if w in closed]
            return bool(words) and words[0] in {normalize(a) for a in answers}
    if len(canonical) == 1 and canonical.isalpha():
        return _grade_letter(response, canonical)
    return any(_has_phrase(norm, normalize(a)) for a in answers if normalize(a))
