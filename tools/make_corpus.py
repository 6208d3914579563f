"""Build edgeroute's labelled corpus, ``edgeroute/bench/data/items.jsonl``: 55 task families from 27 sources.

Public sources are read from bare git mirrors (``fetch`` brings them: ``--mirrors DIR`` holds ``OWNER+NAME/repo``;
the repositories, revisions and paths are in ``SOURCES`` and in ``edgeroute/bench/data/DATA_LICENSES.md``); the
edgeroute families come from ``make_bench_data.py`` (generated and hand-curated, without its extra train items).
Every item: ``id``, ``family``, ``source``, ``answer_type`` (text / number / choice / yesno / truefalse / validity), ``question``
(as people type it: a short question, "answer with just ...", or multiple choice with lettered options),
``answers`` (first canonical; aliases after), ``split``, and for multiple choice ``choices``.

Splits are by family: the ``HELDOUT`` families (factoid, reasoning, math, multiple choice; their sources appear in
no other family) are all ``heldout-families``, never trained, selected or calibrated on. The other families' items
are split by a hash of the question: train 60 %, calibration 20 %, test 20 %. Natural Questions, WebQuestions and
Mintaka are reserved for blind evaluation and are never read.

    python tools/make_corpus.py                   # rewrites edgeroute/bench/data/items.jsonl, prints the sizes
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import make_bench_data as edgeroute_families

OUT = Path(__file__).resolve().parents[1] / "edgeroute" / "bench" / "data" / "items.jsonl"
SEED = 20261201
PER_FAMILY = 150
MAX_QUESTION_CHARS = 700
LETTERS = "ABCDEFGHIJ"

HELDOUT = ("jeopardy", "openbookqa", "commonsenseqa", "svamp", "gpt3-2digit-multiplication", "coin-flip",
           "last-letters", "gpt3-reversed-words", "authors", "science-mc")
RESERVED = ("natural questions", "nq-open", "efficientqa", "webquestions", "mintaka")

LF = "mosaicml/llm-foundry"
LFD = "scripts/eval/local_data"


def show(mirrors: Path, repo: str, path: str, rev: str = "HEAD") -> bytes:
    git_dir = mirrors / repo.replace("/", "+") / "repo"
    return subprocess.run(["git", "-C", str(git_dir), "show", f"{rev}:{path}"], check=True,
                          capture_output=True).stdout


def jsonl(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.decode("utf-8").split("\n") if line.strip()]


def mc_question(stem: str, choices: list[str]) -> str:
    opts = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
    return f"{stem.strip()}\n{opts}\nAnswer with the letter only."


def mc_item(stem: str, choices: list[str], gold: int) -> dict[str, Any]:
    choices = [str(c).strip() for c in choices]
    return {"question": mc_question(stem, choices), "answers": [LETTERS[gold], choices[gold]],
            "choices": choices, "answer_type": "choice"}


def pick(rng: random.Random, templates: list[str], **kw: str) -> str:
    return rng.choice(templates).format(**kw)


FACT_TEMPLATES = ["{q}", "{q} Answer with just the answer.", "{q} Give a short answer."]


def fact(rng: random.Random, q: str, answers: list[str]) -> dict[str, Any]:
    q = q.strip()
    if not q.endswith(("?", ".")):
        q += "?"
    return {"question": pick(rng, FACT_TEMPLATES, q=q), "answers": answers, "answer_type": "text"}


# --- one reader per source: (mirrors, rng) -> items without id/family/split ----------------------------------
def triviaqa(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for r in jsonl(show(m, LF, f"{LFD}/world_knowledge/triviaqa_sm_sub.jsonl")):
        q = r["context"].removeprefix("Question:").removesuffix("Answer:").strip()
        yield fact(rng, q, [r["answer"]] + [a for a in r["aliases"] if a != r["answer"]])


def freebaseqa(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for r in jsonl(show(m, LF, f"{LFD}/world_knowledge/freebaseqa.jsonl", "636a053e")):
        yield fact(rng, r["context"], [r["answer"]] + list(r.get("aliases") or []))


def jeopardy(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for r in jsonl(show(m, LF, f"{LFD}/world_knowledge/jeopardy_all.jsonl")):
        cat, _, clue = r["context"].partition(":")
        yield {"question": f"Jeopardy clue in the category {cat.strip().title()}: {clue.strip()} What is the answer? "
                           "Answer with just the answer.", "answers": [r["continuation"]], "answer_type": "text"}


def qa_wikidata(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for r in jsonl(show(m, LF, f"{LFD}/world_knowledge/bigbench_qa_wikidata.jsonl")):
        yield {"question": f"Complete the sentence with a few words: \"{r['context'].strip()} ...\"",
               "answers": [r["continuation"].strip()], "answer_type": "text"}


EQ_RELATIONS = {"P17": "eq-country", "P36": "eq-capital", "P50": "eq-author", "P19": "eq-birthplace",
                "P176": "eq-manufacturer", "P106": "eq-occupation"}


def entity_questions(relation: str) -> Callable[[Path, random.Random], Iterator[dict[str, Any]]]:
    def read(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
        for r in json.loads(show(m, "princeton-nlp/EntityQuestions", f"dataset/test/{relation}.test.json",
                                 "096c261f")):
            yield fact(rng, r["question"], list(r["answers"]))
    return read


def truthfulqa(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    text = show(m, "benedictflorance/truthfulqa_experiments", "datasets/TruthfulQA.csv").decode("utf-8")
    for r in csv.DictReader(io.StringIO(text)):
        wrong = [w.strip() for w in r["Incorrect Answers"].split(";") if w.strip()]
        if not wrong:
            continue
        choices = [r["Best Answer"].strip(), wrong[0]]
        rng.shuffle(choices)
        yield mc_item(r["Question"], choices, choices.index(r["Best Answer"].strip()))


def misconceptions(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for r in jsonl(show(m, LF, f"{LFD}/world_knowledge/bigbench_misconceptions.jsonl")):
        claim = r["query"].split("Q:", 1)[1].rsplit("A:", 1)[0].strip()
        yield {"question": f"Is this statement true or false? {claim} Answer true or false.",
               "answers": ["true" if r["gold"] == 0 else "false"], "answer_type": "truefalse"}


def lf_mc(path: str, strip: str = "Question:") -> Callable[[Path, random.Random], Iterator[dict[str, Any]]]:
    def read(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
        for r in jsonl(show(m, LF, f"{LFD}/{path}")):
            yield mc_item(r["query"].removeprefix(strip).strip(), r["choices"], int(r["gold"]))
    return read


def copa(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for r in jsonl(show(m, LF, f"{LFD}/commonsense_reasoning/copa.jsonl")):
        premise, _, link = r["query"].rpartition(",")
        ask = "What happened as a result?" if "therefore" in link else "What was the cause?"
        yield mc_item(f"{premise.strip()}. {ask}", [c.rstrip(".") for c in r["choices"]], int(r["gold"]))


def winogrande(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for r in jsonl(show(m, LF, f"{LFD}/language_understanding/winogrande.jsonl")):
        a, b = r["context_options"]
        common = 0
        while common < min(len(a), len(b)) and a[common] == b[common]:
            common += 1
        prefix = a[:common]
        opt_a, opt_b = a[common:].strip(), b[common:].strip()
        sentence = f"{prefix.strip()} _ {r['continuation'].strip()}"
        yield mc_item(f"Fill in the blank: \"{sentence}\" Who or what is _?", [opt_a, opt_b], int(r["gold"]))


def boolq(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for r in jsonl(show(m, LF, f"{LFD}/reading_comprehension/boolq.jsonl")):
        passage, _, rest = r["query"].partition("Question:")
        question = rest.replace("Answer:", "").strip().rstrip("?")
        passage = passage.removeprefix("Passage:").strip()
        if len(passage) > 450:
            continue
        gold = r["choices"][int(r["gold"])].strip().lower()
        yield {"question": f"{passage}\nQuestion: {question}? Answer yes or no.", "answers": [gold],
               "answer_type": "yesno"}


def lambada(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for r in jsonl(show(m, LF, f"{LFD}/language_understanding/lambada_openai.jsonl")):
        ctx = r["context"].strip()
        if len(ctx) > 450:
            continue
        yield {"question": f"What is the next word of this text?\n\"{ctx} ...\"\nAnswer with the one word only.",
               "answers": [r["continuation"].strip()], "answer_type": "text"}


def simple_arithmetic(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for r in jsonl(show(m, LF, f"{LFD}/symbolic_problem_solving/simple_arithmetic_withspaces.jsonl")):
        yield {"question": f"What is {r['context'].rstrip('= ').strip()}? Answer with the number only.",
               "answers": [r["continuation"].strip()], "answer_type": "number"}


def mmlu(group: str) -> Callable[[Path, random.Random], Iterator[dict[str, Any]]]:
    def read(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
        repo, rev = "hendrycks/test", "785eba57"
        names = subprocess.run(["git", "-C", str(m / "hendrycks+test" / "repo"), "ls-tree", "--name-only", rev,
                                "data/test/"], check=True, capture_output=True, text=True).stdout.split()
        for path in sorted(names):
            subject = Path(path).name.removesuffix("_test.csv")
            if MMLU_GROUP.get(subject) != group:
                continue
            for row in csv.reader(io.StringIO(show(m, repo, path, rev).decode("utf-8"))):
                if len(row) == 6:
                    yield mc_item(row[0], row[1:5], "ABCD".index(row[5].strip()))
    return read


_STEM = ("abstract_algebra anatomy astronomy college_biology college_chemistry college_computer_science "
         "college_mathematics college_physics computer_security conceptual_physics electrical_engineering "
         "elementary_mathematics high_school_biology high_school_chemistry high_school_computer_science "
         "high_school_mathematics high_school_physics high_school_statistics machine_learning").split()
_HUM = ("formal_logic high_school_european_history high_school_us_history high_school_world_history "
        "international_law jurisprudence logical_fallacies moral_disputes moral_scenarios philosophy prehistory "
        "professional_law world_religions").split()
_SOC = ("econometrics high_school_geography high_school_government_and_politics high_school_macroeconomics "
        "high_school_microeconomics high_school_psychology human_sexuality professional_psychology "
        "public_relations security_studies sociology us_foreign_policy").split()
MMLU_GROUP = {**{s: "stem" for s in _STEM}, **{s: "humanities" for s in _HUM}, **{s: "social" for s in _SOC}}
for _s in ("business_ethics clinical_knowledge college_medicine global_facts human_aging management marketing "
           "medical_genetics miscellaneous nutrition professional_accounting professional_medicine virology").split():
    MMLU_GROUP[_s] = "other"


KOJIMA = "kojima-takeshi188/zero_shot_cot"


def commonsenseqa(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for r in jsonl(show(m, KOJIMA, "dataset/CommonsenseQA/dev_rand_split.jsonl")):
        choices = [c["text"] for c in r["question"]["choices"]]
        yield mc_item(r["question"]["stem"], choices, "ABCDE".index(r["answerKey"]))


def coin_flip(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for r in json.loads(show(m, KOJIMA, "dataset/coin_flip/coin_flip.json"))["examples"]:
        yield {"question": r["question"] + " Answer yes or no.", "answers": [r["answer"]], "answer_type": "yesno"}


def last_letters(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for r in json.loads(show(m, KOJIMA, "dataset/last_letters/last_letters.json"))["examples"]:
        yield {"question": r["question"] + " Answer with the letters only.", "answers": [r["answer"]],
               "answer_type": "text"}


def csqa2(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    raw = gzip.decompress(show(m, "allenai/csqa2", "dataset/CSQA2_dev.json.gz"))
    for r in jsonl(raw):
        q = r["question"].strip()
        yield {"question": f"{q}{'' if q.endswith('?') else '?'} Answer yes or no.", "answers": [r["answer"]],
               "answer_type": "yesno"}


def strategyqa(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for path in ("data/strategyqa/dev.json", "data/strategyqa/train.json"):
        for r in json.loads(show(m, "eladsegal/strategyqa", path)):
            yield {"question": r["question"].strip() + " Answer yes or no.",
                   "answers": ["yes" if r["answer"] else "no"], "answer_type": "yesno"}


NUM = "Answer with the number only."


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def gsm8k(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for r in jsonl(show(m, "openai/grade-school-math", "grade_school_math/data/test.jsonl")):
        yield {"question": f"{r['question'].strip()} {NUM}",
               "answers": [r["answer"].split("####")[-1].strip().replace(",", "")], "answer_type": "number"}


def svamp(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for r in json.loads(show(m, "arkilpatel/SVAMP", "SVAMP.json")):
        body = r["Body"].strip()
        body += "" if body.endswith(".") else "."
        yield {"question": f"{body} {r['Question'].strip()} {NUM}", "answers": [_num(r["Answer"])],
               "answer_type": "number"}


def mawps(name: str) -> Callable[[Path, random.Random], Iterator[dict[str, Any]]]:
    def read(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
        for r in jsonl(show(m, "ZubinGou/math-evaluation-harness", f"data/mawps/{name}.jsonl")):
            yield {"question": f"{r['input'].strip()} {NUM}", "answers": [_num(float(r["target"]))],
                   "answer_type": "number"}
    return read


def gpt3_mult(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for r in jsonl(show(m, "openai/gpt-3", "data/two_digit_multiplication.jsonl")):
        q = r["context"].strip().removeprefix("Q:").removesuffix("A:").strip()
        yield {"question": f"{q} {NUM}", "answers": [r["completion"].strip()], "answer_type": "number"}


def gpt3_reversed(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    for r in jsonl(gzip.decompress(show(m, "openai/gpt-3", "data/reversed_words.jsonl.gz"))):
        scrambled = r["context"].split("\n")[-1].split("=")[0].strip() if "=" in r["context"] else r["context"]
        word = r["completion"].strip()
        if len(word) < 4 or not word.isalpha():
            continue
        yield {"question": f"The letters of a word were written backwards: '{scrambled}'. What is the word? "
                           "Answer with the word only.", "answers": [word], "answer_type": "text"}


BBH = "suzgunmirac/BIG-Bench-Hard"
BBH_TASKS = {"boolean_expressions": "truefalse", "navigate": "yesno", "sports_understanding": "yesno",
             "web_of_lies": "yesno", "object_counting": "number", "causal_judgement": "yesno",
             "formal_fallacies": "validity", "multistep_arithmetic_two": "number", "date_understanding": "choice"}


def bbh(task: str) -> Callable[[Path, random.Random], Iterator[dict[str, Any]]]:
    kind = BBH_TASKS[task]

    def read(m: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
        for r in json.loads(show(m, BBH, f"bbh/{task}.json"))["examples"]:
            q, target = r["input"].strip(), r["target"].strip()
            if kind == "choice":
                stem, _, opts = q.partition("Options:")
                choices = [re.sub(r"^\([A-Z]\)\s*", "", o).strip() for o in opts.strip().splitlines() if o.strip()]
                yield mc_item(stem, choices, "ABCDEFG".index(target.strip("()")))
            elif kind == "number":
                yield {"question": f"{q} {NUM}" if not q.endswith("=") else f"What is {q.rstrip('= ')}? {NUM}",
                       "answers": [target], "answer_type": "number"}
            elif kind == "truefalse":
                expr = q.removesuffix(" is").strip()
                yield {"question": f"Is the expression '{expr}' True or False? Answer true or false.",
                       "answers": [target.lower()], "answer_type": "truefalse"}
            elif kind == "validity":
                yield {"question": q.replace("Options:\n- valid \n- invalid", "").strip()
                       + " Answer valid or invalid.", "answers": [target.lower()], "answer_type": "validity"}
            else:
                text = re.sub(r"Options:\s*- Yes\s*- No", "", q).strip()
                if not text.endswith("?"):
                    text += "" if text.endswith(".") else "."
                yield {"question": f"{text} Answer yes or no.", "answers": [target.lower()], "answer_type": "yesno"}
    return read


#: family -> (source, reader)
SOURCES: dict[str, tuple[str, Callable[[Path, random.Random], Iterator[dict[str, Any]]]]] = {
    "triviaqa": ("triviaqa", triviaqa),
    "freebaseqa": ("freebaseqa", freebaseqa),
    "jeopardy": ("jeopardy", jeopardy),
    "qa-wikidata": ("bigbench-qa-wikidata", qa_wikidata),
    **{fam: ("entityquestions", entity_questions(rel)) for rel, fam in EQ_RELATIONS.items()},
    "truthfulqa-mc": ("truthfulqa", truthfulqa),
    "misconceptions": ("bigbench-misconceptions", misconceptions),
    "arc-easy": ("arc", lf_mc("world_knowledge/arc_easy.jsonl")),
    "arc-challenge": ("arc", lf_mc("world_knowledge/arc_challenge.jsonl")),
    "openbookqa": ("openbookqa", lf_mc("commonsense_reasoning/openbook_qa.jsonl")),
    **{f"mmlu-{g}": ("mmlu", mmlu(g)) for g in ("stem", "humanities", "social", "other")},
    "commonsenseqa": ("commonsenseqa", commonsenseqa),
    "csqa2": ("csqa2", csqa2),
    "strategyqa": ("strategyqa", strategyqa),
    "copa": ("copa", copa),
    "piqa": ("piqa", lf_mc("commonsense_reasoning/piqa.jsonl")),
    "winogrande": ("winogrande", winogrande),
    "boolq": ("boolq", boolq),
    "lambada": ("lambada", lambada),
    "gsm8k": ("gsm8k", gsm8k),
    "svamp": ("svamp", svamp),
    "mawps-singleop": ("mawps", mawps("singleop")),
    "mawps-addsub": ("mawps", mawps("addsub")),
    "simple-arithmetic": ("simple-arithmetic", simple_arithmetic),
    "gpt3-2digit-multiplication": ("gpt3-arithmetic-scramble", gpt3_mult),
    "gpt3-reversed-words": ("gpt3-arithmetic-scramble", gpt3_reversed),
    "coin-flip": ("zero-shot-cot-symbolic", coin_flip),
    "last-letters": ("zero-shot-cot-symbolic", last_letters),
    **{f"bbh-{t.replace('_', '-')}": ("bbh", bbh(t)) for t in BBH_TASKS},
}
EDGEROUTE_SOURCE = {**{f: "edgeroute-generated" for f in ("arithmetic", "units", "calendar", "logic", "letters",
                                                          "sequences")},
                    **{f: "edgeroute-curated" for f in ("capitals", "elements", "antonyms", "authors", "science-mc")}}


def split_of(question: str) -> str:
    h = int(hashlib.sha256(question.encode("utf-8")).hexdigest()[:8], 16) % 10
    return "train" if h < 6 else "calibration" if h < 8 else "test"


def answer_type(item: dict[str, Any]) -> str:
    """The answer type of an edgeroute family item (the public readers set it themselves)."""
    if item.get("choices"):
        return "choice"
    first = str(item["answers"][0]).strip().lower()
    if first in ("yes", "no"):
        return "yesno"
    if first in ("true", "false"):
        return "truefalse"
    try:
        float(first.replace(",", ""))
        return "number"
    except ValueError:
        return "text"


def build(mirrors: Path) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for item in edgeroute_families.build(extra=False):
        fam = item["family"]
        items.append({"id": item["id"], "family": fam, "source": EDGEROUTE_SOURCE[fam],
                      "answer_type": answer_type(item), **{k: item[k] for k in ("question", "answers")},
                      **({"choices": item["choices"]} if "choices" in item else {})})
    for family, (source, read) in SOURCES.items():
        assert not any(r in source for r in RESERVED)
        rng = random.Random(f"{SEED}-{family}")
        seen, pool = set(), []
        for it in read(mirrors, rng):
            q = it["question"]
            answers = [a for a in dict.fromkeys(str(a).strip() for a in it["answers"]) if a]
            if not answers or q in seen or len(q) > MAX_QUESTION_CHARS:
                continue
            seen.add(q)
            pool.append({**it, "answers": answers})
        rng.shuffle(pool)
        for i, it in enumerate(pool[:PER_FAMILY]):
            items.append({"id": f"{family}-{i:04d}", "family": family, "source": source, **it})
    for item in items:
        item["split"] = "heldout-families" if item["family"] in HELDOUT else split_of(item["question"])
    return [{k: it[k] for k in ("id", "family", "source", "answer_type", "question", "answers", "choices", "split")
             if k in it} for it in items]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirrors", default="/work/.mirror", help="folder of bare mirrors OWNER+NAME/repo")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    items = build(Path(args.mirrors))
    out = Path(args.out)
    with out.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    print(f"{len(items)} items -> {out}")
    print("families:", len({i['family'] for i in items}), dict(sorted(Counter(i["family"] for i in items).items())))
    print("sources:", len({i['source'] for i in items}), dict(sorted(Counter(i["source"] for i in items).items())))
    print("splits:", dict(sorted(Counter(i["split"] for i in items).items())))
    print("answer types:", dict(sorted(Counter(i["answer_type"] for i in items).items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
