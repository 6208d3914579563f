"""Fitted artifacts record the engine they were fitted with and a golden measurement; at load, an engine whose
outputs differ gets them refused with one warning naming both versions."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from edgeroute import Router
from edgeroute.local.golden import measure, mismatch
from edgeroute.policy.calibration import Calibration, save_calibration
from edgeroute.testing import MockLocalModel


class VersionedMock(MockLocalModel):
    engine_version = "mock-engine 2.0"


def shipped_engine() -> dict:
    return json.loads(resources.files("edgeroute._models").joinpath("perplexity.json").read_text())["engine"]


def test_every_shipped_artifact_records_the_engine_it_was_fitted_with():
    import onnxruntime as ort

    record = shipped_engine()
    assert record["engine"].startswith("llama-cpp-python ") and isinstance(record["token"], int)
    models = resources.files("edgeroute._models")
    for name in ("calibration.json", "calibration-selfref.json"):
        assert json.loads(models.joinpath(name).read_text())["engine"] == record
    for name in ("probe.onnx", "pregen.onnx"):
        meta = ort.InferenceSession(str(models.joinpath(name)), providers=["CPUExecutionProvider"])
        assert json.loads(meta.get_modelmeta().custom_metadata_map["engine"]) == record


def test_mismatch_compares_within_tolerance_and_names_what_differs():
    a = {"engine": "x 1", "token": 5, "logprob": -1.0, "entropy": 2.0, "hidden_norm": 100.0}
    assert mismatch(a, {**a, "engine": "x 2", "logprob": -1.04, "hidden_norm": 101.0}) is None
    assert mismatch(a, {**a, "token": 6}) == "first token 5 vs 6"
    assert mismatch(a, {**a, "logprob": -1.2}) == "logprob -1 vs -1.2"
    assert mismatch(a, {**a, "hidden_norm": 110.0}) == "hidden norm 100 vs 110"
    assert mismatch(a, {**a, "hidden_norm": None}) is None  # a model without hidden states: not compared


def test_an_engine_whose_outputs_differ_gets_the_artifacts_refused_with_one_warning():
    from edgeroute import paths

    local = VersionedMock()
    fitted = json.loads(resources.files("edgeroute._models").joinpath("perplexity.json").read_text())
    target = paths.fitted_dir(local.fingerprint)  # a map fitted for this model, on an engine that answered otherwise
    target.mkdir(parents=True)
    (target / "perplexity.json").write_text(json.dumps({**fitted, "model_sha256": local.fingerprint}))
    with pytest.warns(RuntimeWarning) as caught:
        router = Router(local_model=local, local_only=True, trace=False)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "refused perplexity" in messages[0] and shipped_engine()["engine"] in messages[0]
    assert "mock-engine 2.0" in messages[0]
    assert "perplexity" not in [s.name for s in router.signals]
    assert "perplexity_confidence" not in router.ask("hello there").signals


def test_another_models_map_is_not_an_engine_change_it_is_used_and_flagged_uncalibrated(recwarn):
    router = Router(local_model=VersionedMock(), local_only=True, trace=False)  # only the shipped (SmolLM2) map
    assert not [w for w in recwarn if "refused" in str(w.message)]
    signals = router.ask("hello there").signals
    assert "perplexity_confidence" in signals and signals["perplexity_calibrated"] == 0.0


def test_a_calibration_from_this_engine_is_used_and_one_from_another_is_refused():
    local = VersionedMock()
    mine = measure(local)
    cal = Calibration(threshold=0.83, mode="guarantee", n=400, expected_cloud_rate=0.4, empirical_risk=0.05,
                      epsilon=0.1, delta=0.05, model=local.fingerprint, engine=mine)
    save_calibration(cal)
    router = Router(local_model=local, local_only=True, trace=False, probe=False,
                    signal_names=("tokens", "query"))  # no shipped artifact in play: only the calibration
    assert router.policy.threshold == 0.83 and router.threshold_source.startswith("calibrated")
    save_calibration(Calibration(**{**cal.to_dict(), "engine": {**mine, "engine": "mock-engine 1.0",
                                                                 "logprob": mine["logprob"] - 1.0}}))
    with pytest.warns(RuntimeWarning, match=r"refused calibration .*fitted with mock-engine 1\.0, this is "
                                            r"mock-engine 2\.0 \(logprob"):
        router = Router(local_model=local, local_only=True, trace=False, probe=False, signal_names=("tokens", "query"))
    assert router.calibration is None and router.policy.threshold == 0.5
    assert router.threshold_source.startswith("default (the saved calibration was refused")


def test_engines_without_a_version_are_not_checked():
    router = Router(local_model=MockLocalModel(), local_only=True, trace=False)  # no warning: pytest errors on one
    assert "perplexity" in [s.name for s in router.signals]
    assert MockLocalModel().golden() is None


def test_the_golden_measurement_and_the_model_hash_are_remembered_and_a_corrupt_memo_is_recomputed():
    from edgeroute import paths
    from edgeroute.local.memo import remembered

    first = VersionedMock()
    first.golden()
    assert len(first.calls) == 1  # one short generation measured it
    again = VersionedMock()
    assert again.golden() == first.golden() and again.calls == []  # remembered: no decode at start-up
    paths.memo_file().write_text("{half a file")
    third = VersionedMock()
    assert third.golden() == first.golden() and len(third.calls) == 1
    assert remembered("k", lambda: [1, 2]) == [1, 2] and remembered("k", lambda: 1 / 0) == [1, 2]


@pytest.mark.slow
def test_the_real_engine_matches_the_shipped_record_and_is_remembered(real_model):
    from edgeroute import paths

    real_model.__dict__.pop("_golden", None)  # measured afresh in this test's data dir
    assert mismatch(shipped_engine(), real_model.golden()) is None
    memo = json.loads(paths.memo_file().read_text())
    assert any(k.startswith(f"golden|{real_model.fingerprint}|llama-cpp-python ") for k in memo)
