"""The statistics of the risk control: the betting confidence sequences, the agreement grader, the control's rules,
the novelty map. In memory (the store's side is in test_risk_state.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeroute.risk.bounds import MEAN_GRID, Sequences, epoch_delta
from edgeroute.risk.control import RiskController
from edgeroute.risk.grader import agree, judge_verdict, options_in
from edgeroute.risk.novelty import NoveltyMap, fit_novelty


def _stream(seq: Sequences, rng: np.random.Generator, mean: float, rate: float, n: int) -> None:
    for _ in range(n):
        x = float(rng.random() < mean and rng.random() < rate) / rate
        seq.add(x, 1.0 / rate, np.array([True]))


def test_the_sequences_cover_the_true_mean_at_every_time_in_at_least_1_minus_alpha_of_runs():
    rng = np.random.default_rng(7)
    k = int(np.argmin(np.abs(MEAN_GRID - 0.3)))
    rejected_up = rejected_lo = 0
    runs = 150
    for _ in range(runs):
        seq = Sequences(1, 0.1)
        _stream(seq, rng, 0.3, 0.2, 300)
        rejected_up += bool(seq._up_rejected[0, k])  # ever rejected: the running intersection
        rejected_lo += bool(seq._lo_rejected[0, k])
    assert rejected_up / runs <= 0.1 + 0.05 and rejected_lo / runs <= 0.1 + 0.05
    # and they are not vacuous: with full labels, 2,000 samples pin the mean down to a few points
    seq = Sequences(1, 0.05)
    _stream(seq, rng, 0.3, 1.0, 2000)
    assert seq.lower(0) < 0.3 < seq.upper(0) and seq.upper(0) - seq.lower(0) < 0.1


def test_a_mean_above_m_is_detected_and_bad_samples_are_refused():
    seq = Sequences(2, 0.01)
    rng = np.random.default_rng(0)
    for _ in range(400):
        seq.add(float(rng.random() < 0.8), 1.0, np.array([True, False]))
    assert seq.lower(0) > 0.6 and seq.estimate(0) == pytest.approx(0.8, abs=0.06)
    assert seq.n[1] == 0 and seq.upper(1) == 1.0 and seq.lower(1) == 0.0 and seq.estimate(1) is None
    with pytest.raises(ValueError):
        seq.add(3.0, 2.0, np.array([True, True]))  # outside [0, b]
    with pytest.raises(ValueError):
        Sequences(1, 0.0)
    assert sum(epoch_delta(0.05, k) for k in range(1, 10_000)) < 0.05


@pytest.mark.parametrize("question, local, reference, verdict, kind", [
    ("Which is a mammal?\nA) shark\nB) whale\nC) trout", "The answer is B) whale.", "B", True, "choice"),
    ("Which is a mammal?\nA) shark\nB) whale\nC) trout", "A) shark", "(B)", False, "choice"),
    ("Which is a mammal?\nA) shark\nB) whale\nC) trout", "a whale", "The answer is whale.", True, "choice"),
    ("Is the sky blue?", "Yes, it is.", "Yes.", True, "closed"),
    ("Is the sky blue?", "No.", "Yes, the sky is blue.", False, "closed"),
    ("True or false: 7 is even.", "False.", "false", True, "closed"),
    ("What is 8 * 5?", "8 * 5 = 40", "40", True, "number"),
    ("What is 8 * 5?", "The answer is 45", "The answer is 40.", False, "number"),
    ("How many legs has a spider?", "A spider has eight legs.", "8", True, "number"),
    ("What is the capital of France?", "The capital of France is Paris.", "Paris", True, "short answer"),
    ("What is the capital of France?", "It is Lyon.", "The capital of France is Paris.", False, "short answer"),
    ("Write a poem about spring", "Roses bloom", "Spring arrives with gentle rain and blossoms opening wide",
     None, "free text"),
    ("Anything?", "x", "   ", None, "empty reference"),
])
def test_the_agreement_grader_table(question, local, reference, verdict, kind):
    got = agree(question, local, reference)
    assert (got.verdict, got.kind) == (verdict, kind)


def test_options_and_judge_replies_are_parsed():
    assert options_in("Pick:\nA) red\nB) blue") == ["red", "blue"]
    assert options_in("A) only one") == [] and options_in("B) x\nC) y") == []
    assert [judge_verdict(t) for t in ("Correct.", "incorrect", "Yes", "no way", "maybe", "")] == [
        True, False, True, False, None, None]


def _control(**kw) -> RiskController:
    return RiskController(None, "test", threshold=kw.pop("threshold", 0.5), source="shipped", epsilon=0.2,
                          delta=0.05, audit_rate=kw.pop("audit_rate", 0.5), **kw)


def test_a_broken_promise_raises_the_threshold_and_flags_drift():
    control = _control()
    for _ in range(60):  # every accepted answer wrong, all audited
        control.observe(0.7, True, 1.0, 1.0, labelled=True)
        if control.threshold > 0.5:
            break
    assert control.threshold == pytest.approx(0.55) and control.epoch == 2
    assert control.drift and "raised" in control.drift and "online control" in control.source
    info = control.info()
    assert info.threshold == pytest.approx(0.55) and info.status == "collecting" and info.drift


def test_lowering_needs_every_threshold_down_to_it_certified():
    control = _control(threshold=0.6, audit_rate=1.0)
    for i in range(400):  # right answers at 0.45, wrong ones at 0.3, escalated (below 0.6) and so labelled
        control.observe(0.3 if i % 4 == 0 else 0.45, False, 1.0, float(i % 4 == 0), labelled=True)
    # 0.6 accepted none; 0.55 .. 0.35 hold the right ones only; from 0.3 down a quarter are wrong (> 0.2)
    assert control.threshold == pytest.approx(0.35)
    assert control.drift is None and "lowered" in control.source
    ok = _control(threshold=0.6, audit_rate=1.0)
    for i in range(300):  # wrong answers at 0.52 (escalated), right ones at 0.7: the sequence stops above 0.52
        ok.observe(0.52 if i % 2 else 0.7, not i % 2, 1.0, float(i % 2), labelled=True)
    assert ok.threshold == pytest.approx(0.55)


def test_audits_off_leaves_the_error_unknown_and_says_why():
    control = _control(audit_rate=0.0)
    info = control.info()
    assert info.status == "unknown" and info.estimate is None and "audits are off" in info.why
    assert "unknown" in info.why and "shipped" in info.why
    assert control.plan(accepted=True, blocked=None) == (0.0, False, "audits are off")
    assert control.plan(accepted=False, blocked=None)[0] == 1.0  # an escalation is labelled for free
    assert control.plan(accepted=True, blocked="private prompt")[:2] == (0.0, False)
    assert _control().info(judged=False).status == "not judged"


def test_the_novel_share_raises_the_drift_flag_and_it_goes_down_again():
    control = _control(expected_novel=0.05)
    for i in range(400):
        control.observe(0.1, False, 0.0, None, novel=(i % 20 == 0))  # 5 %: as calibrated
    assert control.drift is None
    for i in range(200):
        control.observe(0.1, False, 0.0, None, novel=(i % 3 == 0))  # a third: moved
    assert control.drift and "novel prompts" in control.drift
    for i in range(200):
        control.observe(0.1, False, 0.0, None, novel=False)
    assert control.drift is None
    assert control.info().novel_share == pytest.approx((20 + 67) / 800, abs=0.01)


def test_the_novelty_map_fits_and_refuses_another_model(tmp_path):
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(0, 1, (100, 8)), rng.normal(5, 1, (100, 8))]
    data = fit_novelty(x, ["a"] * 100 + ["b"] * 100, model_sha256="abc", fitted_on="test", components=4)
    fitted = NoveltyMap(data)
    assert 0.03 <= data["expected_share"] <= 0.07
    assert not fitted.novel(x[0]) and fitted.novel(np.full(8, 40.0))
    path = tmp_path / "novelty.json"
    import json

    path.write_text(json.dumps(data))
    assert NoveltyMap.for_model("abc", 8, path) is not None
    assert NoveltyMap.for_model("other", 8, path) is None and NoveltyMap.for_model("abc", 9, path) is None
    path.write_text('{"model_sha256": "abc"')
    with pytest.warns(RuntimeWarning, match="ignoring the novelty map"):
        assert NoveltyMap.for_model("abc", 8, path) is None


def test_the_shipped_novelty_map_fits_the_default_model():
    from importlib import resources

    from edgeroute.local.resolve import default_model_path
    from edgeroute.risk.report import model_sha

    ref = resources.files("edgeroute._models").joinpath("novelty.json")
    fitted = NoveltyMap.load(__import__("pathlib").Path(str(ref)))
    assert fitted.model_sha256 == model_sha(str(default_model_path())) and fitted.n_embd == 576
    assert fitted.meta["novel_share"]["heldout-families"] > 3 * fitted.meta["novel_share"]["test"]
