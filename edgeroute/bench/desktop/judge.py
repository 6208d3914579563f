"""The cloud-judge grader for free text: a fixed rubric sent to a cloud model, which answers CORRECT or INCORRECT.
For evaluation only (nothing is trained on its verdicts), and reported beside its agreement with the deterministic
graders on the tasks both can grade (``agreement``)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Optional

from ...cloud.base import CloudBackend
from ...local.base import drain

RUBRIC = (
    "You grade an assistant's answer to a task. The task, the facts the answer must respect, and the answer follow.\n"
    "Rules: the answer is CORRECT only if it does what the task asks, respects every stated constraint, and states "
    "nothing that contradicts the facts. Extra politeness is fine. A wrong label, a wrong number, a missing required "
    "field, or a broken constraint makes it INCORRECT.\n"
    "Reply with exactly one word: CORRECT or INCORRECT.\n\n"
    "Task:\n{task}\n\nFacts:\n{facts}\n\nAnswer:\n{answer}\n\nVerdict:"
)
_VERDICT = re.compile(r"\b(INCORRECT|CORRECT)\b", re.IGNORECASE)


def judge_prompt(task: dict[str, Any], answer: str) -> list[dict[str, str]]:
    """The rubric filled in for one task (its conversation flattened, its ``expect`` as the facts)."""
    convo = "\n".join(f"{m['role']}: {m['content']}" for m in task["messages"])
    facts = json.dumps(task["expect"], ensure_ascii=False, sort_keys=True)
    return [{"role": "user", "content": RUBRIC.format(task=convo, facts=facts, answer=answer)}]


def verdict(text: str) -> Optional[bool]:
    """True / False from the judge's reply, or None when it names neither."""
    m = _VERDICT.search(text)
    return None if m is None else m.group(1).upper() == "CORRECT"


def judge(cloud: CloudBackend, task: dict[str, Any], answer: str, max_tokens: int = 4) -> Optional[bool]:
    reply = drain(cloud.stream(judge_prompt(task, answer), max_tokens=max_tokens))
    return verdict(reply.text)


def agreement(judged: Sequence[Optional[bool]], graded: Sequence[bool]) -> dict[str, Any]:
    """Raw agreement and Cohen's kappa on the pairs the judge gave a verdict for; ``unparsed`` counts the rest."""
    pairs = [(j, g) for j, g in zip(judged, graded) if j is not None]
    n = len(pairs)
    if n == 0:
        return {"n": 0, "unparsed": len(judged), "agreement": None, "kappa": None}
    agree = sum(j == g for j, g in pairs) / n
    pj, pg = sum(j for j, _ in pairs) / n, sum(g for _, g in pairs) / n
    chance = pj * pg + (1 - pj) * (1 - pg)
    kappa = None if chance >= 1 else (agree - chance) / (1 - chance)
    return {"n": n, "unparsed": len(judged) - n, "agreement": agree, "kappa": kappa,
            "judge_correct_rate": pj, "grader_correct_rate": pg}
