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
