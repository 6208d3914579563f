"""LinUCB arithmetic against a hand-worked example; bad inputs rejected with the state intact."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeroute._errors import PolicyError
from edgeroute.policy.linucb import LinUCB


def test_hand_worked_example():
    # d = 2, ridge 1: A0 = I. After x = (1, 0), r = 1 on "local": A = diag(2, 1), b = (1, 0), theta = (0.5, 0).
    m = LinUCB(["local", "cloud"], 2, alpha=1.0, ridge=1.0)
    m.update("local", [1.0, 0.0], 1.0)
    np.testing.assert_allclose(m.arms["local"].a_inv, [[0.5, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(m.arms["local"].theta, [0.5, 0.0])
    s = m.scores([1.0, 0.0])
    assert s["local"] == pytest.approx(0.5 + math.sqrt(0.5))  # 1.2071
    assert s["cloud"] == pytest.approx(0.0 + 1.0)  # untouched arm: theta 0, width 1
    assert m.select([1.0, 0.0]) == "local"
    # x = (0, 1): both arms score exactly 1.0 (theta . x = 0, width 1): a tie goes to the first arm listed
    assert m.scores([0.0, 1.0]) == pytest.approx({"local": 1.0, "cloud": 1.0})
    assert m.select([0.0, 1.0]) == "local" and m.select([0.0, 1.0], allowed=["cloud", "local"]) == "cloud"
    m0 = LinUCB(["local", "cloud"], 2, alpha=0.0, ridge=1.0)
    m0.update("cloud", [0.0, 2.0], 0.8)  # A = diag(1, 5), b = (0, 1.6), theta = (0, 0.32)
    assert m0.scores([0.0, 1.0])["cloud"] == pytest.approx(0.32)


@pytest.mark.parametrize("gamma", [1.0, 0.99])
def test_incremental_updates_match_the_direct_solution(gamma):
    rng = np.random.default_rng(0)
    m = LinUCB(["a"], 5, ridge=0.05, discount=gamma)
    a, b = 0.05 * np.eye(5), np.zeros(5)
    for _ in range(200):
        x, r = rng.normal(size=5), float(rng.normal())
        m.update("a", x, r)
        a = 0.05 * np.eye(5) + gamma * (a - 0.05 * np.eye(5)) + np.outer(x, x)  # the ridge never fades
        b = gamma * b + r * x
    np.testing.assert_allclose(m.arms["a"].a_inv, np.linalg.inv(a), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(m.arms["a"].theta, np.linalg.solve(a, b), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(("x", "r"), [([float("nan"), 0.0], 1.0), ([0.0, float("inf")], 1.0), ([1.0, 0.0], float("nan")),
                                      ([1.0, 0.0], float("-inf")), ([1.0], 1.0)])
def test_non_finite_or_misshapen_input_is_rejected_and_the_state_stays_valid(x, r):
    m = LinUCB(["local", "cloud"], 2)
    m.update("local", [1.0, 0.5], 0.7)
    before = m.to_dict()
    with pytest.raises(PolicyError):
        m.update("local", x, r)
    assert m.to_dict() == before
    assert all(math.isfinite(v) for v in m.scores([1.0, 0.5]).values())


def test_new_arms_and_a_round_trip_through_a_dict():
    m = LinUCB(["local", "cloud"], 3, alpha=0.1, ridge=0.05)
    m.update("cloud", [1.0, 2.0, 3.0], 0.4)
    m.add_arm("cloud-b")
    assert m.select([1.0, 2.0, 3.0], allowed=["cloud-b"]) == "cloud-b"
    again = LinUCB.from_dict(m.to_dict())
    assert again.scores([1.0, 2.0, 3.0]) == pytest.approx(m.scores([1.0, 2.0, 3.0]))
    bad = m.to_dict()
    bad["arms"]["cloud"]["b"] = [1.0, 2.0]  # feature size changed
    with pytest.raises(PolicyError, match="does not fit dimension"):
        LinUCB.from_dict(bad)


def _noisy(rng: np.random.Generator, level: float) -> tuple[list[float], float]:
    """A context (bias + one noise feature) and a Bernoulli(level) reward."""
    return [1.0, float(rng.random())], float(rng.random() < level)


def test_the_change_detector_fires_on_a_shift_and_stays_quiet_on_a_stationary_arm():
    rng = np.random.default_rng(0)
    steady = LinUCB(["a"], 2, discount=0.998, change=(0.1, 4.0, 0.05))
    for _ in range(3000):
        steady.update("a", *_noisy(rng, 0.9))
    assert steady.arms["a"].changes <= 1  # 3,000 Bernoulli(0.9) rewards: a false alarm is rare (and costs 5 % of one
    # arm's evidence), a real change is caught within a few dozen
    shifted = LinUCB(["a"], 2, discount=0.998, change=(0.1, 4.0, 0.05))
    plain = LinUCB(["a"], 2, discount=0.998)
    for model in (shifted, plain):
        rng = np.random.default_rng(1)
        for _ in range(1000):
            model.update("a", *_noisy(rng, 0.9))
        for _ in range(100):  # the arm's quality halves
            model.update("a", *_noisy(rng, 0.45))
    assert shifted.arms["a"].changes >= 1 and plain.arms["a"].changes == 0
    x = [1.0, 0.5]
    assert shifted.scores(x, explore=False)["a"] < 0.6 < 0.7 < plain.scores(x, explore=False)["a"]  # it followed
    # saved and restored mid-way, the detector's sums come back and replaying the same updates gives the same state
    again = LinUCB.from_dict(shifted.to_dict())
    assert again.arms["a"].drift == shifted.arms["a"].drift and again.change == shifted.change
    rng = np.random.default_rng(2)
    for _ in range(50):
        x, r = _noisy(rng, 0.45)
        shifted.update("a", x, r)
        again.update("a", x, r)
    assert again.to_dict() == shifted.to_dict()


def test_the_detector_rests_after_a_change_so_a_refitted_arm_learns_the_new_level():
    # a cost that jumps tenfold: without the rest after a change, the shrunken refit errs by more than the threshold
    # on every update, fires again, and never learns the new level
    m = LinUCB(["cloud"], 3, discount=0.99, change=(0.5, 4.0, 0.05))
    x = [1.0, 0.3, 0.7]
    for _ in range(300):
        m.update("cloud", x, 0.6)
    for _ in range(60):
        m.update("cloud", x, 6.0)
    assert 1 <= m.arms["cloud"].changes <= 2 and m.arms["cloud"].since >= 50  # then it rested and learned
    assert m.scores(x, explore=False)["cloud"] == pytest.approx(6.0, rel=0.05)


def test_a_bad_change_setting_or_saved_detector_state_is_rejected():
    for bad in ((0.1, 0.0, 0.05), (-0.1, 4.0, 0.05), (0.1, 4.0, 1.0), (0.1, 4.0)):
        with pytest.raises(PolicyError):
            LinUCB(["a"], 2, change=bad)  # type: ignore[arg-type]
    d = LinUCB(["a"], 2, change=(0.1, 4.0, 0.05)).to_dict()
    d["arms"]["a"]["drift"] = [-1.0, 0.0]
    with pytest.raises(PolicyError):
        LinUCB.from_dict(d)
