"""One grader per answer type, each with its table (``answer_type`` declared, as the corpus does)."""

import pytest

from edgeroute.bench.grading import ANSWER_TYPES, answer_type_of, grade

MC = {"answer_type": "choice", "answers": ["C", "number of nails"],
      "choices": ["length of hair", "number of friends", "number of nails", "length of shirt"]}

TABLE = {
    "text": [
        ("The capital of Marin County is San Rafael.", ["San Rafael"], True),
        ("ELLIS ISLAND", ["Ellis Island", "Ellis Island Immigration station"], True),
        ("It was Ellis.", ["Ellis Island"], False),
        ("Ford Motor Company makes it.", ["Ford Motor Company", "Ford"], True),
        ("Pesaro, Italy", ["Pésaro"], True),
        ("gyda", ["gyda"], True),
        ("gydaa", ["gyda"], False),
        ("", ["Paris"], False),
    ],
    "number": [
        ("The answer is 1,234.", ["1234"], True),
        ("2352", ["2352"], True),
        ("I think 2351.", ["2352"], False),
        ("Result: -20", ["-20"], True),
        ("x = 2.5", ["2.5"], True),
        ("2.50001", ["2.5"], True),  # within the relative tolerance (1e-4)
        ("2.51", ["2.5"], False),
        ("51.0 dollars", ["51"], True),
        ("eight instruments", ["8"], True),
        ("no number here", ["8"], False),
    ],
    "choice": [
        ("C", None, True),
        ("(C) number of nails", None, True),
        ("The answer is C.", None, True),
        ("number of nails", None, True),
        ("A. length of hair", None, False),
        ("B", None, False),
        ("I am not sure.", None, False),
    ],
    "yesno": [
        ("Yes.", ["yes"], True),
        ("No, the coin is not heads up.", ["no"], True),
        ("Yes, well, no.", ["no"], False),
        ("Maybe.", ["yes"], False),
    ],
    "truefalse": [
        ("True", ["true"], True),
        ("The statement is false.", ["false"], True),
        ("It is true that it is false.", ["false"], False),
    ],
    "validity": [
        ("valid", ["valid"], True),
        ("The argument is invalid.", ["invalid"], True),
        ("invalid", ["valid"], False),
        ("It is valid.", ["invalid"], False),
    ],
    "letter": [
        ("The first letter of 'season' is 's'.", ["s"], True),
        ("S", ["s"], True),
        ("It is t.", ["s"], False),
    ],
}


@pytest.mark.parametrize("kind", ANSWER_TYPES)
def test_every_answer_type_has_a_grader_table(kind):
    rows = TABLE[kind]
    assert rows and any(r[2] for r in rows) and any(not r[2] for r in rows)  # both verdicts are exercised
    for response, answers, expected in rows:
        item = dict(MC) if kind == "choice" else {"answer_type": kind, "answers": answers}
        assert grade(response, item) is expected, (kind, response, answers)


@pytest.mark.parametrize(("item", "kind"), [
    ({"answers": ["42"]}, "number"), ({"answers": ["yes"]}, "yesno"), ({"answers": ["False"]}, "truefalse"),
    ({"answers": ["invalid"]}, "validity"), ({"answers": ["b"]}, "letter"), ({"answers": ["Paris"]}, "text"),
    ({"answers": ["B"], "choices": ["x", "y"]}, "choice"), ({"answers": ["odd"]}, "evenodd"),
])
def test_an_undeclared_answer_type_is_inferred_from_the_answers(item, kind):
    assert answer_type_of(item) == kind


def test_every_shipped_item_declares_a_known_answer_type_and_its_own_answer_passes():
    from edgeroute.bench.datasets import load_items

    items = load_items()
    assert {i["answer_type"] for i in items} <= set(ANSWER_TYPES)
    for item in items:  # the canonical answer, as a bare reply, must grade as correct
        reply = item["answers"][0] if item["answer_type"] != "choice" else f"({item['answers'][0]})"
        assert grade(reply, item), item["id"]
