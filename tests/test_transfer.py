"""Selection by transfer: the LOFO / LOSO splitters, the estimator's folds, risk-coverage, the selective guarantee,
and the corpus's promises (families, sources, held-out families, licences, reserved sets)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edgeroute.bench import crossval as CV
from edgeroute.bench import transfer as T
from edgeroute.bench.datasets import load_items
from edgeroute.policy.calibration import calibrate_selective
from edgeroute.signals.probe import SCALAR_FEATURES

DATA = Path(__file__).resolve().parents[1] / "edgeroute" / "bench" / "data"


def synthetic(n=300, seed=0):
    rng = np.random.default_rng(seed)
    fam = np.array([f"fam{i % 6}" for i in range(n)])
    src = np.array([f"src{(i % 6) // 2}" for i in range(n)])  # two families per source
    scalars = rng.standard_normal((n, len(SCALAR_FEATURES)))
    vec = rng.standard_normal((n, 8)).astype(np.float32)
    y = (scalars[:, 1] + vec[:, 0] + rng.standard_normal(n) > 0).astype(float)
    return T.Dataset(np.array([f"i{i}" for i in range(n)]), fam, src, np.array(["train"] * n), y, scalars,
                     {"prompt@0": vec, "answer_mean@0": vec[:, ::-1].copy()}, np.array([4 * (i % 6 == 5) for i in range(n)]))


@pytest.mark.parametrize("seed", range(5))
def test_leave_one_group_out_never_puts_a_group_on_both_sides(seed):
    rng = np.random.default_rng(seed)
    groups = rng.choice(np.array(["a", "b", "c", "d", "e"]), size=200)
    seen = np.zeros(200, dtype=int)
    folds = list(T.leave_one_group_out(groups))
    assert [g for g, _, _ in folds] == sorted(set(groups.tolist()))
    for g, train, test in folds:
        assert set(groups[test]) == {g} and g not in set(groups[train]) and not (train & test).any()
        assert (train | test).all()
        seen += test
    assert (seen == 1).all()  # every row is scored exactly once


@pytest.mark.parametrize("level", ["lofo", "loso"])
def test_cross_validation_never_trains_on_the_group_it_scores(level, monkeypatch):
    data = synthetic()
    calls = []
    real_fit = T.fit

    def spy(spec, d, mask=None):
        calls.append(mask.copy())
        return real_fit(spec, d, mask)

    monkeypatch.setattr(CV, "fit", spy)
    spec = T.Spec(blocks=("answer_mean@0",), pcs=3, l2=1.0, gate="novelty", novelty_block="prompt@0")
    r = CV.cross_validate(spec, data, level)
    groups = data.family if level == "lofo" else data.source
    assert len(calls) == len(set(groups.tolist())) == len(r.per_group)
    for (g, _, test), mask in zip(T.leave_one_group_out(groups), calls):
        assert g not in set(groups[mask].tolist()) and not (mask & test).any()
    assert r.mean is not None and 0.6 < r.pooled <= 1.0  # the synthetic signal is learnable across groups


def test_at_chance_multiple_choice_families_are_found_and_left_out_of_training_only():
    data = synthetic()
    data.y[data.family == "fam5"] = (np.arange((data.family == "fam5").sum()) % 4 == 0).astype(float)  # 25 %
    assert T.at_chance_families(data) == ["fam5"]
    fitted = T.fit(T.Spec(blocks=(), l2=1.0, train_on="no-chance"), data)
    assert len(fitted.predict(data)["combined"]) == len(data)  # still scored


def test_coverage_at_and_oracle_coverage_hand_cases():
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    y = np.array([1, 1, 0, 1, 0], dtype=float)
    assert CV.coverage_at(conf, y, 0.0) == pytest.approx(0.4)
    assert CV.coverage_at(conf, y, 0.25) == pytest.approx(0.8)  # 1 wrong among the top 4
    assert CV.coverage_at(conf, y, 0.5) == pytest.approx(1.0)
    assert CV.oracle_coverage(y, 0.0) == pytest.approx(0.6)
    assert CV.oracle_coverage(y, 0.25) == pytest.approx(0.8)
    tied = np.array([0.9, 0.9, 0.9])
    assert CV.coverage_at(tied, np.array([1.0, 0.0, 1.0]), 0.1) == 0.0  # a tie group is accepted whole or not at all
    at = CV.accepted_error(conf, y, 0.7)
    assert at["coverage"] == pytest.approx(0.6) and at["accepted_error"] == pytest.approx(1 / 3)
    rc = CV.risk_coverage(conf, y, 0.25, best_single=-conf)
    assert rc["always_local"] == 0.0 and rc["always_cloud"] == 0.0 and rc["best_training_free"] == 0.0


def test_the_selective_guarantee_holds_in_simulation():
    """P(correct | c) = c with c ~ U(0, 1): the error among answers with c >= t is (1 - t) / 2. Over many
    calibration sets the share whose threshold has true accepted error > epsilon must be <= delta."""
    from edgeroute import CalibrationError

    rng = np.random.default_rng(7)
    eps, delta, runs, n = 0.2, 0.1, 300, 1000
    violations = certified = 0
    for _ in range(runs):
        c = rng.uniform(size=n)
        y = rng.uniform(size=n) < c
        try:
            cal = calibrate_selective(c, y, eps, delta)
        except CalibrationError:
            continue  # nothing certified: nothing accepted, no violation
        certified += 1
        violations += (1 - cal.threshold) / 2 > eps
        assert cal.mode == "selective" and 0 < cal.coverage <= 1 and cal.risk_upper_bound <= eps
    assert certified >= 0.9 * runs
    assert violations / runs <= delta + 3 * math.sqrt(delta * (1 - delta) / runs)


def test_the_corpus_keeps_its_promises():
    items = load_items()
    fams = {i["family"] for i in items}
    sources = {i["source"] for i in items}
    assert len(fams) >= 40 and len(sources) >= 15 and len(items) >= 5000
    held = {i["family"] for i in items if i["split"] == "heldout-families"}
    trained = {i["family"] for i in items if i["split"] != "heldout-families"}
    assert len(held) >= 8 and not held & trained
    kinds = {i["answer_type"] for i in items if i["split"] == "heldout-families"}
    assert {"text", "number", "choice", "yesno"} <= kinds  # factoid, math, multiple choice, reasoning
    held_sources = {i["source"] for i in items if i["family"] in held} - {"edgeroute-curated"}
    assert not held_sources & {i["source"] for i in items if i["family"] in trained}
    for reserved in ("natural", "nq", "webquestions", "mintaka"):
        assert not any(reserved in s.lower() for s in sources)
    licences = (DATA / "DATA_LICENSES.md").read_text(encoding="utf-8")
    for s in sources:
        assert f"`{s}`" in licences, s
