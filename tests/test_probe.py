"""The ONNX probes: export equals the training-time estimator, bad files are refused, the Router uses and skips."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgeroute import PerplexitySignal, Router
from edgeroute.bench import onnx_export as tp  # the export and row functions (edgeroute fit, tools/train_probe.py)
from edgeroute.bench.transfer import Dataset, Spec, fit, linear
from edgeroute.signals import evaluate
from edgeroute.signals.probe import SCALAR_FEATURES, PregenProbe, ProbeSignal, feature_row, scalar_values
from edgeroute.signals.query import QUERY_FEATURES, query_features
from edgeroute.testing import MockCloud, MockLocalModel

ROOT = Path(__file__).resolve().parents[1]

N_EMBD = 8
MOCK_SHA = MockLocalModel().fingerprint
LAYER = MockLocalModel.hidden_layer
MOCK = {"model_sha256": MOCK_SHA, "n_embd": N_EMBD, "hidden_layers": MockLocalModel.hidden_layers,
        "hidden_layer": LAYER}  # what model_identity(mock) gives


def synthetic(n: int = 240, blocks: tuple[str, ...] = ("prompt@0", "answer_mean@0", "answer_mean@1")) -> Dataset:
    rng = np.random.default_rng(0)
    scalars = rng.standard_normal((n, len(SCALAR_FEATURES)))
    vectors = {b: rng.standard_normal((n, N_EMBD)).astype(np.float32) for b in blocks}
    y = (scalars[:, 0] + vectors[blocks[1]][:, 0] + 0.5 * rng.standard_normal(n) > 0).astype(float)
    fam = np.array([f"f{i % 4}" for i in range(n)])
    return Dataset(np.array([f"i{i}" for i in range(n)]), fam, np.array([f"s{i % 2}" for i in range(n)]),
                   np.array(["train"] * n), y, scalars, vectors, np.zeros(n, dtype=np.int64))


def train_and_export(tmp_path: Path, kind: str, spec: Spec, *, sha: str = MOCK_SHA, n_embd: int = N_EMBD,
                     skip: float = 0.5, tau: float | None = None, layout: list | None = None,
                     rewrite: dict | None = None) -> tuple[Path, object, list]:
    """Fit ``spec`` on synthetic rows with the estimator's own code and export it exactly as the tool does; return
    the file, the fitted estimator and its layout."""
    data = synthetic()
    fitted = fit(spec, data)
    if tau is not None:
        fitted.tau = tau
    if kind == "pre":
        fitted.fallback = None
    if layout is None:
        layout = ([[spec.novelty_block, n_embd]] + [[b, n_embd] for b in spec.blocks if b != spec.novelty_block]
                  + [["features", list(spec.scalars)]])
    meta = {"model_sha256": sha, "trained_on": "synthetic", "model_type": json.dumps({"type": "transfer-logistic",
                                                                                      **spec.to_dict()}),
            "validation_auroc": "0.9", "skip_threshold": str(skip), "gate": spec.gate}
    path = tmp_path / f"{kind}-{len(spec.blocks)}-{spec.gate}-{tau}.onnx"
    tp.export(path, kind, linear(fitted, layout), layout, meta)
    if rewrite:  # metadata fields rewritten after export (an older, newer or foreign file)
        import onnx

        m = onnx.load(str(path))
        for prop in m.metadata_props:
            if prop.key in rewrite:
                prop.value = rewrite[prop.key]
        onnx.save(m, str(path))
    return path, fitted, layout


SPECS = [Spec(blocks=("answer_mean@0",), pcs=4, l2=1.0, novelty_block="prompt@0"),
         Spec(blocks=("answer_mean@1", "answer_mean@0"), pcs=3, l2=1.0, hidden=5, novelty_block="prompt@0"),
         Spec(blocks=("answer_mean@0", "answer_mean@1"), pcs=3, l2=10.0, gate="novelty", novelty_block="prompt@0"),
         Spec(blocks=(), l2=1.0, gate="novelty", novelty_block="prompt@0")]


@pytest.mark.parametrize("tau", [None, 0.0])  # as fitted / every prompt novel
@pytest.mark.parametrize("spec", SPECS, ids=["one-block", "mlp", "two-blocks-gated", "scalars-gated"])
def test_onnx_outputs_equal_the_training_time_estimator(tmp_path, spec, tau):
    path, fitted, layout = train_and_export(tmp_path, "post", spec, tau=tau)
    signal = ProbeSignal(path, **MOCK)
    assert signal.available, signal.error
    data = synthetic()
    x = tp.rows(data, layout)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"features": x})))
    ref = fitted.predict(data)
    np.testing.assert_allclose(outs["probe"][:, 0], ref["probe"], atol=2e-5)
    np.testing.assert_allclose(outs["combined"][:, 0], ref["combined"], atol=2e-5)
    if spec.gate == "novelty":
        np.testing.assert_allclose(outs["novelty"][:, 0], ref["novelty"], rtol=1e-4)
        np.testing.assert_allclose(ref["combined"], np.where(ref["novelty"] < fitted.tau, ref["probe"],
                                                             ref["fallback"]))
        if tau == 0.0:  # every prompt is novel: the fallback decides everywhere
            np.testing.assert_allclose(outs["combined"][:, 0], ref["fallback"], atol=2e-5)
        else:
            assert (ref["novelty"] < fitted.tau).mean() > 0.9  # the training rows are familiar


def test_the_probe_signal_scores_a_live_generation_like_the_estimator(tmp_path):
    spec = SPECS[2]
    path, fitted, layout = train_and_export(tmp_path, "post", spec)
    signal = ProbeSignal(path, **MOCK)
    local = MockLocalModel(n_embd=N_EMBD)
    local.enqueue("Paris is it", logprobs=[-0.1, -0.4, -0.2], entropies=[0.3, 0.9, 0.5])
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    gen = local.generate(msgs, max_tokens=8)
    values = evaluate([signal], gen, msgs)
    scal = scalar_values(gen, msgs)
    assert set(SCALAR_FEATURES) <= set(scal)
    row = feature_row(layout, {**scal, **gen.hidden})
    one = Dataset(np.array(["x"]), np.array(["f"]), np.array(["s"]), np.array(["test"]), np.array([1.0]),
                  np.array([[scal[f] for f in SCALAR_FEATURES]]), {b: gen.hidden[b][None, :] for b in gen.hidden},
                  np.zeros(1, dtype=np.int64))
    want = fitted.predict(one)
    assert row is not None and row.shape == (1, sum(w if isinstance(w, int) else len(w) for _, w in layout))
    assert values["probe_confidence"] == pytest.approx(float(want["probe"][0]), abs=1e-5)
    assert values["combined_confidence"] == pytest.approx(float(want["combined"][0]), abs=1e-5)
    assert values["probe_novelty"] == pytest.approx(float(want["novelty"][0]), rel=1e-4)
    ungated, _, _ = train_and_export(tmp_path, "post", SPECS[0])
    assert "probe_novelty" not in evaluate([ProbeSignal(ungated, **MOCK)], gen, msgs)


def test_router_uses_the_probe_as_its_confidence(tmp_path):
    path, _, _ = train_and_export(tmp_path, "post", SPECS[0])
    local = MockLocalModel(n_embd=N_EMBD)
    router = Router(local_model=local, local_only=True, trace=False,
                    signals=[PerplexitySignal(), ProbeSignal(path, **MOCK)])
    a = router.ask("What is 2+2?")
    assert {"probe_confidence", "combined_confidence", "perplexity_confidence"} <= set(a.signals)
    assert a.confidence == a.signals["combined_confidence"]


def test_corrupt_probe_file_is_refused_once_and_perplexity_carries_on(tmp_path):
    bad = tmp_path / "probe.onnx"
    bad.write_bytes(b"\x08\x01garbage" * 100)
    with pytest.warns(RuntimeWarning, match="probe disabled: cannot load"):
        signal = ProbeSignal(bad, **MOCK)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second load of the same file does not warn again
        again = ProbeSignal(bad, **MOCK)
    assert not signal.available and not again.available
    router = Router(local_model=MockLocalModel(n_embd=N_EMBD), local_only=True, trace=False,
                    signals=[PerplexitySignal(), signal])
    a = router.ask("What is 2+2?")
    assert "combined_confidence" not in a.signals and a.confidence == a.signals["perplexity_confidence"]


def test_probe_for_another_model_or_layout_is_refused(tmp_path):
    spec = SPECS[0]
    path, _, _ = train_and_export(tmp_path, "post", spec, sha="f" * 64)
    with pytest.warns(RuntimeWarning, match="trained for another model"):
        assert not ProbeSignal(path, **MOCK).available
    path2, _, _ = train_and_export(tmp_path, "post", spec, tau=5.0)  # for this model
    with pytest.warns(RuntimeWarning, match="8-wide hidden states"):
        assert not ProbeSignal(path2, **{**MOCK, "n_embd": N_EMBD + 1}).available
    with pytest.warns(RuntimeWarning, match="hidden states from block 0, which this engine does not capture"):
        assert not ProbeSignal(path2, **{**MOCK, "hidden_layers": (1, 2)}).available
    foreign = [["prompt@0", N_EMBD], ["answer_mean@0", N_EMBD], ["features", ["no_such_feature"] * len(spec.scalars)]]
    unknown, _, _ = train_and_export(tmp_path, "post", spec, tau=6.0, rewrite={"feature_layout": json.dumps(foreign)})
    with pytest.warns(RuntimeWarning, match="features this version does not compute"):
        assert not ProbeSignal(unknown, **MOCK).available
    old, _, _ = train_and_export(tmp_path, "post", spec, tau=7.0, rewrite={"version": "2"})
    with pytest.warns(RuntimeWarning, match="layout version '2'"):
        assert not ProbeSignal(old, **MOCK).available
    pre, _, _ = train_and_export(tmp_path, "pre", PRE_SPEC)
    with pytest.warns(RuntimeWarning, match="is a 'pre' probe"):
        assert not ProbeSignal(pre, **MOCK).available


PRE_SPEC = Spec(scalars=QUERY_FEATURES, blocks=("prompt@0",), pcs=3, l2=10.0, gate="novelty",
                novelty_block="prompt@0")


def make_pregen_router(tmp_path, threshold, tau=1e9, **kw):  # tau 1e9: no prompt is novel
    pre, _, _ = train_and_export(tmp_path, "pre", PRE_SPEC, skip=threshold, tau=tau)
    local, cloud = MockLocalModel(n_embd=N_EMBD), MockCloud()
    router = Router(local_model=local, cloud=cloud, trace=False, **kw)
    router.pregen = PregenProbe(pre, **MOCK)
    return router, local, cloud


def test_pregen_probe_skips_local_generation_when_hopeless(tmp_path):
    router, local, cloud = make_pregen_router(tmp_path, threshold=1.01)  # everything is "hopeless"
    a = router.ask("What is the capital of Peru?")
    assert a.route == "cloud" and "pregen_skip" in a.flags and "local generation skipped" in a.reason
    assert local.calls == [] and local.prefills == 1 and len(cloud.requests) == 1
    assert 0.0 <= a.signals["pregen_confidence"] <= 1.0 and "pregen" in a.latency_ms
    assert a.energy.local.joules is not None  # the prefill's energy is still reported


def test_pregen_never_skips_private_or_offline_queries_and_degrades_when_the_cloud_fails(tmp_path):
    from edgeroute import CloudUnreachableError

    router, local, cloud = make_pregen_router(tmp_path, threshold=1.01)
    a = router.ask("my secret question", private=True)
    assert "pregen_skip" not in a.flags and local.prefills == 0 and cloud.requests == []
    cloud.enqueue(CloudUnreachableError("no route to host"))
    local.enqueue("Lima", logprobs=[-0.01])
    b = router.ask("What is the capital of Peru?")
    assert b.text == "Lima" and any("the cloud failed" in w for w in b.warnings)
    router_low, local_low, _ = make_pregen_router(tmp_path, threshold=0.0)  # nothing is hopeless
    local_low.enqueue("Lima", logprobs=[-0.01])
    c = router_low.ask("What is the capital of Peru?")
    assert c.route == "local" and local_low.prefills == 1 and len(local_low.calls) == 1


def test_pregen_never_skips_a_prompt_unlike_anything_it_was_trained_on(tmp_path):
    router, local, cloud = make_pregen_router(tmp_path, threshold=0.999, tau=0.0)  # every prompt is novel
    local.enqueue("Lima", logprobs=[-0.01])
    a = router.ask("What is the capital of Peru?")
    assert a.signals["pregen_confidence"] == 1.0 and "pregen_skip" not in a.flags and len(local.calls) == 1


def test_query_features_are_the_documented_layout():
    q = query_features([{"role": "user", "content": "Is 7 greater than 3? Answer yes or no."}])
    f = dict(zip(QUERY_FEATURES, q))
    assert f["q_yes_no"] == 1.0 and f["q_ends_question"] == 1.0 and f["q_what"] == 0.0 and len(q) == 13


@pytest.mark.slow
def test_shipped_probes_load_from_an_installed_wheel(tmp_path, real_model):
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q",
                    "-w", str(wheel_dir)], check=True, capture_output=True, timeout=300)
    wheel = next(wheel_dir.glob("edgeroute-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = (
        "import edgeroute, json\n"
        "from edgeroute.signals.probe import ProbeSignal, PregenProbe\n"
        f"ident = dict(model_sha256={real_model.fingerprint!r}, n_embd={real_model.n_embd}, "
        f"hidden_layers={tuple(real_model.hidden_layers)!r}, hidden_layer={real_model.hidden_layer})\n"
        "p = ProbeSignal(**ident)\n"
        "q = PregenProbe(**ident)\n"
        "from edgeroute.local.selfref import SelfRefAdapter\n"
        "a = SelfRefAdapter.shipped()\n"
        "print(json.dumps({'file': edgeroute.__file__, 'probe': p.available, 'pregen': q.available,"
        f" 'threshold': q.threshold, 'error': p.error, 'selfref': a.fits({real_model.fingerprint!r}),"
        " 'selfref_file': str(a.path)}))\n"
    )
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=tmp_path)  # not the repo: "-c" puts the working directory first on sys.path
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["file"].startswith(str(target)) and d["probe"] and d["pregen"] and 0 < d["threshold"] < 1, d
    assert d["selfref"] and d["selfref_file"].startswith(str(target)), d  # the Self-REF adapter ships too
