"""Grading a free-text answer against an item's accepted answers.

The local model answers in sentences ("The capital of France is Paris."), so grading looks for the answer inside the
text, by the answer's type (the item's ``answer_type``, else the one its answers imply):

- **number** (the canonical answer parses as a number): numbers in the response (thousands separators removed,
  "zero".."twenty" read as digits); correct when the first or the last one equals the answer (within 1e-6, or 1e-4
  of its size).
- **closed set** (yes/no, true/false, valid/invalid, even/odd): the first of the set's words that appears must be
  the accepted one.
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
#: Numbers match within this absolute or relative tolerance, whichever is larger.
NUMBER_ABS_TOL = 1e-6
NUMBER_REL_TOL = 1e-4
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


def _grade_number(response: str, canonical: str) -> bool:
    value = _as_number(canonical)
    if value is None:
        return False
    found = numbers_in(response)
    tol = max(NUMBER_ABS_TOL, NUMBER_REL_TOL * abs(value))
    return bool(found) and (abs(found[0] - value) <= tol or abs(found[-1] - value) <= tol)


def _grade_closed(response: str, answers: Sequence[str], closed: set[str]) -> bool:
    words = [w for w in re.findall(r"[a-z]+", normalize(response)) if w in closed]
    return bool(words) and words[0] in {normalize(a) for a in answers}


def _grade_text(response: str, answers: Sequence[str]) -> bool:
    norm = normalize(response)
    return any(_has_phrase(norm, normalize(a)) for a in answers if normalize(a))


#: The answer types an item can declare (``answer_type``), each with its grader.
ANSWER_TYPES = ("text", "number", "choice", "yesno", "truefalse", "validity", "letter")
_CLOSED_BY_TYPE = {"yesno": {"yes", "no"}, "truefalse": {"true", "false"}, "validity": {"valid", "invalid"}}


def answer_type_of(item: Mapping[str, Any]) -> str:
    """The item's declared ``answer_type``, or the one its answers imply (choices: choice; a number; a closed set
    word; a single letter; else text)."""
    declared = item.get("answer_type")
    if declared:
        return str(declared)
    if item.get("choices"):
        return "choice"
    canonical = str(item["answers"][0])
    if _as_number(canonical) is not None:
        return "number"
    for kind, closed in (*_CLOSED_BY_TYPE.items(), ("evenodd", {"even", "odd"})):
        if normalize(canonical) in closed:
            return kind
    if len(canonical) == 1 and canonical.isalpha():
        return "letter"
    return "text"


def grade(response: str, item: Mapping[str, Any]) -> bool:
    """True when ``response`` gives one of ``item["answers"]``, by the item's answer type (see the module
    docstring for the rules)."""
    answers = [str(a) for a in item["answers"]]
    kind = answer_type_of(item)
    if kind == "choice":
        return _grade_choice(response, answers, item["choices"])
    if kind == "number":
        return _grade_number(response, answers[0])
    if kind == "evenodd":
        return _grade_closed(response, answers, {"even", "odd"})
    if kind in _CLOSED_BY_TYPE:
        return _grade_closed(response, answers, _CLOSED_BY_TYPE[kind])
    if kind == "letter":
        return _grade_letter(response, answers[0])
    return _grade_text(response, answers)
