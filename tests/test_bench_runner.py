"""The cached runner, the report and the bench / calibrate commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeroute.bench.report import CloudAssumptions, build_report, public
from edgeroute import paths
from edgeroute.bench.runner import RunParams, run_local
from edgeroute.testing import MockLocalModel
from conftest import run_cli

ITEMS = [
    {"id": "q1", "family": "f", "question": "Paris", "answers": ["Paris"]},
    {"id": "q2", "family": "f", "question": "Lyon", "answers": ["Paris"]},
    {"id": "q3", "family": "g", "question": "42", "answers": ["42"]},
    {"id": "q4", "family": "g", "question": "41", "answers": ["42"]},
]


class OtherWeights(MockLocalModel):
    @property
    def fingerprint(self) -> str:
        return "other-weights"


def test_second_run_is_served_from_the_cache_and_a_new_model_file_invalidates_it():
    generated: list[str] = []
    records, info = run_local(ITEMS, MockLocalModel(), progress=None, on_generate=generated.append)
    assert generated == ["q1", "q2", "q3", "q4"] and info["generated"] == 4
    assert [r["text"] for r in records] == ["Paris", "Lyon", "42", "41"]
    again, info2 = run_local(ITEMS, MockLocalModel(), progress=None, on_generate=generated.append)
    assert len(generated) == 4 and info2["cached"] == 4 and again == records  # nothing regenerated
    run_local(ITEMS, OtherWeights(), progress=None, on_generate=generated.append)
    assert len(generated) == 8  # other weights: other cache
    run_local(ITEMS, MockLocalModel(), RunParams(max_tokens=8), progress=None, on_generate=generated.append)
    assert len(generated) == 12  # other generation parameters: other cache


def test_a_torn_cache_line_is_skipped_with_a_warning_and_regenerated():
    _, info = run_local(ITEMS, MockLocalModel(), progress=None)
    path = Path(info["cache"])
    assert path.parent == paths.bench_cache_dir()
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])  # killed mid-write
    generated: list[str] = []
    with pytest.warns(RuntimeWarning, match="unreadable line"):
        run_local(ITEMS, MockLocalModel(), progress=None, on_generate=generated.append)
    assert generated == ["q4"]


def test_report_has_the_documented_keys_and_grades_fresh():
    records, _ = run_local(ITEMS, MockLocalModel(), progress=None)
    report = public(build_report(ITEMS, records, CloudAssumptions(accuracy=0.9)))
    assert report["n"] == 4 and report["local_accuracy"] == 0.5
    for key in ("signals", "confidence_auroc", "apgr", "cpt", "oracle_cpt", "assumptions", "curve", "per_family"):
        assert key in report
    assert set(report["cpt"]) == {"50", "80", "95"} and report["assumptions"]["accuracy"] == 0.9
    assert {"auroc", "auprc", "ece"} <= set(report["signals"]["mean_nll"])
    assert report["curve"][0]["cloud_fraction"] == 0.0 and report["curve"][-1]["cloud_calls"] == 4
    json.dumps(report, allow_nan=False)


def test_calibrated_stats_measure_the_risk_the_calibration_bounds():
    from edgeroute.bench.api import calibrated_stats
    from edgeroute.bench.report import markdown
    from edgeroute.policy.calibration import Calibration, save_calibration

    records, _ = run_local(ITEMS, MockLocalModel(), progress=None)  # right, wrong, right, wrong
    for r, conf in zip(records, (0.9, 0.8, 0.2, 0.7)):
        r["signals"]["x_confidence"] = conf

    class X:
        provides_confidence, confidence_id = "x_confidence", "x-map"

    class Other:
        provides_confidence, confidence_id = "y_confidence", "no-calibration-for-this"

    fingerprint = MockLocalModel().fingerprint
    assert calibrated_stats(ITEMS, records, [X(), Other()], fingerprint) == {}
    save_calibration(Calibration(threshold=0.75, mode="guarantee", n=100, expected_cloud_rate=0.5, empirical_risk=0.1,
                                 epsilon=0.2, delta=0.05, model=fingerprint, confidence_id="x-map"))
    stats = calibrated_stats(ITEMS, records, [X(), Other()], fingerprint)
    # accepted: q1 (right) and q2 (wrong); q3 and q4 go to the cloud
    assert stats == {"x_confidence": {"threshold": 0.75, "epsilon": 0.2, "delta": 0.05, "cloud_rate": 0.5,
                                      "risk": 0.25, "calibration": stats["x_confidence"]["calibration"]}}
    report = build_report(ITEMS, records, CloudAssumptions())
    report["calibrated"] = stats
    assert "risk 0.250 (answered locally and wrong), 50.0% to the cloud" in markdown(report, "t")


# --- commands, with the real model ----------------------------------------------------------------------------------
def small_jsonl(tmp_path: Path) -> Path:
    from edgeroute.bench.datasets import load_items

    items = [i for i in load_items(split="test") if i["family"] in ("arithmetic", "capitals")][:12]
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps({k: v for k, v in i.items() if k != "split"}) + "\n" for i in items))
    return path


@pytest.mark.slow
def test_bench_json_contract_cache_and_plots(tmp_path):
    data = small_jsonl(tmp_path)
    out = tmp_path / "report"
    proc = run_cli("bench", "--data", str(data), "--json", "--quiet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    for key in ("n", "local_accuracy", "signals", "confidence_auroc", "apgr", "cpt", "oracle_cpt", "assumptions"):
        assert key in d, key
    assert d["n"] == 12 and set(d["cpt"]) == {"50", "80", "95"} and d["assumptions"]["source"] == "assumed"
    assert {"auroc", "auprc", "ece"} <= set(d["signals"]["perplexity_confidence"])
    assert {"auroc", "auprc", "ece"} <= set(d["signals"]["selfref"])  # the shipped Self-REF adapter scored them
    assert d["energy"]["method"] == "estimated" and d["energy"]["local_joules_per_query"] > 0
    assert d["run"]["generated"] == 12
    assert (out / "report.md").read_text().startswith("# edgeroute bench")
    for png in ("deferral.png", "energy.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = json.loads(run_cli("bench", "--data", str(data), "--json", "--quiet").stdout)
    assert again["run"]["generated"] == 0 and again["confidence_auroc"] == d["confidence_auroc"]


@pytest.mark.slow
def test_calibrate_json_and_the_too_few_error(tmp_path):
    data = small_jsonl(tmp_path)
    proc = run_cli("calibrate", "--data", str(data), "--json", "--quiet", "--epsilon", "0.05", "--delta", "0.05")
    assert proc.returncode == 2 and "CalibrationError" in proc.stderr and "12 items" in proc.stderr
    proc = run_cli("calibrate", "--data", str(data), "--json", "--quiet", "--target-cloud-rate", "0.5")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert {"threshold", "epsilon", "delta", "n", "expected_cloud_rate"} <= set(d) and d["n"] == 12
    assert d["saved"] and Path(d["saved"]).exists()
    asked = json.loads(run_cli("ask", "What is 2+2?", "--local-only", "--json", "--max-tokens", "8").stdout)
    assert asked["threshold"] == d["threshold"] and asked["threshold_source"].startswith("calibrated: target")


@pytest.mark.slow
@pytest.mark.server
def test_bench_against_a_real_cloud_measures_it(tmp_path, llama_server):
    data = small_jsonl(tmp_path)
    lines = data.read_text().splitlines()[:4]
    data.write_text("\n".join(lines) + "\n")
    proc = run_cli("bench", "--data", str(data), "--json", "--quiet", "--cloud-url", llama_server.base_url,
                   "--cloud-model", "stand-in")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["assumptions"]["source"].startswith("measured: stand-in at http://127.0.0.1:")
    assert 0.0 <= d["assumptions"]["accuracy"] <= 1.0 and d["assumptions"]["latency_ms"] > 0


@pytest.mark.slow
def test_changing_the_model_file_invalidates_the_cache(tmp_path, real_model):
    import shutil

    from edgeroute.local.llama import LlamaCppModel

    copy = tmp_path / "model.gguf"
    shutil.copyfile(real_model.path, copy)
    items = ITEMS[:2]
    generated: list[str] = []
    for expected in (2, 2):  # the second pass is cached
        model = LlamaCppModel(copy, n_ctx=512)
        run_local(items, model, RunParams(max_tokens=4), progress=None, on_generate=generated.append)
        model.close()
        assert len(generated) == expected
    with copy.open("ab") as f:  # the file changes (a trailing byte: llama.cpp still loads it)
        f.write(b"\0")
    model = LlamaCppModel(copy, n_ctx=512)
    run_local(items, model, RunParams(max_tokens=4), progress=None, on_generate=generated.append)
    model.close()
    assert len(generated) == 4


@pytest.mark.slow
def test_bench_transfer_reports_lofo_loso_heldout_and_risk_coverage(tmp_path):
    """On a small corpus with real answers: the shipped estimator refitted per left-out family and source, the
    shipped confidence per split, and coverage beside the oracle's and the training-free signal's."""
    from edgeroute.bench.datasets import load_items

    pick = {"arithmetic": "train", "capitals": "train", "eq-capital": "train", "boolq": "train",
            "svamp": "heldout-families"}
    items = []
    for fam, split in pick.items():
        items += [i for i in load_items() if i["family"] == fam and i["split"] in (split, "test")][:8]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    proc = run_cli("bench", "transfer", "--data", str(path), "--json", "--quiet", "--epsilon", "0.2")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["rows"] == len(items) and d["confidence"] == "combined_confidence" and d["spec"]["blocks"] is not None
    sources = {i["source"] for i in items if i["split"] == "train"}
    assert set(d["loso"]["per_group"]) == sources and len(d["lofo"]["per_group"]) == 4
    assert {"test", "heldout-families"} <= set(d["splits"])
    held = d["splits"]["heldout-families"]
    assert set(held["per_family"]) == {"svamp"} and held["n"] == 8
    rc = held["risk_coverage"]
    assert rc["epsilon"] == 0.2 and 0 <= rc["confidence"] <= rc["oracle"] <= 1 and rc["always_cloud"] == 0.0
    assert "at_threshold" in held and 0 <= held["at_threshold"]["coverage"] <= 1
    md = run_cli("bench", "transfer", "--data", str(path), "--quiet").stdout
    assert md.startswith("# edgeroute bench transfer") and "| source (LOSO) | AUROC |" in md
