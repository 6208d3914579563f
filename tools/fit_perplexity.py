"""Fit the perplexity-family confidence map (``models/perplexity.json``) for a local model.

Runs the local model greedily over a small labelled set with objective answers (arithmetic of graded difficulty,
capitals, chemical symbols), grades each answer, and fits a logistic regression of "answer correct" on the
perplexity features. Prints the in-sample and 5-fold cross-validated AUROC.

    python tools/fit_perplexity.py                    # default model -> models/perplexity.json
    python tools/fit_perplexity.py --model my.gguf --out /tmp/perplexity.json
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

from edgeroute.local.llama import LlamaCppModel
from edgeroute.signals.perplexity import FEATURES, LogisticMap, features

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo", "Canada": "Ottawa",
    "Australia": "Canberra", "Brazil": "Brasilia", "Argentina": "Buenos Aires", "Mexico": "Mexico City",
    "India": "New Delhi", "Kenya": "Nairobi", "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki",
    "Denmark": "Copenhagen", "Poland": "Warsaw", "Greece": "Athens", "Turkey": "Ankara", "Ireland": "Dublin",
    "Austria": "Vienna", "Hungary": "Budapest", "Peru": "Lima", "Chile": "Santiago", "Colombia": "Bogota",
    "Thailand": "Bangkok", "Vietnam": "Hanoi", "Indonesia": "Jakarta", "Nigeria": "Abuja", "Morocco": "Rabat",
    "Switzerland": "Bern", "Belgium": "Brussels", "Netherlands": "Amsterdam", "Czech Republic": "Prague",
    "South Korea": "Seoul", "Iran": "Tehran", "Iraq": "Baghdad", "Cuba": "Havana", "Ukraine": "Kyiv",
    "Romania": "Bucharest", "Bulgaria": "Sofia", "Serbia": "Belgrade", "Croatia": "Zagreb", "Iceland": "Reykjavik",
    "New Zealand": "Wellington", "Pakistan": "Islamabad", "Bangladesh": "Dhaka", "Ethiopia": "Addis Ababa",
    "Ghana": "Accra", "Venezuela": "Caracas", "Philippines": "Manila", "Malaysia": "Kuala Lumpur",
}
ELEMENTS = {
    "hydrogen": "H", "helium": "He", "carbon": "C", "nitrogen": "N", "oxygen": "O", "sodium": "Na",
    "magnesium": "Mg", "aluminium": "Al", "silicon": "Si", "phosphorus": "P", "sulfur": "S", "chlorine": "Cl",
    "potassium": "K", "calcium": "Ca", "iron": "Fe", "copper": "Cu", "zinc": "Zn", "silver": "Ag", "gold": "Au",
    "mercury": "Hg", "lead": "Pb", "tin": "Sn", "uranium": "U", "neon": "Ne", "argon": "Ar", "nickel": "Ni",
    "platinum": "Pt", "iodine": "I", "fluorine": "F", "lithium": "Li",
}


def items(seed: int = 7) -> list[tuple[str, list[str]]]:
    """(question, accepted answers) pairs."""
    rng = random.Random(seed)
    out: list[tuple[str, list[str]]] = []
    for digits in (1, 1, 2, 2, 3, 4):
        for _ in range(20):
            a, b = rng.randint(1, 10**digits - 1), rng.randint(1, 10**digits - 1)
            op = rng.choice("+-*") if digits < 3 else rng.choice("+-")
            value = a + b if op == "+" else a - b if op == "-" else a * b
            out.append((f"What is {a} {op} {b}? Answer with the number only.", [str(value)]))
    for country, city in CAPITALS.items():
        out.append((f"What is the capital of {country}? Answer in one word.", [city]))
    for name, sym in ELEMENTS.items():
        out.append((f"What is the chemical symbol of {name}? Answer with the symbol only.", [sym]))
    return out


def grade(answer: str, accepted: list[str]) -> bool:
    """True when an accepted answer appears as a whole word (numbers: as a whole number) in ``answer``."""
    text = answer.replace(",", "")
    for acc in accepted:
        if re.fullmatch(r"-?\d+", acc):
            if acc in re.findall(r"-?\d+", text):
                return True
        elif re.search(rf"(?<![A-Za-z]){re.escape(acc)}(?![a-z])", answer, flags=re.IGNORECASE if len(acc) > 2 else 0):
            return True
    return False


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> tuple[np.ndarray, float]:
    """Newton-IRLS logistic regression with an L2 penalty on the weights (not the intercept)."""
    n, d = x.shape
    xb = np.hstack([np.ones((n, 1)), x])
    w = np.zeros(d + 1)
    penalty = np.eye(d + 1) * l2
    penalty[0, 0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -40, 40)))
        grad = xb.T @ (p - y) + penalty @ w
        hess = xb.T @ (xb * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[1:], float(w[0])


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="GGUF path (default: the default model)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "models" / "perplexity.json"))
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()

    model = LlamaCppModel(args.model, hidden_states=False)
    rows, labels = [], []
    t0 = time.perf_counter()
    data = items()
    for i, (question, accepted) in enumerate(data):
        gen = model.generate([{"role": "user", "content": question}], max_tokens=args.max_tokens)
        x = features(gen)
        if x is None:
            continue
        rows.append(x)
        labels.append(1.0 if grade(gen.text, accepted) else 0.0)
        print(f"\r{i + 1}/{len(data)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    x, y = np.asarray(rows), np.asarray(labels)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = (x - mean) / scale

    rng = np.random.default_rng(0)
    folds = rng.permutation(len(y)) % 5
    cv_scores = np.empty(len(y))
    for k in range(5):
        coef, b = fit_logistic(z[folds != k], y[folds != k])
        cv_scores[folds == k] = z[folds == k] @ coef + b
    coef, b = fit_logistic(z, y)
    result = {
        "n": int(len(y)),
        "accuracy": float(y.mean()),
        "auroc_in_sample": auroc(z @ coef + b, y),
        "auroc_cv5": auroc(cv_scores, y),
        "auroc_mean_nll_only": auroc(-x[:, 0], y),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    mapping = LogisticMap(
        mean=tuple(mean.tolist()),
        scale=tuple(scale.tolist()),
        coef=tuple(coef.tolist()),
        intercept=b,
        model_sha256=model.fingerprint,
        info=(
            f"fitted by tools/fit_perplexity.py on {result['n']} items (arithmetic, capitals, chemical symbols); "
            f"local accuracy {result['accuracy']:.3f}; AUROC 5-fold CV {result['auroc_cv5']:.3f}"
        ),
    )
    assert tuple(FEATURES) == tuple(mapping.to_dict()["features"])
    Path(args.out).write_text(json.dumps(mapping.to_dict(), indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
