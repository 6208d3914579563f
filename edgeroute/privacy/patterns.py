"""The built-in detector: e-mail addresses, phone numbers (``phonenumbers``), payment cards (Luhn), API keys and
IBANs (mod-97), matched on the normalised text (``normalize``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Optional

import phonenumbers

from .base import Detector, Finding
from .normalize import normalize

KINDS = ("email", "phone", "card", "api_key", "iban")
#: Regions whose national formats (no ``+`` prefix) are recognised; ``+``-prefixed numbers are found for all.
DEFAULT_PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN", "AU", "BR", "ES", "IT", "NL", "JP", "CN", "MX")

_TLDS = ("com|org|net|edu|gov|io|co|uk|de|fr|es|it|nl|eu|ch|at|be|se|no|dk|fi|pl|cz|ru|cn|jp|in|au|ca|br|mx|"
         "info|biz|me|us|app|dev|ai")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.%+-]+\s?@\s?[\w-]+(?:\s?\.\s?[\w-]+)*\s?\.\s?[^\W\d_]{2,}(?![\w-])")
_EMAIL_WORDS = re.compile(rf"(?i)(?<![\w.+-])[\w.+-]+(?:\s+dot\s+[\w-]+)*\s+at\s+[\w-]+(?:\s+dot\s+[\w-]+)*"
                          rf"\s+dot\s+(?:{_TLDS})(?![\w-])")
_SEP = r"(?:[ \t./\\_+,()|:*#~-]|(?<=\d)[xX](?=\d)|\n(?!\n))"  # light punctuation between digit groups
_CARD = re.compile(rf"(?<!\d[.,])(?<!\d)\d(?:{_SEP}{{0,3}}\d){{12,18}}(?![\d])(?!\.\d)")
_EMAIL_WORDS_DOTS = re.compile(r"(?i)(?<![\w.+-])[\w.+-]+\s+at\s+[\w-]+(?:(?:\.|\s\.\s)[\w-]+)*(?:\.|\s\.\s)(?:" + _TLDS
                               + r")(?![\w-])")
_KEY_PREFIX = re.compile(
    r"(?<![\w-])(?:(?:sk|rk|pk)-(?:proj-|ant-|live-|test-|svcacct-)?(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{6,}"
    r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{8,}|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{30,}|glpat-[A-Za-z0-9_-]{16,}"
    r"|hf_[A-Za-z0-9]{20,}|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----)"
)
# A value right after a credential label ("Bearer ...", "api_key=...", "password: ...").
_LABELLED = re.compile(r"(?i)\b(?:bearer|token|api[_-]?key|secret|passw(?:or)?d|pwd|authorization|access[_-]?key)"
                       r"[\"']?\s*[:=]?\s*[\"']?(?P<value>[A-Za-z0-9_+/=.-]{12,})")
_LONG_TOKEN = re.compile(r"(?<![\w-])[A-Za-z0-9_+/=-]{20,}(?![\w-])")
_IBAN = re.compile(r"(?i)(?:(?<=IBAN)|(?<![A-Za-z0-9]))[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?:[ ./\n-][A-Z0-9]{4}){2,7}"
                   r"(?:[ ./\n-](?=[A-Z0-9]{0,2}\d)[A-Z0-9]{1,3})?)"
                   r"(?![A-Za-z0-9])")
_UUID = re.compile(r"(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PHONE_WORDS = re.compile(r"(?i)\b(?:call|phone|tel|telephone|text|sms|mobile|cell|number|reach|dial|fax|whatsapp)\b")
_LOCAL_PHONE = re.compile(r"(?<![\w.-])\d{3}[ .-]\d{4}(?![\w]|[.-]\d)")
_CARD_LAYOUTS = ([4, 4, 4, 4], [4, 4, 4, 4, 3], [4, 6, 5], [4, 6, 4], [4, 4, 4, 1], [4, 4, 4, 2], [4, 4, 4, 3],
                 [4, 4, 4, 4, 1], [4, 4, 4, 4, 2])
_OPERATORS = set("=+*×÷^%")
_NANP = re.compile(r"^(?:\+?1[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}$")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    s = re.sub(r"[ ./\n-]", "", text).upper()
    if not 15 <= len(s) <= 34:
        return False
    number = "".join(str(int(c, 36)) for c in s[4:] + s[:4])
    return int(number) % 97 == 1


def _card_ok(span: str) -> bool:
    """13-19 digits passing Luhn, written whole, in groups of 2-6, or one digit at a time (not a decimal or a
    date-like run of unequal parts)."""
    digits = re.sub(r"\D", "", span)
    if not (13 <= len(digits) <= 19 and luhn_ok(digits)):
        return False
    groups = [g for g in re.split(rf"{_SEP}+", span) if g]
    if re.search(r",\s", span):  # "1991, 1992, 1993" is a list
        return False
    if re.search(r"\s[-/+]\s", span):  # "a - b - c" is arithmetic unless laid out as a card is
        return [len(g) for g in groups] in _CARD_LAYOUTS
    if all(len(g) == 1 for g in groups):  # one digit at a time, but not a count ("1 2 3 4 5 ...")
        steps = {int(b) - int(a) for a, b in zip(digits[:9], digits[1:9])}
        return not (steps <= {1} or steps <= {-1})
    return len(groups) == 1 or all(2 <= len(g) <= 6 for g in groups[:-1]) and 1 <= len(groups[-1]) <= 6


def _phone_shaped(text: str, start: int, end: int) -> bool:
    """Written as a phone number is: 8+ digits (7+ after a ``+``), no spaced operators inside, no arithmetic
    around it."""
    raw = text[start:end]
    digits = sum(c.isdigit() for c in raw)
    if digits < (7 if raw.startswith("+") else 8) or re.search(r"\s[-+*/x]\s", raw):
        return False
    groups = [g for g in re.split(r"\D+", raw) if g]
    if not raw.startswith(("+", "00")):  # a national number: 9+ digits, no stray single digits, no label before
        if digits < 9 or any(len(g) == 1 for g in groups[1:]) or (len(groups[0]) == 1 and groups[0] not in "01"):
            return False
        if re.search(r"\d-\d", raw) and len(groups) >= 2 and len(groups[0]) == 4 and not _NANP.match(raw):
            return False  # "2024-000123", "1234-5678-90": a year or part number, not a dialled number
        if re.search(r"(?i)\b(?:issn|isbn|ean|upc|sku|build|version|ver|v|no|zip|postcode|post code|code|id)\W*$",
                     text[max(0, start - 12):start]):
            return False
    bare = re.sub(r"(?i)\s*(?:x|ext\.?|extension)\s*\d{1,6}$", "", raw)  # an extension does not change the shape
    if bare.count(".") >= 2 and not _NANP.match(bare):  # dotted, but not 555.123.4567: a version number
        return False
    before, after = text[max(0, start - 3):start], text[end:end + 3]
    return not (_OPERATORS & set(before + after) or re.search(r"\s-\s*$", before) or re.match(r"^\s*-\s", after))


def _card_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The card in the digit run text[start:end]: the whole run if it is one, else the longest run of its groups that
    is ("4580 9744 9038 9307,09/27": the expiry after it is not part of the number)."""
    span = text[start:end]
    if _card_ok(span) and not _asked_to_compute(text, start, span):
        return [(start, end)]
    groups = [(m.start(), m.end()) for m in re.finditer(r"\d+", span)]
    best: Optional[tuple[int, int]] = None
    for i in range(len(groups)):
        for j in range(len(groups) - 1, i - 1, -1):
            if j - i + 1 == len(groups):
                continue  # the whole run was tried
            a, b = groups[i][0], groups[j][1]
            if span[a - 1:a] == "." and i > 0 or span[b:b + 1] == "." and j < len(groups) - 1:
                continue  # the decimals of a number ("19.833333333333332"), not a card
            if (best is None or b - a > best[1] - best[0]) and _card_ok(span[a:b]) \
                    and not _asked_to_compute(text, start + a, span[a:b]):
                best = (a, b)
    return [(start + best[0], start + best[1])] if best else []


def _asked_to_compute(text: str, start: int, span: str) -> bool:
    """True for "What is 4111 - 1111 - 1111 - 1111?": spaced operators right after a request to compute."""
    return bool(re.search(r"\s[-/+]\s", span)) and bool(
        re.search(r"(?i)\b(?:what is|what's|compute|calculate|evaluate|solve|subtract)\s*$", text[max(0, start - 20):start]))


def _looks_like_key(token: str) -> bool:
    """Long tokens that mix letters and digits throughout (hashes, secrets); hyphenated words with a year do not."""
    n = len(token)
    digits, upper, lower = (sum(c.isdigit() for c in token), sum(c.isupper() for c in token),
                            sum(c.islower() for c in token))
    if _UUID.fullmatch(token.strip("{}")):  # an identifier, not a secret
        return False
    if n >= 32 and digits >= 0.2 * n and upper + lower >= 0.2 * n:  # hashes, hex secrets
        return True
    if not (upper >= 0.1 * n and lower >= 0.1 * n and digits >= 0.05 * n):
        return False
    # random strings change character class at most steps (about 60 %) and hold few lower-case words;
    # identifiers ("TheQuickBrownFox123") are made of words
    cls = ["u" if c.isupper() else "l" if c.islower() else "d" if c.isdigit() else "o" for c in token]
    wordy = sum(len(w) for w in re.findall(r"[a-z]{3,}", token))
    return sum(a != b for a, b in zip(cls, cls[1:])) >= 0.35 * (n - 1) and wordy < 0.4 * n


def _any(_span: str) -> bool:
    return True


#: (kind, pattern, validator of the matched text), tried in order: an earlier match keeps its span.
_CHECKS: tuple[tuple[str, re.Pattern[str], Callable[[str], bool]], ...] = (
    ("api_key", _KEY_PREFIX, _any),
    ("email", _EMAIL, _any),
    ("email", _EMAIL_WORDS, _any),
    ("email", _EMAIL_WORDS_DOTS, _any),
    ("iban", _IBAN, iban_ok),
    ("card", _CARD, _card_ok),
    ("api_key", _LONG_TOKEN, _looks_like_key),
)


def _labelled_secrets(text: str) -> list[tuple[int, int]]:
    """Values after a credential label that mix letters and digits (not words: "token of appreciation")."""
    out = []
    for m in _LABELLED.finditer(text):
        value = m.group("value")
        if any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
            out.append((m.start("value"), m.end("value")))
    return out


class PatternDetector(Detector):
    """The built-in detector for ``kinds`` (default: all of ``KINDS``); ``phone_regions`` are the countries whose
    national phone formats count (international ``+`` numbers always do)."""

    name = "patterns"

    def __init__(self, kinds: Optional[Sequence[str]] = None,
                 phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS) -> None:
        chosen = tuple(kinds) if kinds is not None else KINDS
        unknown = sorted(set(chosen) - set(KINDS))
        if unknown:
            from .._errors import ConfigError

            raise ConfigError(f"unknown privacy kind(s) {unknown}; known: {list(KINDS)}")
        self.kinds = chosen
        self.phone_regions = tuple(phone_regions)

    @classmethod
    def from_config(cls, config: Any) -> "PatternDetector":
        return cls(config.privacy_kinds)

    def find(self, text: str) -> list[Finding]:
        norm = normalize(text)
        t = norm.text
        out: list[Finding] = []
        taken: list[tuple[int, int]] = []

        def add(kind: str, start: int, end: int) -> None:
            if any(start < e and s < end for s, e in taken):
                return
            taken.append((start, end))
            out.append(Finding(kind, *norm.span(start, end)))

        for kind, pattern, valid in _CHECKS:
            if kind in self.kinds:
                for m in pattern.finditer(t):
                    if kind == "card":
                        for start, end in _card_spans(t, m.start(), m.end()):
                            add(kind, start, end)
                    elif valid(m.group(0)):
                        add(kind, m.start(), m.end())
        if "api_key" in self.kinds:
            for start, end in _labelled_secrets(t):
                add("api_key", start, end)
        if "phone" in self.kinds and sum(c.isdigit() for c in t) >= 7:
            for start, end in self._phones(t):
                add("phone", start, end)
            for m in _LOCAL_PHONE.finditer(t):  # "555-1234" counts only after a word like "call" or "number"
                if _PHONE_WORDS.search(t[max(0, m.start() - 25):m.start()]):
                    add("phone", m.start(), m.end())
        return sorted(out, key=lambda f: f.start)

    def _phones(self, text: str) -> list[tuple[int, int]]:
        """Valid numbers in any of the regions, and NANP-shaped ones (3-3-4, e.g. the fictional 555 range) that
        are only possible."""
        found: set[tuple[int, int]] = set()
        for region in self.phone_regions:
            for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
                if _phone_shaped(text, m.start, m.end):
                    found.add((m.start, m.end))
        for m in phonenumbers.PhoneNumberMatcher(text, "US", leniency=phonenumbers.Leniency.POSSIBLE):
            raw = m.raw_string
            if ((_NANP.match(raw) and not raw.isdigit()) or raw.startswith("+")) and _phone_shaped(text, m.start, m.end):
                found.add((m.start, m.end))
        return sorted(found)


__all__ = ["DEFAULT_PHONE_REGIONS", "KINDS", "PatternDetector", "iban_ok", "luhn_ok"]
