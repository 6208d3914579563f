"""``edgeroute bench risk`` on synthetic populations (the real run reads the bench cache: docs/risk.md)."""

from __future__ import annotations

import numpy as np

from edgeroute.bench.commands import markdown_risk
from edgeroute.bench.risk import Population, replay, risk_report, write_risk_plot


def _pop(name, n, rng, power, novel_share):
    """P(correct) = confidence ** power: 1 is calibrated; 3 is overconfident (a shift)."""
    conf = rng.uniform(0, 1, n)
    correct = (rng.uniform(0, 1, n) < conf ** power).astype(float)
    return Population(name, conf, correct, np.full(n, 2.0), np.full(n, 100), (rng.uniform(0, 1, n) < novel_share) * 1)


def _pops():
    rng = np.random.default_rng(3)
    return {"calibration": _pop("calibration", 2000, rng, 1.0, 0.05), "test": _pop("test", 500, rng, 1.0, 0.05),
            "heldout-families": _pop("heldout-families", 2000, rng, 3.0, 0.4)}


def test_the_replay_compares_fixed_and_audited_control_and_checks_its_statistics(tmp_path):
    pops = _pops()
    report = risk_report(pops, delta=0.05, before=400, after=1200, seeds=2, sim_seeds=8, sim_length=400,
                         long_after=1500, long_seeds=1, progress=None)
    assert report["epsilon"] in (0.1, 0.15, 0.2, 0.25, 0.3) and 0 < report["start_threshold"] < 1
    held_err = report["population_error_at_start_threshold"]["heldout-families"]
    assert held_err > report["epsilon"] + 0.1  # the shift breaks the calibrated promise
    fixed, audited = report["policies"]["fixed threshold"], report["policies"]["audited control, rate 0.1"]
    assert fixed["queries_to_detect"]["detected"] == 0 and fixed["audits_per_1000"] == 0
    assert audited["queries_to_detect"]["detected"] == 2  # the novel share jumped from 5 % to 40 %
    assert audited["audits_per_1000"] > 0 and audited["audit_cost_usd_per_1000"] > 0
    assert audited["final_accepted_error"] <= fixed["final_accepted_error"]
    sim = report["simulations"]
    assert sim["false_alarm_rate"] <= 0.25 and set(sim["validity"]) == {"calibration", "heldout-families"}
    assert all(v["checks"] > 0 for v in sim["validity"].values())
    assert set(report["targets"]) == {"final_accepted_error_le_eps_plus_0.02", "coverage_ge_half_oracle_at_that_error",
                                      "false_alarms_le_delta", "coverage_of_bound_ge_1_minus_delta"}
    text = markdown_risk(report)
    assert "audited control, rate 0.05" in text and "targets:" in text and "without a shift" in text
    png = write_risk_plot(report, tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_strong_shift_with_full_labels_raises_the_threshold_and_settles_near_epsilon():
    pops = _pops()
    cal, held = pops["calibration"], pops["heldout-families"]
    run = replay([(cal, 300), (held, 3000)], t0=0.5, epsilon=0.2, delta=0.05, audit_rate=1.0, seed=1)
    assert run["threshold"][-1] >= 0.7  # where conf ** 3 leaves about 0.2 of accepted answers wrong
    acc = run["accepted"][-1000:] > 0.5
    err_end = 1 - run["correct"][-1000:][acc].mean() if acc.any() else 0.0
    err_fixed = held.accepted_error(0.5)
    assert err_end < err_fixed  # the control took the threshold to where fewer accepted answers are wrong
