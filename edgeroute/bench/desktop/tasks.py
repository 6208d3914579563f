"""Seeded generators of desktop tasks, one per family. Every task is built from a known record, so its answer can
be checked exactly: ``{"id", "family", "messages", "grader", "expect", "max_tokens"}``. Names, places and phrasings
are drawn from small in-file banks written for this project (no external data, no reserved sources)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

FAMILIES = ("classify", "extract", "rewrite", "summarize", "normalize", "conversation")

_FIRST = ["Maria", "Priya", "Tom", "Aiko", "Lars", "Fatima", "Diego", "Chen", "Olga", "Kwame", "Sofia", "Ravi",
          "Emma", "Yusuf", "Hana", "Marco", "Ines", "Noah", "Leila", "Jonas"]
_LAST = ["Lopez", "Sharma", "Becker", "Tanaka", "Nilsen", "Haddad", "Garcia", "Wang", "Petrova", "Mensah",
         "Rossi", "Iyer", "Dubois", "Kaya", "Novak", "Silva", "Moreau", "Fischer", "Ahmed", "Berg"]
_CITIES = ["Madrid", "Oslo", "Lyon", "Osaka", "Dublin", "Cairo", "Lima", "Toronto", "Prague", "Accra", "Turin",
           "Pune", "Leeds", "Izmir", "Porto", "Graz", "Hanoi", "Quito", "Bergen", "Tampa"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_ITEMS = ["laptop stand", "desk lamp", "office chair", "monitor arm", "keyboard", "headset", "webcam", "printer"]

_CLASSES = {
    "billing": ["I was charged twice for my {item} order this month.", "My invoice shows the wrong amount for the {item}.",
                "Please refund the extra payment taken from my card.", "Why did my subscription price go up?"],
    "shipping": ["My {item} has not arrived and the tracking has not moved in a week.",
                 "The parcel with my {item} was delivered to the wrong address.",
                 "When will my {item} be shipped to {city}?", "The courier lost the box with my {item}."],
    "technical": ["The {item} stops working every time I restart the computer.",
                  "The driver for my {item} crashes with an error on start.",
                  "My {item} will not connect over Bluetooth any more.", "The app freezes when I plug in the {item}."],
    "account": ["I cannot log in to my account since I changed my email.", "Please delete my account and my data.",
                "How do I reset my password? The reset link never comes.", "I want to change the name on my account."],
}
_SENTIMENT = {
    "positive": ["The {item} is excellent and arrived early, thank you!", "I love the new {item}, it works perfectly.",
                 "Great service, the team in {city} was very helpful."],
    "negative": ["The {item} broke after two days, very disappointed.", "Terrible experience, nobody answered my calls.",
                 "The {item} is awful and the support in {city} was rude."],
}

_REWRITE_SENTENCES = ["the meeting with the design team moved to thursday afternoon",
                      "our office in {city} will close early on friday for maintenance",
                      "please send the signed contract to {name} before the end of the week",
                      "the new {item} arrives next monday and replaces the old one",
                      "we need two more volunteers for the charity run in {city}",
                      "the quarterly report is late because the numbers changed again"]

_UNITS = [("km", "metres", 1000.0), ("kg", "grams", 1000.0), ("hours", "minutes", 60.0), ("litres", "millilitres", 1000.0),
          ("metres", "centimetres", 100.0), ("minutes", "seconds", 60.0)]


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def _fill(rng: random.Random, template: str) -> str:
    return template.format(item=rng.choice(_ITEMS), city=rng.choice(_CITIES), name=_person(rng))


def classify(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.7:
        classes = _CLASSES
        ask = "Classify this customer message into one of: billing, shipping, technical, account."
    else:
        classes = _SENTIMENT
        ask = "Is the sentiment of this review positive or negative?"
    label = rng.choice(sorted(classes))
    text = _fill(rng, rng.choice(classes[label]))
    return {"messages": [{"role": "user", "content": f"{ask} Answer with the label only.\n\nMessage: {text}"}],
            "grader": "label", "expect": {"label": label, "labels": sorted(classes)}, "max_tokens": 16}


def extract(rng: random.Random) -> dict[str, Any]:
    name, city, item = _person(rng), rng.choice(_CITIES), rng.choice(_ITEMS)
    qty, day, month = rng.randint(1, 9), rng.randint(1, 28), rng.choice(_MONTHS)
    passage = rng.choice([
        f"{name} from {city} ordered {qty} of the {item} on {day} {month}. The order was paid by card.",
        f"On {day} {month}, an order for {qty} {item} came in from {name}, who lives in {city}.",
        f"Order note: customer {name} ({city}) wants {qty} x {item}; received {month} {day}.",
    ])
    fields = rng.choice([("name", "city"), ("name", "quantity"), ("city", "quantity"), ("name", "city", "quantity")])
    record = {"name": name, "city": city, "quantity": qty}
    keys = ", ".join(f'"{f}"' for f in fields)
    ask = (f"Extract the fields {keys} from the text below. Reply with one JSON object with exactly these keys "
           f"(quantity as a number).\n\nText: {passage}")
    return {"messages": [{"role": "user", "content": ask}], "grader": "json_fields",
            "expect": {"fields": {f: record[f] for f in fields}}, "max_tokens": 48}


def rewrite(rng: random.Random) -> dict[str, Any]:
    sentence = _fill(rng, rng.choice(_REWRITE_SENTENCES))
    kind = rng.choice(["include", "avoid", "max_words", "upper"])
    words = sentence.split()
    if kind == "include":
        word = rng.choice(["urgently", "kindly", "finally", "today"])
        rule, expect = f"Rewrite the sentence so that it includes the word '{word}'.", {"include": word}
    elif kind == "avoid":
        word = rng.choice([w for w in words if len(w) > 4])
        rule, expect = f"Rewrite the sentence without using the word '{word}'.", {"avoid": word}
    elif kind == "max_words":
        n = max(4, len(words) // 2)
        rule, expect = f"Shorten the sentence to at most {n} words.", {"max_words": n}
    else:
        rule, expect = "Rewrite the sentence in capital letters only.", {"upper": True}
    expect["source"] = sentence
    return {"messages": [{"role": "user", "content": f"{rule} Reply with the new sentence only.\n\nSentence: "
                                                      f"{sentence}"}],
            "grader": "rewrite", "expect": expect, "max_tokens": 48}


def summarize(rng: random.Random) -> dict[str, Any]:
    name, city, item = _person(rng), rng.choice(_CITIES), rng.choice(_ITEMS)
    month, n = rng.choice(_MONTHS), rng.randint(12, 90)
    facts = [name.split()[0], city, month]
    filler = ["The weather was mild for the season.", "Several people asked questions afterwards.",
              "Coffee and snacks were served in the hall.", "The slides will be shared by email.",
              "A short video was shown at the start.", "Parking was available behind the building."]
    rng.shuffle(filler)
    passage = " ".join([f"In {month}, {name} presented the new {item} to {n} customers in {city}."] + filler[:3] +
                       [f"{name.split()[0]} said the {item} would be sold in {city} from next year."])
    return {"messages": [{"role": "user", "content": f"Summarise this passage in one sentence.\n\n{passage}"}],
            "grader": "key_facts", "expect": {"facts": facts, "min_facts": 2, "max_words": 40}, "max_tokens": 64}


def normalize(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.5:
        src, dst, factor = rng.choice(_UNITS)
        value = rng.choice([rng.randint(2, 40), rng.randint(1, 19) + 0.5])
        ask = f"Convert {value:g} {src} to {dst}. Answer with the number only."
        return {"messages": [{"role": "user", "content": ask}], "grader": "number",
                "expect": {"number": value * factor}, "max_tokens": 16}
    year, month, day = rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)
    shown = rng.choice([f"{day} {_MONTHS[month - 1]} {year}", f"{_MONTHS[month - 1]} {day}, {year}"])
    ask = f"Write the date {shown} in ISO format (YYYY-MM-DD). Answer with the date only."
    return {"messages": [{"role": "user", "content": ask}], "grader": "iso_date",
            "expect": {"date": f"{year:04d}-{month:02d}-{day:02d}"}, "max_tokens": 16}


def conversation(rng: random.Random) -> dict[str, Any]:
    name, city, item = _person(rng).split()[0], rng.choice(_CITIES), rng.choice(_ITEMS)
    slot, value = rng.choice([("name", name), ("city", city), ("item", item)])
    intro = {"name": f"Hi, my name is {name}.", "city": f"I live in {city}, by the way.",
             "item": f"I just bought a new {item}."}[slot]
    question = {"name": "What is my name?", "city": "Which city do I live in?",
                "item": "What did I just buy?"}[slot]
    fillers = [("Can you suggest a good time to go for a walk?", "Early morning is usually calm and cool."),
               ("What is a quick lunch idea?", "A salad with beans and bread is quick and filling."),
               ("Any tip for sleeping better?", "Keep a regular bedtime and avoid screens late."),
               ("How do I stay focused at work?", "Work in short blocks and take small breaks.")]
    rng.shuffle(fillers)
    msgs: list[dict[str, str]] = [{"role": "user", "content": intro}, {"role": "assistant", "content": "Nice, noted!"}]
    for q, a in fillers[:rng.randint(0, 3)]:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    msgs.append({"role": "user", "content": f"{question} Answer in a few words."})
    return {"messages": msgs, "grader": "contains", "expect": {"any": [value]}, "max_tokens": 24}


GENERATORS: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "classify": classify, "extract": extract, "rewrite": rewrite, "summarize": summarize, "normalize": normalize,
    "conversation": conversation,
}


def generate(per_family: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``per_family`` tasks of each family; the same ``seed`` gives the same tasks."""
    for family in FAMILIES:
        rng = random.Random(f"{seed}:{family}")
        for k in range(per_family):
            yield {"id": f"{family}-{k:03d}", "family": family, **GENERATORS[family](rng)}


def write(path: str, per_family: int, seed: int = 0) -> int:
    """Write the tasks as JSONL; returns how many."""
    rows = list(generate(per_family, seed))
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    return len(rows)
