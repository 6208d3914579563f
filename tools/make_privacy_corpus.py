"""Build the privacy gate's labelled corpus: edgeroute/bench/data/privacy.jsonl.

Each line: {"id", "text", "sensitive": bool, "kind": "card" | "email" | "phone" | "api_key" | "iban" | "",
"evasion": what disguise it uses, "split": "dev" | "tuned" | "heldout"}.

- ``dev``: the evasions reported against the gate (issue 18: card numbers with dots, double spaces, slashes,
  zero-width spaces or spelled out; e-mails with umlauts, a full-width @, "[at] [dot]", a zero-width space; the US
  format "555 123 4567"; a short ``sk-`` key) and plain forms, used while building the detector.
- ``tuned``: the first held-out round, written separately (mixed separators, thin and no-break spaces, spelled
  addresses, URL-encoded @, spelled phone numbers, other key shapes, lower-case IBANs, ...). It was measured once
  (recall 0.881, false positives 0.53 %), then the detector was fixed on it: it is no longer held out.
- The second round (plus signs, parenthesised groups, other scripts' digits, en dashes, defanged "[@]"
  addresses, homoglyphs, extensions, tel: URIs, "00" prefixes, more key shapes, passwords in URLs, ...) was
  measured once (recall 0.748, false positives 2.1 %), then fixed on: it is ``tuned`` too.
- The third round (other separators, cards in JSON and code, split or leetspeak numbers, display names,
  addresses in URLs, spaced letters, local and bare phone numbers, more countries, cloud credentials, bank forms)
  was measured once (recall 0.662, false positives 2.2 %), then fixed on: ``tuned`` too.
- The fourth round (superscript and Arabic-Indic digits, cards in URLs, CSV rows and tables, "space" spelled out,
  HTML entities, ideographic full stops, line breaks, tel: links, .env lines, lower-case bearer tokens, IBANs glued
  to labels or on several lines) was measured once (recall 0.711, false positives 0.0 %), then fixed on: ``tuned``.
- ``heldout``: the fifth round, written after those fixes and not tuned on (pasted e-mails, YAML, full-width
  hyphens, minus signs, spaced pipes, URL paths, fully URL-encoded addresses, spaces inside domains, right-to-left
  marks, slash-style German numbers, exit codes, half-spelled numbers, secrets in URLs and webhooks, Telegram and
  Stripe tokens, look-alike benign strings such as order numbers, commit hashes and ARNs). Its figure is the one to
  read as the transfer figure.
- Benign strings: benchmark questions (every family of edgeroute's bench set), dates, times, prices, version
  numbers, arithmetic, identifiers and words that look like the real thing ("sk-learn", "call me at noon").

All values are synthetic: card numbers are generated to pass Luhn, keys are random, e-mail domains and phone numbers
are reserved or fictional (example.com, 555 numbers, Ofcom's drama ranges). Licence: CC0 (own work); the benchmark
questions keep their sources' licences (edgeroute/bench/data/DATA_LICENSES.md).

    python tools/make_privacy_corpus.py        # writes the file (deterministic: seed 18)
"""

from __future__ import annotations

import json
import random
import string
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "edgeroute" / "bench" / "data" / "privacy.jsonl"
ZW = "\u200b"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
rng = random.Random(18)


def luhn_complete(prefix: str, length: int) -> str:
    from edgeroute.privacy import luhn_ok

    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        if luhn_ok(body + check):
            return body + check
    raise AssertionError


def cards(n: int) -> list[str]:
    brands = [("4", 16), ("51", 16), ("55", 16), ("34", 15), ("37", 15), ("6011", 16), ("4", 13), ("3528", 16),
              ("62", 19), ("2221", 16)]
    return [luhn_complete(*brands[i % len(brands)]) for i in range(n)]


def groups(number: str) -> list[str]:
    if len(number) == 15:
        return [number[:4], number[4:10], number[10:]]
    return [number[i:i + 4] for i in range(0, len(number), 4)]


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


CARD_DEV = {
    "plain": lambda n: n,
    "spaces": lambda n: " ".join(groups(n)),
    "dashes": lambda n: "-".join(groups(n)),
    "dots": lambda n: ".".join(groups(n)),
    "double spaces": lambda n: "  ".join(groups(n)),
    "slashes": lambda n: "/".join(groups(n)),
    "zero-width spaces": lambda n: ZW.join(groups(n)),
    "zero-width between digits": lambda n: ZW.join(n),
    "spelled out": lambda n: " ".join(WORDS[int(d)] for d in n),
    "full-width digits": lambda n: fullwidth(" ".join(groups(n))),
}
CARD_HELDOUT = {
    "mixed separators": lambda n: "".join(g + rng.choice([" ", "-", ".", "/"]) for g in groups(n))[:-1],
    "underscores": lambda n: "_".join(groups(n)),
    "no-break spaces": lambda n: "\u00a0".join(groups(n)),
    "thin spaces": lambda n: "\u2009".join(groups(n)),
    "one digit at a time": lambda n: " ".join(n),
    "spelled with hyphens, capitalised": lambda n: "-".join(WORDS[int(d)].capitalize() for d in n),
    "spelled with commas": lambda n: ", ".join(WORDS[int(d)] for d in n),
    "spaced dashes": lambda n: " - ".join(groups(n)),
    "line break": lambda n: " ".join(groups(n)[:2]) + "\n" + " ".join(groups(n)[2:]),
    "soft hyphens": lambda n: "\u00ad".join(groups(n)),
}
CARD_TEMPLATES = ["my card is {}", "Charge {} please", "card number: {} exp 09/27", "Is {} a valid Visa?",
                  "use the card {} for the order", "{}", "Payment details — {} — CVV 123"]

NAMES = [("jane", "doe"), ("jürgen", "müller"), ("zoë", "smith"), ("li", "wei"), ("maría", "garcía"),
         ("o", "brien"), ("anna", "kowalska"), ("søren", "kierkegaard"), ("ali", "hassan"), ("emma", "jones")]
DOMAINS = ["example.com", "example.org", "mail.example.co.uk", "beispiel.de", "exämple.de", "example.net"]
EMAIL_DEV = {
    "plain": lambda u, d: f"{u}@{d}",
    "umlauts": lambda u, d: f"{u}@{d}".replace("u", "ü").replace("o", "ö"),
    "full-width @": lambda u, d: f"{u}＠{d}",
    "[at] [dot]": lambda u, d: f"{u} [at] {d.replace('.', ' [dot] ')}",
    "(at) (dot)": lambda u, d: f"{u}(at){d.replace('.', '(dot)')}",
    "zero-width space": lambda u, d: f"{u}{ZW}@{d}",
    "upper case": lambda u, d: f"{u}@{d}".upper(),
    "plus address": lambda u, d: f"{u}+news@{d}",
}
EMAIL_HELDOUT = {
    "at and dot as words": lambda u, d: f"{u.replace('.', ' dot ')} at {d.replace('.', ' dot ')}",
    "braces": lambda u, d: f"{u}{{at}}{d.replace('.', '{dot}')}",
    "spaces around @ and dots": lambda u, d: f"{u} @ {d.replace('.', ' . ')}",
    "mailto link": lambda u, d: f"mailto:{u}@{d}",
    "url-encoded @": lambda u, d: f"{u}%40{d}",
    "full-width throughout": lambda u, d: fullwidth(f"{u}@{d}"),
    "zero-width in the domain": lambda u, d: f"{u}@{d[:3]}{ZW}{d[3:]}",
    "soft hyphen": lambda u, d: f"{u[:2]}\u00ad{u[2:]}@{d}",
    "AT DOT in capitals": lambda u, d: f"{u} AT {d.replace('.', ' DOT ')}",
    "angle brackets": lambda u, d: f"{u}<at>{d.replace('.', '<dot>')}",
}
EMAIL_TEMPLATES = ["mail me at {} please", "my address is {}", "Contact: {}", "send the invoice to {} today",
                   "{}", "reply-to {} (work)"]

PHONES_DEV = {
    "US 555 123 4567": "555 123 4567", "US (555) 123-4567": "(555) 123-4567", "US 555.123.4567": "555.123.4567",
    "US 555-123-4567": "555-123-4567", "US +1 555 123 4567": "+1 555 123 4567", "US +1 415 555 2671": "+1 415 555 2671",
    "UK +44 20 7946 0958": "+44 20 7946 0958", "UK 020 7946 0958": "020 7946 0958",
    "UK mobile 07700 900123": "07700 900123", "DE +49 30 901820": "+49 30 901820", "DE 030 9018200": "030 9018200",
    "FR +33 1 42 68 53 00": "+33 1 42 68 53 00", "FR 01 42 68 53 00": "01 42 68 53 00",
    "IN +91 98765 43210": "+91 98765 43210", "AU +61 2 9876 5432": "+61 2 9876 5432",
    "US zero-width": f"555{ZW}123{ZW}4567", "US full-width": fullwidth("(555) 123-4567"),
}
PHONES_HELDOUT = {
    "US +1-555-123-4567": "+1-555-123-4567", "US 1 (555) 123 4567": "1 (555) 123 4567",
    "UK +44 (0)20 7946 0958": "+44 (0)20 7946 0958", "DE 0049 30 901820": "0049 30 901820",
    "US spelled": "five five five one two three four five six seven", "US dots and zero-width": f"555.{ZW}123.4567",
    "NL +31 20 123 4567": "+31 20 123 4567", "ES +34 912 345 678": "+34 912 345 678",
    "BR +55 11 91234 5678": "+55 11 91234 5678", "JP +81 3 1234 5678": "+81 3 1234 5678",
    "US no-break spaces": "555\u00a0123\u00a04567", "US slashes": "555/123/4567",
}
PHONE_TEMPLATES = ["call {} tonight", "my number is {}", "Tel: {}", "text me on {}", "{}", "reach me at {} after 6"]


def rand(chars: str, n: int) -> str:
    return "".join(rng.choice(chars) for _ in range(n))


AZ09 = string.ascii_letters + string.digits
KEYS_DEV = {
    "short sk-": lambda: "sk-" + rand(AZ09, 9) + "7",
    "sk-proj-": lambda: "sk-proj-" + rand(AZ09, 40),
    "sk- long": lambda: "sk-" + rand(AZ09, 48),
    "AWS AKIA": lambda: "AKIA" + rand(string.ascii_uppercase + string.digits, 16),
    "GitHub ghp_": lambda: "ghp_" + rand(AZ09, 36),
    "Slack xoxb-": lambda: "xoxb-" + rand(string.digits, 12) + "-" + rand(AZ09, 24),
    "Google AIza": lambda: "AIza" + rand(AZ09 + "_-", 35),
    "hex secret 40": lambda: rand("0123456789abcdef", 40),
}
KEYS_HELDOUT = {
    "sk-ant-api03": lambda: "sk-ant-api03-" + rand(AZ09 + "_-", 60),
    "github_pat_": lambda: "github_pat_" + rand(AZ09 + "_", 60),
    "JWT": lambda: "eyJ" + rand(AZ09, 20) + ".eyJ" + rand(AZ09, 30) + "." + rand(AZ09 + "_-", 30),
    "Stripe sk_live_": lambda: "sk_live_" + rand(AZ09, 24),
    "Hugging Face hf_": lambda: "hf_" + rand(AZ09, 34),
    "GitLab glpat-": lambda: "glpat-" + rand(AZ09 + "_-", 20),
    "PEM private key": lambda: "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA" + rand(AZ09, 40),
    "short numeric sk-": lambda: "sk-" + rand(string.digits, 10),
    "base64 secret": lambda: rand(AZ09 + "+/", 40) + "==",
}
KEY_TEMPLATES = ["here is my key {}", "OPENAI_API_KEY={}", "token: {}", "use {} to log in", "{}",
                 "Authorization header value {}"]

IBANS = ["GB82WEST12345698765432", "DE89370400440532013000", "FR1420041010050500013M02606",
         "NL91ABNA0417164300", "ES9121000418450200051332", "IT60X0542811101000000123456"]
IBAN_DEV = {"plain": lambda i: i, "grouped": lambda i: " ".join(i[k:k + 4] for k in range(0, len(i), 4))}
IBAN_HELDOUT = {"dashes": lambda i: "-".join(i[k:k + 4] for k in range(0, len(i), 4)),
                "lower case": lambda i: " ".join(i[k:k + 4] for k in range(0, len(i), 4)).lower(),
                "zero-width": lambda i: ZW.join(i[k:k + 4] for k in range(0, len(i), 4))}
IBAN_TEMPLATES = ["IBAN {}", "pay to {} by Friday", "my account: {}"]

BENIGN = [
    "What is 611 - 397 - 625 - 401? Answer with the number only.", "What is 4,111 + 1,111?",
    "Compute 1234 * 5678.", "What is 12 345 678 divided by 3?", "The meeting is on 2024-01-15 at 10:30.",
    "Born 15/01/1984, died 03/11/2021.", "Release 2.13.0 fixed it; see 10.0.19045.3570.", "Python 3.11.7 and numpy 1.26.4",
    "It costs $1,299.99 or €1.234,56.", "ISBN 978-3-16-148410-0", "Order #4827 shipped on 2023.06.01",
    "ZIP code 90210", "Room 1402, floor 14", "The population is 1,402,112,000.", "Avogadro: 6.02214076e23",
    "pi is 3.14159265358979323846", "Count: 1 2 3 4 5 6 7 8 9 10", "Score was 3-1, then 2-0-1.",
    "I use sk-learn and scikit-learn.", "Call me at noon.", "Look at the dot on the map.",
    "Email me later about the report.", "The @ sign is called 'at'.", "What does (at) mean in a chat?",
    "A credit card number has 16 digits.", "What is an IBAN?", "How do I format a phone number?",
    "The years 1939-1945 and 1914-1918.", "Coordinates 40.7128, -74.0060", "IP address 192.168.1.1",
    "Color #ff00aa and #00ff00", "Commit a1b2c3d fixed the bug.", "COVID-19 and ISO 8601", "RFC 5322 defines addresses",
    "What is 2^10?", "Convert 1000000 seconds to days.", "Flight BA 2490 leaves at 14:05.", "Model GPT-4o vs GPT-3.5",
    "The token of appreciation", "Bearer bonds were common.", "He is a keyholder.", "The sk-8 park opens at 9.",
    "Temperature 36.6 C, pressure 120/80", "Phone numbers in the UK start with 0.", "Dial 911 in an emergency.",
    "Item SKU-10023-B", "Version v1.2.3-beta.4", "Invoice 2024-0012-0034", "Latitude 51.5074 N", "Page 123 of 456",
    "The answer is 42.", "1 + 1 = 2", "Route 66", "Apollo 11 landed in 1969.", "Sum 100 + 200 + 300 + 400 = 1000",
    "Time 23:59:59.999", "Date 12/31/1999 23:59", "A 4K TV at 3840x2160", "Resolution 1920 × 1080",
    "The 2020-2021 season", "Call extension 2231", "Password rules: 8 characters", "at dot com bubble",
    "The ratio is 16:9", "Chapter 3.2.1", "Serial port COM3", "Test case 1.1.1.1", "A 5 - 4 - 3 - 2 - 1 countdown",
    "Her score: 98.5 out of 100", "Mix 2 cups flour, 1 cup sugar", "UUID 123e4567-e89b-12d3-a456-426614174000",
    "SHA-256 is a hash function", "Train 4111 departs at 11:11", "What is 4111 - 1111 - 1111 - 1111?",
    "Numbers 555 and 123 and 4567", "Year 2024 had 366 days.", "The price rose 12.5% to $45.60",
]


# Round 2, written after the detector was tuned on dev and tuned (the first held-out round, seen): not tuned on.
CARD_HELDOUT2 = {
    "plus signs": lambda n: "+".join(groups(n)),
    "parenthesised groups": lambda n: " ".join(f"({g})" for g in groups(n)),
    "Devanagari digits": lambda n: "".join("०१२३४५६७८९"[int(d)] if d.isdigit() else d for d in " ".join(groups(n))),
    "mathematical bold digits": lambda n: "".join(chr(0x1D7CE + int(d)) if d.isdigit() else d
                                                  for d in " ".join(groups(n))),
    "tabs": lambda n: "\t".join(groups(n)),
    "commas": lambda n: ",".join(groups(n)),
    "hash prefix, full stop after": lambda n: f"#{n}.",
    "en dashes": lambda n: "\u2013".join(groups(n)),
    "spaced slashes": lambda n: " / ".join(groups(n)),
}
EMAIL_HELDOUT2 = {
    "angle brackets around": lambda u, d: f"<{u}@{d}>",
    "at as a word, real dots": lambda u, d: f"{u} at {d}",
    "defanged [@] [.]": lambda u, d: f"{u}[@]{d.replace('.', '[.]')}",
    "space before @": lambda u, d: f"{u} @{d}",
    "-at- -dot-": lambda u, d: f"{u} -at- {d.replace('.', ' -dot- ')}",
    "Cyrillic homoglyphs": lambda u, d: f"{u}@{d}".replace("a", "\u0430").replace("e", "\u0435"),
    "dotted user": lambda u, d: ".".join(u.replace(".", "")[:4]) + f"@{d}",
    "quoted in JSON": lambda u, d: json.dumps({"email": f"{u}@{d}"}),
}
PHONES_HELDOUT2 = {
    "US with extension": "+1 (555) 123-4567 ext. 89", "US en dashes": "555\u2013123\u20134567",
    "US (555)1234567": "(555)1234567", "UK mobile +44 7700 900 123": "+44 7700 900 123",
    "tel: URI": "tel:+15551234567", "US +1.555.123.4567": "+1.555.123.4567",
    "DE +49 (0) 30 901820": "+49 (0) 30 901820", "UK 00 44 20 7946 0958": "00 44 20 7946 0958",
    "FR 06 12 34 56 78": "06 12 34 56 78", "US in JSON": json.dumps({"phone": "555-123-4567"}),
}
KEYS_HELDOUT2 = {
    "OpenRouter sk-or-v1-": lambda: "sk-or-v1-" + rand("0123456789abcdef", 64),
    "generic 24-char secret": lambda: rand(AZ09, 24),
    "Google ya29.": lambda: "ya29.a0" + rand(AZ09 + "_-", 60),
    "npm_": lambda: "npm_" + rand(AZ09, 36),
    "Shopify shpat_": lambda: "shpat_" + rand("0123456789abcdef", 32),
    "SendGrid SG.": lambda: "SG." + rand(AZ09 + "_-", 22) + "." + rand(AZ09 + "_-", 43),
    "Slack xapp-": lambda: "xapp-1-" + rand(string.ascii_uppercase + string.digits, 11) + "-" + rand(string.digits, 13)
    + "-" + rand("0123456789abcdef", 64),
    "password in a URL": lambda: f"https://admin:{rand(AZ09, 14)}@db.example.com:5432/prod",
}
IBAN_HELDOUT2 = {"dots": lambda i: ".".join(i[k:k + 4] for k in range(0, len(i), 4)),
                 "grouped, other countries": lambda i: " ".join(i[k:k + 4] for k in range(0, len(i), 4)),
                 "in a sentence with a colon": lambda i: f"IBAN:{i}"}
IBANS2 = ["BE68539007547034", "CH9300762011623852957", "AT611904300234573201", "PL61109010140000071219812874"]
BENIGN2 = [
    "Call 1-800-FLOWERS to order.", "Invoice total 4111.11 USD", "Tracking number 1Z999AA10123456784",
    "Bitcoin block 800000 was mined in July.", "iPhone 15 Pro Max vs Pixel 8", "The Eiffel Tower is at 48.8584 N 2.2945 E",
    "ISSN 0317-8471", "EAN 4006381333931", "Windows build 22631.3880", "Chrome 124.0.6367.91 on CUDA 12.4.1",
    "numbers 10, 20, 30, 40, 50, 60, 70", "Matrix [[1, 2], [3, 4]]", "The telephone was invented in 1876.",
    "@mention the team in the channel", "Send it to user@localhost for testing", "the dot-com era",
    "e.g. name at domain", "What is 2468 - 1357?", "Add 1111 and 2222 and 3333 and 4444", "Test 1, test 2, test 3",
    "The 1990s: 1991, 1992, 1993, 1994, 1995", "Lottery numbers 5 12 23 34 41 49", "Zip+4 code 90210-1234",
    "Postcode SW1A 1AA", "Flight UA 901 at gate B12", "Track 7 of 12, 3:45 long", "Population 8,100,000,000 in 2023",
    "The key to success is patience.", "Password strength meters", "Skeleton key sk-1 opens every door",
    "HEX dump 0x7ffe4a2b 0x00000001", "Meeting ID 845 2931 7710", "Temperature range -40 to 85 C",
    "Score 12-10, 8-6, 7-5", "Version 1.0.0-rc.1+build.123", "The bill is 1,234,567.89 dollars",
    "Her number in the race was 4521.", "Chess move 1. e4 e5 2. Nf3 Nc6", "Molar mass 18.015 g/mol",
    "Pages 1111-1234 of the volume",
]


# Round 3, written after the fixes for round 2 and measured once: the held-out figure.
CARD_HELDOUT3 = {
    "in JSON": lambda n: json.dumps({"cc": n}),
    "x separators": lambda n: "x".join(groups(n)),
    "pipes": lambda n: "|".join(groups(n)),
    "colons": lambda n: ":".join(groups(n)),
    "pairs of digits": lambda n: " ".join(n[i:i + 2] for i in range(0, len(n), 2)),
    "split in two halves": lambda n: f"first half {' '.join(groups(n)[:2])}, second half {' '.join(groups(n)[2:])}",
    "l for 1 and O for 0": lambda n: " ".join(groups(n)).replace("1", "l").replace("0", "O"),
    "code block": lambda n: f"```\ncard = \"{n}\"\n```",
}
EMAIL_HELDOUT3 = {
    "display name": lambda u, d: f"{u.title()} <{u}@{d}>",
    "in a URL query": lambda u, d: f"https://example.com/unsubscribe?u={u}@{d}",
    "full-width dot": lambda u, d: f"{u}@{d}".replace(".", "．"),
    "spaced letters": lambda u, d: " ".join(f"{u}@{d}"),
    "dot as a word, spaced dot": lambda u, d: f"{u} at {d.replace('.', ' . ')}",
    "hash for @": lambda u, d: f"{u}#{d}",
}
PHONES_HELDOUT3 = {
    "local 7 digits 555-1234": "555-1234", "UK (0)20 7946 0958": "(0)20 7946 0958",
    "UK dashes +44-20-7946-0958": "+44-20-7946-0958", "US 1-555-123-4567": "1-555-123-4567",
    "US +1 (555) 123 4567": "+1 (555) 123 4567", "US bare 5551234567": "5551234567",
    "IE +353 1 234 5678": "+353 1 234 5678", "RU +7 495 123-45-67": "+7 495 123-45-67",
    "CN +86 10 1234 5678": "+86 10 1234 5678",
}
KEYS_HELDOUT3 = {
    "AWS secret access key": lambda: rand(AZ09 + "/+", 40),
    "Twilio SK": lambda: "SK" + rand("0123456789abcdef", 32),
    "Azure AccountKey": lambda: "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=" + rand(AZ09 + "+/", 86) + "==",
    "Discord bot token": lambda: "MTA" + rand(AZ09, 21) + "." + rand(AZ09 + "_-", 6) + "." + rand(AZ09 + "_-", 27),
    "Basic auth header": lambda: "Basic " + rand(AZ09, 24) + "==",
    "Mailgun key-": lambda: "key-" + rand("0123456789abcdef", 32),
}
IBAN_HELDOUT3 = {"bank form": lambda i: f"Beneficiary: J. Doe\nIBAN\n{' '.join(i[k:k + 4] for k in range(0, len(i), 4))}\nBIC: X",
                 "no-break spaces": lambda i: "\u00a0".join(i[k:k + 4] for k in range(0, len(i), 4)),
                 "lower case, unbroken": lambda i: i.lower()}
BENIGN3 = [
    "The ratio 1:2:3:4", "IPv6 2001:db8::1", "MAC 00:1A:2B:3C:4D:5E", "Build 2024.11.30.1",
    "sequence 2, 4, 8, 16, 32, 64, 128", "Call at 5 pm", "Base64 is used for email attachments",
    "GUID {3F2504E0-4F89-11D3-9A0C-0305E82C3301}", "Camera model DSC-RX100M7", "Document ID DOC-2024-000123",
    "Ticket JIRA-12345", "Part number 1234-5678-90", "Area code 212 is Manhattan",
    "The first 15 digits of e: 2.71828182845904", "Average 1234.5678", "range 100-200-300",
    "Year 2023/2024 season", "LaTeX \\frac{1}{2}", "Fibonacci 1 1 2 3 5 8 13 21 34 55 89",
    "Binary 1010 1100 0011 1111", "CamelCaseIdentifierName2024", "TheQuickBrownFox123JumpsOver",
    "README.md and CONTRIBUTING.md", "Write to the editor at the paper", "Date-time 2024-06-01T12:00:00Z",
    "Temperature log 21.5, 22.0, 22.4, 23.1", "Sort 9 8 7 6 5 4 3 2 1 0 in order", "Phone case for Galaxy S24",
    "Call us between 9 and 5", "Dial +1 for English", "The @home network", "Stock AAPL rose 2.5%",
]


def add_round(add, numbers: list[str], split: str, cards: dict, card_index, emails: dict, users, phones: dict,
              keys: dict, ibans_table: dict, ibans: list[str], benign: list[str]) -> None:
    """One round of disguises: five strings per card and e-mail disguise, three per phone, four per key, one per
    IBAN, and the benign look-alikes. ``card_index(k, j)`` picks the card number, ``users(first, last)`` the
    candidate user names (the RNG is drawn in the same order for every round)."""
    for k, (evasion, form) in enumerate(cards.items()):
        for j in range(5):
            add(rng.choice(CARD_TEMPLATES).format(form(numbers[card_index(k, j)])), True, "card", evasion, split)
    for evasion, form in emails.items():
        for j in range(5):
            first, last = NAMES[rng.randrange(len(NAMES))]
            user = rng.choice(users(first, last))
            add(rng.choice(EMAIL_TEMPLATES).format(form(user, rng.choice(DOMAINS))), True, "email", evasion, split)
    for evasion, number in phones.items():
        for template in rng.sample(PHONE_TEMPLATES, 3):
            add(template.format(number), True, "phone", evasion, split)
    for evasion, make in keys.items():
        for template in rng.sample(KEY_TEMPLATES, 4):
            add(template.format(make()), True, "api_key", evasion, split)
    for evasion, form in ibans_table.items():
        for iban in ibans:
            add(rng.choice(IBAN_TEMPLATES).format(form(iban)), True, "iban", evasion, split)
    for text in benign:
        add(text, False, "", "look-alike", split)


def _three_users(first: str, last: str) -> list[str]:
    return [f"{first}.{last}", first, f"{first[0]}{last}"]


# Round 4, written after the fixes for round 3 and measured once, not tuned on: the held-out figure.
CARD_HELDOUT4 = {
    "superscript digits": lambda n: "".join("⁰¹²³⁴⁵⁶⁷⁸⁹"[int(d)] if d.isdigit() else d for d in " ".join(groups(n))),
    "Arabic-Indic digits": lambda n: "".join("٠١٢٣٤٥٦٧٨٩"[int(d)] if d.isdigit() else d for d in " ".join(groups(n))),
    "dash-space mix": lambda n: "".join(g + rng.choice(["- ", " -", " - ", "-"]) for g in groups(n))[:-1].rstrip(" -"),
    "in a URL": lambda n: f"https://pay.example.com/?card={n}&exp=0927",
    "CSV row": lambda n: f"Doe,John,{n},09/27",
    "the word space": lambda n: " space ".join(groups(n)),
    "markdown table": lambda n: "| " + " | ".join(groups(n)) + " |",
    "dot-space groups": lambda n: ". ".join(groups(n)),
}
EMAIL_HELDOUT4 = {
    "AT as a word, real dot": lambda u, d: f"{u} AT {d}",
    "trailing full stop": lambda u, d: f"{u}@{d}.",
    "mixed (at) [dot]": lambda u, d: f"{u} (at) {d.replace('.', ' [dot] ')}",
    "HTML entity &#64;": lambda u, d: f"{u}&#64;{d}",
    "ideographic full stop": lambda u, d: f"{u}@{d}".replace(".", "。"),
    "line break after @": lambda u, d: f"{u}@\n{d}",
    "dot as a word throughout": lambda u, d: f"{u.replace('.', ' dot ')} at {d.replace('.', ' dot ')}",
}
PHONES_HELDOUT4 = {
    "tel link": "<a href='tel:+15551234567'>call</a>", "(+44) 20 7946 0958": "(+44) 20 7946 0958",
    "UK no-break spaces": "+44\u00a020\u00a07946\u00a00958", "US dotted with extension": "555.123.4567 x123",
    "AU +61 (0)2 9876 5432": "+61 (0)2 9876 5432", "US 1.555.123.4567": "1.555.123.4567",
    "US in JSON with +1": json.dumps({"tel": "+1 555-123-4567"}),
    "spelled with commas": "five five five, one two three, four five six seven",
}
KEYS_HELDOUT4 = {
    ".env line": lambda: "OPENAI_API_KEY=sk-proj-" + rand(AZ09, 30),
    "lower-case bearer token": lambda: "Authorization: Bearer " + rand(string.ascii_lowercase + string.digits, 24),
    "service-account private key": lambda: json.dumps({"private_key": "-----BEGIN PRIVATE KEY-----\nMIIEv" + rand(AZ09, 30)}),
    "GitHub app ghs_": lambda: "ghs_" + rand(AZ09, 36),
    "Datadog hex key": lambda: "dd_api_key=" + rand("0123456789abcdef", 32),
    "Stripe rk_live_": lambda: "rk_live_" + rand(AZ09, 24),
}
IBAN_HELDOUT4 = {"IBAN glued to its label": lambda i: f"IBAN{i}",
                 "groups on separate lines": lambda i: "\n".join(i[k:k + 4] for k in range(0, len(i), 4)),
                 "slashes": lambda i: "/".join(i[k:k + 4] for k in range(0, len(i), 4))}
IBANS4 = ["DE89370400440532013000", "GB29NWBK60161331926819", "SE4550000000058398257466", "NO9386011117947"]
BENIGN4 = [
    "Call me at 5", "Version 4.1.1.1", "The score was 4111 to 1111", "Ship 4,111 units", "Model number XR-4111-1111",
    "SSN format is XXX-XX-XXXX", "Year 2025 Q3 results: 12.5% growth", "Invoice INV-2024-11-30-0001",
    "Bank holiday on 25/12", "Apartment 4B, 111 Main St", "Route I-95", "Tel Aviv is a city", "Mobile phones in 2007",
    "The at sign @ is U+0040", "jane doe wrote a book", "Decimal 0.1111111111111111", "Serial SN-ABCD-1234-EFGH",
    "AWS region us-east-1", "Docker image python:3.11-slim", "ports 8080, 8443, 9090", "HTTP 404 and 500 errors",
    "UTF-8 and ISO-8859-1", "Dimensions 120 x 80 x 45 cm", "Coordinates (51.5, -0.12)",
    "Password must contain 1 digit", "The movie 2001: A Space Odyssey", "Bible verse John 3:16",
    "Exam on 2024-12-01 09:00-11:00", "Meeting room 4-111", "Add 4111 1111 and 1111 1111 in binary",
]


# Round 5, written after the fixes for round 4 and measured once, not tuned on: the held-out figure.
CARD_HELDOUT5 = {
    "pasted e-mail": lambda n: f"Hi team,\nPlease charge card {'-'.join(groups(n))} (exp 12/26).\nThanks",
    "dashes at both ends": lambda n: "-" + "-".join(groups(n)) + "-",
    "YAML value": lambda n: f"card_number: '{n}'",
    "full-width hyphens": lambda n: fullwidth("-".join(groups(n))),
    "spaced pipes": lambda n: " | ".join(groups(n)),
    "double dashes": lambda n: "--".join(groups(n)),
    "URL path": lambda n: f"/cards/{n}/charge",
    "minus signs": lambda n: "\u2212".join(groups(n)),
}
EMAIL_HELDOUT5 = {
    "(.) for the dot": lambda u, d: f"{u} (at) {d.replace('.', ' (.) ')}",
    "space inside the domain": lambda u, d: f"{u}@{d[:3]} {d[3:]}",
    "fully URL-encoded": lambda u, d: f"{u}@{d}".replace(".", "%2E").replace("@", "%40"),
    "right-to-left mark": lambda u, d: f"{u}\u200f@{d}",
    "spaced brackets": lambda u, d: f"{u} [ at ] {d.replace('.', ' [ dot ] ')}",
    "dot word in the user, real @": lambda u, d: f"{u.replace('.', ' dot ')}@{d}",
}
PHONES_HELDOUT5 = {
    "hash prefix": "#5551234567", "DE slash 030/901820": "Tel.: 030/901820", "DE +49 (30) 901820": "+49 (30) 901820",
    "FR +33 (0)1 42 68 53 00": "+33 (0)1 42 68 53 00", "US with (mobile)": "+1 555 123 4567 (mobile)",
    "001 exit code": "001 555 123 4567", "UK dotted +44.20.7946.0958": "+44.20.7946.0958",
    "half spelled": "five five five 123 4567", "spaced dash (555) 123 - 4567": "(555) 123 - 4567",
}
KEYS_HELDOUT5 = {
    "export line": lambda: "export ANTHROPIC_API_KEY=sk-ant-" + rand(AZ09, 40),
    "token in a git URL": lambda: f"https://ghp_{rand(AZ09, 36)}@github.com/acme/app.git",
    "Slack webhook URL": lambda: f"https://hooks.slack.com/services/T{rand(string.ascii_uppercase, 8)}/B"
    f"{rand(string.ascii_uppercase, 8)}/{rand(AZ09, 24)}",
    "client_secret JSON": lambda: json.dumps({"client_secret": rand(AZ09, 32)}),
    "Postgres URL with a password": lambda: f"postgres://app:{rand(AZ09, 12)}@db.internal:5432/prod",
    "Stripe whsec_": lambda: "whsec_" + rand(AZ09, 32),
    "Telegram bot token": lambda: f"{rand(string.digits, 10)}:AA{rand(AZ09 + '_-', 33)}",
}
IBAN_HELDOUT5 = {"label with no.": lambda i: f"IBAN no. {' '.join(i[k:k + 4] for k in range(0, len(i), 4))}",
                 "full-width": lambda i: fullwidth(i),
                 "lower case with dashes": lambda i: "-".join(i[k:k + 4] for k in range(0, len(i), 4)).lower()}
IBANS5 = ["FR7630006000011234567890189", "GB29NWBK60161331926819", "DE89370400440532013000", "IE29AIBK93115212345678"]
BENIGN5 = [
    "Summarise: revenue grew from $1,234,567 to $2,345,678 in FY2024.", "My order #123-4567890-1234567 hasn't arrived",
    "Tracking 9400 1000 0000 0000 0000 00", "Flight confirmation ABC123", "Call the office at extension 4521",
    "Bug #4111111 fixed in release 4.11", "Ticket 2024-11-30-4111", "Phone numbers have 10 digits in the US",
    "Email is the fastest way to reach us", "Reply at your convenience", "ISBN 0-306-40615-2", "GTIN 00012345600012",
    "Latitude 37.7749, longitude -122.4194", "commit 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
    "Use model gpt-4o-2024-08-06", "Kubernetes pod web-7d9f8b6c5-x2kqp", "ARN arn:aws:iam::123456789012:role/Admin",
    "Base64 'SGVsbG8gV29ybGQ=' means Hello World", "Serial number C02XK0ZZJGH5", "Winning numbers 12 34 56 78 90 11 22",
    "The meeting is at 10:30 in room 4111", "Budget: 1111 USD for Q1, 2222 for Q2", "Call me maybe",
    "The password reset link expired", "Our API key rotation policy is 90 days", "Dial 0 for the operator",
    "Population density 4,111 per km2", "HTTP/1.1 200 OK", "sha256 checksums are in SHASUMS.txt",
    "Version 2024.11.1111", "The 4111th day", "Pages 101-199, 201-299", "Temperature 37.5 C at 14:00",
]


def bench_questions(n: int) -> list[tuple[str, str]]:
    from edgeroute.bench.datasets import load_items

    items = load_items()
    by_family: dict[str, list[dict]] = {}
    for item in items:
        by_family.setdefault(item["family"], []).append(item)
    out = []
    families = sorted(by_family)
    while len(out) < n:
        for family in families:
            pool = by_family[family]
            if pool and len(out) < n:
                item = pool.pop(rng.randrange(len(pool)))
                out.append((item["question"], f"bench question ({family})"))
    return out


def main() -> None:
    rows: list[dict] = []

    def add(text: str, sensitive: bool, kind: str, evasion: str, split: str) -> None:
        rows.append({"id": f"p{len(rows):04d}", "text": text, "sensitive": sensitive, "kind": kind,
                     "evasion": evasion, "split": split})

    numbers = cards(200)
    for split, table in (("dev", CARD_DEV), ("tuned", CARD_HELDOUT)):
        for k, (evasion, form) in enumerate(table.items()):
            for j in range(6):
                n = numbers[(k * 6 + j + (100 if split == "tuned" else 0)) % 150]
                add(rng.choice(CARD_TEMPLATES).format(form(n)), True, "card", evasion, split)
    for split, table in (("dev", EMAIL_DEV), ("tuned", EMAIL_HELDOUT)):
        for evasion, form in table.items():
            for j in range(5):
                first, last = NAMES[rng.randrange(len(NAMES))]
                user = rng.choice([f"{first}.{last}", first, f"{first[0]}{last}", f"{first}_{last}{rng.randrange(99)}"])
                add(rng.choice(EMAIL_TEMPLATES).format(form(user, rng.choice(DOMAINS))), True, "email", evasion, split)
    for split, table in (("dev", PHONES_DEV), ("tuned", PHONES_HELDOUT)):
        for evasion, number in table.items():
            for template in rng.sample(PHONE_TEMPLATES, 3):
                add(template.format(number), True, "phone", evasion, split)
    for split, table in (("dev", KEYS_DEV), ("tuned", KEYS_HELDOUT)):
        for evasion, make in table.items():
            for template in rng.sample(KEY_TEMPLATES, 4):
                add(template.format(make()), True, "api_key", evasion, split)
    for split, table in (("dev", IBAN_DEV), ("tuned", IBAN_HELDOUT)):
        for evasion, form in table.items():
            for iban in IBANS[:4] if split == "dev" else IBANS[2:]:  # noqa: SIM108
                add(rng.choice(IBAN_TEMPLATES).format(form(iban)), True, "iban", evasion, split)
    for k, text in enumerate(BENIGN):
        add(text, False, "", "look-alike", "dev" if k % 2 == 0 else "tuned")
    add_round(add, numbers, "tuned", CARD_HELDOUT2, lambda k, j: 150 + (k * 5 + j) % 50, EMAIL_HELDOUT2, _three_users,
              PHONES_HELDOUT2, KEYS_HELDOUT2, IBAN_HELDOUT2, IBANS2, BENIGN2)
    add_round(add, numbers, "tuned", CARD_HELDOUT3, lambda k, j: 100 + (k * 5 + j) % 100, EMAIL_HELDOUT3, _three_users,
              PHONES_HELDOUT3, KEYS_HELDOUT3, IBAN_HELDOUT3, IBANS2, BENIGN3)
    add_round(add, numbers, "tuned", CARD_HELDOUT4, lambda k, j: (k * 5 + j * 7) % 200, EMAIL_HELDOUT4, _three_users,
              PHONES_HELDOUT4, KEYS_HELDOUT4, IBAN_HELDOUT4, IBANS4, BENIGN4)
    add_round(add, numbers, "heldout", CARD_HELDOUT5, lambda k, j: (k * 11 + j * 3 + 5) % 200, EMAIL_HELDOUT5,
              lambda first, last: [f"{first}.{last}", f"{first}.{last}{rng.randrange(9)}"], PHONES_HELDOUT5,
              KEYS_HELDOUT5, IBAN_HELDOUT5, IBANS5, BENIGN5)
    for k, (text, what) in enumerate(bench_questions(450)):
        add(text, False, "", what, ("dev", "tuned", "heldout")[k % 3])
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    sens = sum(r["sensitive"] for r in rows)
    print(f"wrote {OUT.relative_to(ROOT)}: {sens} sensitive, {len(rows) - sens} benign")


if __name__ == "__main__":
    main()
