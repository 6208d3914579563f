"""Metrics, grading, data and calibration of the evaluation harness, against hand-computed cases."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from edgeroute import CalibrationError, DatasetError, Router
from edgeroute.bench import metrics as M
from edgeroute.bench.datasets import SPLITS, describe, load_items
from edgeroute.bench.grading import grade, numbers_in
from edgeroute.policy.calibration import (
    Calibration,
    binom_cdf,
    calibrate_guarantee,
    calibrate_target_rate,
    calibration_path,
    clopper_pearson_upper,
    load_calibration,
    save_calibration,
)
from edgeroute.testing import MockLocalModel


# --- metrics --------------------------------------------------------------------------------------------------------
def test_auroc_counts_ties_as_one_half():
    # pairs (pos, neg): (0.8,0.1)=1 (0.8,0.4)=1 (0.4,0.1)=1 (0.4,0.4)=0.5 -> 3.5 / 4
    assert M.auroc([0.1, 0.4, 0.4, 0.8], [0, 0, 1, 1]) == pytest.approx(0.875)
    assert M.auroc([0.5] * 4, [0, 1, 0, 1]) == 0.5
    assert M.auroc([0.1, 0.2], [1, 1]) is None


def test_auprc_is_step_average_precision():
    # ranked 0.8(+) 0.4(-) 0.35(+) 0.1(-): precision at the two positives 1 and 2/3 -> (1 + 2/3) / 2
    assert M.auprc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(5 / 6)


def test_ece_hand_case():
    # bin [0.2,0.3): p=0.25 x2, accuracy 0.5 -> |0.5-0.25| = 0.25, weight 0.5 ; bin [0.9,1]: p=0.95 x2, acc 1 -> 0.05
    assert M.ece([0.25, 0.25, 0.95, 0.95], [1, 0, 1, 1]) == pytest.approx(0.5 * 0.25 + 0.5 * 0.05)
    assert M.ece([1.5, 0.2], [1, 0]) is None  # not a probability


def test_deferral_curve_apgr_and_cpt_interpolation():
    curve = M.deferral_curve([0.9, 0.1, 0.5, 0.7], [1, 0, 1, 0])
    np.testing.assert_allclose(curve[0], [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve[1], [0.5, 0.75, 0.75, 1.0, 1.0])
    assert M.area(curve) == pytest.approx(0.8125)
    assert M.apgr(curve, [1, 0, 1, 0]) == pytest.approx((0.8125 - 0.5) / 0.5)
    # target for x=0.5: 0.75, first reached at 0.25; x=0.95: 0.975 between (0.5, 0.75) and (0.75, 1.0) -> 0.725
    assert M.cpt(curve, [1, 0, 1, 0], 0.5) == pytest.approx(0.25)
    assert M.cpt(curve, [1, 0, 1, 0], 0.95) == pytest.approx(0.725)


def test_ties_in_the_score_give_the_expected_straight_line():
    curve = M.deferral_curve([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0])
    np.testing.assert_allclose(curve[0], [0.0, 1.0])
    np.testing.assert_allclose(curve[1], [0.5, 1.0])  # same as random: no information
    assert M.apgr(curve, [1, 0, 1, 0]) == pytest.approx(0.5)


def test_oracle_defers_exactly_the_wrong_answers_first():
    oracle = M.oracle_curve([1, 0, 1, 0])
    assert M.accuracy_at(oracle, 0.5) == pytest.approx(1.0)
    assert M.cpt(oracle, [1, 0, 1, 0], 0.95) == pytest.approx(0.475)


def test_per_item_cloud_correctness_is_supported():
    curve = M.deferral_curve([0.1, 0.9], [0, 1], np.array([0.0, 1.0]))  # the cloud also misses item 0
    assert M.accuracy_at(curve, 0.5) == pytest.approx(0.5)
    # scores out of order: the per-item cloud results must follow their items when sorted
    curve = M.deferral_curve([0.9, 0.1, 0.5], [1, 0, 0], np.array([0.0, 1.0, 0.0]))
    np.testing.assert_allclose(curve[1], [1 / 3, 2 / 3, 2 / 3, 1 / 3])


# --- grading ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("response", "item", "expected"),
    [
        ("The capital of France is Paris.", {"answers": ["Paris"]}, True),
        ("Paris? No, Lyon.", {"answers": ["Lyon"]}, True),
        ("Lyon", {"answers": ["Paris"]}, False),
        ("PARIS", {"answers": ["Paris"]}, True),
        ("Brasília", {"answers": ["Brasilia"]}, True),
        ("17 + 25 = 42", {"answers": ["42"]}, True),
        ("The answer is 1,000.", {"answers": ["1000"]}, True),
        ("42.0", {"answers": ["42"]}, True),
        ("It is four.", {"answers": ["4"]}, True),
        ("43, not 42... no, 44", {"answers": ["42"]}, False),
        ("-7", {"answers": ["-7"]}, True),
        ("No, it is not.", {"answers": ["no"]}, True),
        ("Yes. Well, no.", {"answers": ["no"]}, False),
        ("Odd.", {"answers": ["even"]}, False),
        ("The first letter of 'apple' is 'a'.", {"answers": ["a"]}, True),
        ("It is a b.", {"answers": ["a"]}, False),
        ("The letter is B", {"answers": ["b"]}, True),
        ("(B) Mercury", {"answers": ["B", "Mercury"], "choices": ["Venus", "Mercury", "Earth", "Mars"]}, True),
        ("The answer is (A) Venus.", {"answers": ["B", "Mercury"], "choices": ["Venus", "Mercury", "Earth", "Mars"]}, False),
        ("Mercury.", {"answers": ["B", "Mercury"], "choices": ["Venus", "Mercury", "Earth", "Mars"]}, True),
        ("", {"answers": ["Paris"]}, False),
    ],
)
def test_grader(response, item, expected):
    assert grade(response, item) is expected


def test_numbers_in_reads_words_and_separators():
    assert numbers_in("twelve apples and 1,234 pears, -3") == [12.0, 1234.0, -3.0]


# --- data -------------------------------------------------------------------------------------------------------------
def test_shipped_set_has_the_promised_size_families_and_disjoint_splits():
    items = load_items()
    info = describe(items)
    assert len(items) >= 1500 and len(info["families"]) >= 8
    assert set(info["splits"]) == set(SPLITS)
    heldout = {i["family"] for i in items if i["split"] == "heldout-families"}
    trained = {i["family"] for i in items if i["split"] in ("train", "calibration")}
    assert len(heldout) >= 2 and not heldout & trained
    assert len({i["id"] for i in items}) == len(items)


def test_user_jsonl_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "family": "f", "question": "q?", "answers": ["x"]}\n{"id": "b"}\n')
    with pytest.raises(DatasetError, match=r"bad.jsonl:2: 'family'"):
        load_items(bad)
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "a", "family": "f", "question": "q?", "answers": ["x"]}\n' * 2)
    with pytest.raises(DatasetError, match="duplicate id"):
        load_items(dup)
    with pytest.raises(DatasetError, match="not JSON"):
        (tmp_path / "junk.jsonl").write_text("{nope\n")
        load_items(tmp_path / "junk.jsonl")
    with pytest.raises(DatasetError, match="unknown split"):
        load_items(split="validation")


# --- calibration --------------------------------------------------------------------------------------------------------
def test_clopper_pearson_known_values():
    assert clopper_pearson_upper(0, 100, 0.05) == pytest.approx(1 - 0.05 ** (1 / 100), rel=1e-9)
    assert binom_cdf(3, 10, 0.5) == pytest.approx(176 / 1024)
    k, n, d = 5, 100, 0.05
    assert binom_cdf(k, n, clopper_pearson_upper(k, n, d)) == pytest.approx(d, rel=1e-6)


def test_the_guarantee_holds_in_simulation():
    """Confidence ~ U(0,1) and P(correct | c) = c: the true risk of threshold t is (1 - t)^2 / 2.
    Over many calibration sets, the share whose chosen threshold has true risk > epsilon must be <= delta."""
    rng = np.random.default_rng(12345)
    eps, delta, runs, n = 0.1, 0.1, 400, 300
    violations = 0
    for _ in range(runs):
        c = rng.uniform(size=n)
        y = rng.uniform(size=n) < c
        t = calibrate_guarantee(c, y, eps, delta).threshold
        violations += (1 - t) ** 2 / 2 > eps
    # delta plus three binomial standard errors of the simulation itself
    assert violations / runs <= delta + 3 * math.sqrt(delta * (1 - delta) / runs)


def test_too_few_items_is_a_clear_error_and_target_rate_mode_works():
    with pytest.raises(CalibrationError, match="needs about 30 items"):
        calibrate_guarantee([0.9] * 10, [True] * 10, epsilon=0.1, delta=0.05)
    c = np.linspace(0, 1, 101)
    cal = calibrate_target_rate(c, c > 0.5, 0.3)
    assert cal.expected_cloud_rate == pytest.approx(0.3, abs=0.01) and cal.mode == "target-rate"


def test_saved_calibration_is_loaded_by_the_router_and_reported(tmp_path):
    local = MockLocalModel()
    cal = Calibration(threshold=0.83, mode="guarantee", n=400, expected_cloud_rate=0.4, empirical_risk=0.05,
                      epsilon=0.1, delta=0.05, risk_upper_bound=0.08, model=local.fingerprint)
    path = save_calibration(cal)
    assert path == calibration_path(local.fingerprint) and json.loads(path.read_text())["threshold"] == 0.83
    router = Router(local_model=local, local_only=True, trace=False)
    assert router.policy.threshold == 0.83 and router.calibration == cal
    a = router.ask("hello there")
    assert a.threshold == 0.83 and a.threshold_source.startswith("calibrated: wrong local answers <= 0.1")
    assert Router(local_model=local, local_only=True, trace=False, threshold=0.4).threshold_source == "configured"


def test_corrupt_or_foreign_calibration_is_ignored_with_a_warning():
    local = MockLocalModel()
    path = calibration_path(local.fingerprint)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    with pytest.warns(RuntimeWarning, match="unreadable calibration"):
        assert load_calibration(local.fingerprint) is None
    path.unlink()
    other = save_calibration(Calibration(0.7, "guarantee", 100, 0.5, 0.05, model=local.fingerprint,
                                         confidence_id="other"))
    assert other == calibration_path(local.fingerprint, "other")  # one file per confidence map
    assert load_calibration(local.fingerprint, "other").threshold == 0.7
    with pytest.warns(RuntimeWarning, match="another model or confidence map"):
        assert load_calibration(local.fingerprint, "mine") is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        router = Router(local_model=local, local_only=True, trace=False)
    assert router.threshold_source == "default" and router.policy.threshold == 0.5
