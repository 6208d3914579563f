"""Undoing the usual ways sensitive data is disguised, before the detectors look: NFKC (full-width digits and
``＠``), zero-width and other invisible characters removed, ``[at]`` / ``(dot)`` spellings, and digits spelled out
as words. ``Normalized`` keeps, for every character it produces, the span of the original text it came from, so a
finding's offsets always point into what the user wrote."""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

#: Invisible characters that split a number or an address without showing (Unicode category Cf, and the rest).
_INVISIBLE = {"\u00ad", "\u034f", "\u180e", "\u3164", "\uffa0"}
# "[at]", "(@)", "{at}", "<at>", "-at-", "_at_" and the same for dots ("[.]", "(dot)", "-dot-"): defanged and
# disguised addresses.
_AT = re.compile(r"(?i)\s*(?:[\[\(\{<]\s*(?:at|@)\s*[\]\)\}>]|(?<=\w)\s*[-_]at[-_]\s*(?=\w))\s*")
_DOT = re.compile(r"(?i)\s*(?:[\[\(\{<]\s*(?:dot|\.)\s*[\]\)\}>]|(?<=\w)\s*[-_]dot[-_]\s*(?=\w))\s*")
_PERCENT_AT = re.compile(r"(?<=\w)%40(?=\w)")
# HTML entities ("&#64;", "&#x40;", "&commat;", "&period;"): unescaped.
_ENTITY = re.compile(r"&(?:#\d{2,5}|#[xX][0-9a-fA-F]{2,4}|[A-Za-z]{2,8});")
# Dot look-alikes between word characters (ideographic and other full stops NFKC keeps).
_DOT_LIKE = re.compile(r"(?<=\w)[\u3002\uff61\u2024\u00b7\u2027\u30fb](?=\w)")
# "4111 space 1111 dash 1111": separators spelled as words between digit groups.
_SEPARATOR_WORD = re.compile(r"(?i)(?<=\d)\s+(?:space|dash|hyphen|slash|dot)\s+(?=\d)")
# "jane#example.com": a hash where the @ goes, before a domain with a dot.
_HASH_AT = re.compile(r"(?<=[\w.])#(?=[\w-]+\.[^\W\d_]{2,}\b)")
# "j a n e @ e x a m p l e . c o m": single characters spaced out, around an @.
_SPACED_LETTERS = re.compile(r"(?<!\S)(?:\S ){2,}@(?: \S){4,}(?!\S)")
# "4lll llll llll llll": digit groups written with look-alike letters (l, I, | for 1; O, o for 0; S for 5).
_CONFUSABLE_RUN = re.compile(r"(?<![\w])(?=[\dlIO|oS]*\d)[\dlIO|oS]{3,6}(?:[ .-][\dlIO|oS]{3,6}){2,5}(?![\w])")
_CONFUSABLE = str.maketrans({"l": "1", "I": "1", "|": "1", "O": "0", "o": "0", "S": "5"})


def _digits_of(m: re.Match[str]) -> str | None:
    text = m.group(0)
    converted = text.translate(_CONFUSABLE)
    return converted if converted != text else None


_DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_WORD = "|".join(sorted(_DIGIT_WORDS, key=len, reverse=True))
#: Seven or more digit words (or digits) in a row, separated by spaces, dashes or commas.
_SPELLED = re.compile(rf"(?i)\b(?:(?:{_WORD}|\d)[\s,-]+){{6,}}(?:{_WORD}|\d)\b")


@dataclass(frozen=True)
class Normalized:
    """``text`` as the detectors see it; ``starts[i]`` / ``ends[i]`` is the original span of its character i."""

    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original [start, end) of the normalised [start, end)."""
        return self.starts[start], self.ends[end - 1]


def _rewrite(text: str, starts: list[int], ends: list[int], pattern: re.Pattern[str], repl) -> tuple[str, list[int], list[int]]:
    out, s_out, e_out, at = [], [], [], 0
    for m in pattern.finditer(text):
        new = repl(m)
        if new is None:
            continue
        out.append(text[at:m.start()])
        s_out += starts[at:m.start()]
        e_out += ends[at:m.start()]
        out.append(new)
        s_out += [starts[m.start()]] * len(new)
        e_out += [ends[m.end() - 1]] * len(new)
        at = m.end()
    out.append(text[at:])
    s_out += starts[at:]
    e_out += ends[at:]
    return "".join(out), s_out, e_out


def _spelled(m: re.Match[str]) -> str | None:
    words = re.split(r"[\s,-]+", m.group(0).strip())
    if sum(not w.isdigit() for w in words) < 4:  # mostly digits already: leave as written
        return None
    return "".join(_DIGIT_WORDS.get(w.lower(), w) for w in words)


def normalize(text: str) -> Normalized:
    """The normalised ``text`` with its offset map."""
    chars, starts, ends = [], [], []
    for i, ch in enumerate(text):
        if ch in _INVISIBLE or (unicodedata.category(ch) == "Cf"):
            continue
        if ord(ch) > 127:
            mapped = "-" if unicodedata.category(ch) == "Pd" else unicodedata.normalize("NFKC", ch)  # dashes
        else:
            mapped = ch
        for c in mapped:
            chars.append(c)
            starts.append(i)
            ends.append(i + 1)
    out = "".join(chars)
    out, starts, ends = _rewrite(out, starts, ends, _ENTITY, lambda m: html.unescape(m.group(0)))
    out, starts, ends = _rewrite(out, starts, ends, _DOT_LIKE, lambda m: ".")
    out, starts, ends = _rewrite(out, starts, ends, _SEPARATOR_WORD, lambda m: " ")
    out, starts, ends = _rewrite(out, starts, ends, _AT, lambda m: "@")
    out, starts, ends = _rewrite(out, starts, ends, _DOT, lambda m: ".")
    out, starts, ends = _rewrite(out, starts, ends, _PERCENT_AT, lambda m: "@")
    out, starts, ends = _rewrite(out, starts, ends, _HASH_AT, lambda m: "@")
    out, starts, ends = _rewrite(out, starts, ends, _SPACED_LETTERS, lambda m: m.group(0).replace(" ", ""))
    out, starts, ends = _rewrite(out, starts, ends, _CONFUSABLE_RUN, _digits_of)
    out, starts, ends = _rewrite(out, starts, ends, _SPELLED, _spelled)
    return Normalized(out, tuple(starts), tuple(ends))


__all__ = ["Normalized", "normalize"]
