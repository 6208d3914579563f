"""The ONNX probes: export equals the training-time model, bad files are refused, the Router uses and skips."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgeroute import PerplexitySignal, Router
from edgeroute.signals.probe import HIDDEN_BLOCKS, PregenProbe, ProbeSignal, feature_vector, layout
from edgeroute.signals.query import QUERY_FEATURES, query_features
from edgeroute.testing import MockCloud, MockLocalModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import train_probe as tp  # noqa: E402  (the training tool: its fit, logit and export functions)

N_EMBD = 8
MOCK_SHA = MockLocalModel().fingerprint
LAYER = MockLocalModel.hidden_layer
MOCK = {"model_sha256": MOCK_SHA, "n_embd": N_EMBD, "hidden_layer": LAYER}  # what model_identity(mock) gives


def train_and_export(tmp_path: Path, kind: str, spec: dict, *, sha: str = MOCK_SHA, n_embd: int = N_EMBD,
                     skip: float = 0.5, tau: float = 1e9, layer: int = LAYER) -> tuple[Path, dict]:
    """Fit a probe with the tool's own code on synthetic rows and export it exactly as the tool does; return the
    file and what the tool's numpy functions say it computes."""
    rng = np.random.default_rng(0)
    d = sum(w if isinstance(w, int) else len(w) for _, w in layout(kind, n_embd, layer))
    x = rng.standard_normal((200, d))
    y = (x[:, 0] + 0.5 * rng.standard_normal(200) > 0).astype(float)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale
    model = tp.fit(spec, z, y)
    centroids = np.stack([z[:100, :n_embd].mean(0), z[100:, :n_embd].mean(0)])
    fallback = None
    if kind == "post":
        wf = np.zeros(d)
        wf[int(np.argmax(tp.columns(kind, n_embd, layer, ("perplexity",))))] = -0.7  # the mean-NLL column
        fallback = (wf, 0.2)
    meta = {"kind": kind, "model_sha256": sha, "feature_layout": json.dumps(layout(kind, n_embd, layer)),
            "version": "2",
            "trained_on": "synthetic", "model_type": json.dumps(spec), "validation_auroc": "0.9",
            "skip_threshold": str(skip)}
    path = tmp_path / f"{kind}-{spec['type']}-{tau:g}.onnx"
    tp.export(path, kind, spec, model, mean, scale, n_embd, centroids, tau, fallback, meta)
    ref = {"spec": spec, "model": model, "mean": mean, "scale": scale, "centroids": centroids, "tau": tau,
           "fallback": fallback}
    return path, ref


def expected(ref: dict, row: np.ndarray, n_embd: int = N_EMBD) -> dict[str, float]:
    z = ((row.astype(np.float64) - ref["mean"]) / ref["scale"])[None, :]
    probe = float(tp.sigmoid(tp.logit(ref["spec"], ref["model"], z))[0])
    nov = float(tp.novelty(z[:, :n_embd], ref["centroids"])[0])
    out = {"probe": probe, "novelty": nov}
    if ref["fallback"] is not None:
        fb = float(tp.sigmoid(z @ ref["fallback"][0] + ref["fallback"][1])[0])
        out["combined"] = probe if nov < ref["tau"] else fb
    return out


@pytest.mark.parametrize("tau", [1e9, 0.0])  # every prompt familiar / every prompt novel
@pytest.mark.parametrize("spec", [{"type": "logistic", "l2": 10.0}, {"type": "mlp", "hidden": 6, "wd": 1e-3, "epochs": 50}])
def test_onnx_outputs_equal_the_training_time_model(tmp_path, spec, tau):
    path, ref = train_and_export(tmp_path, "post", spec, tau=tau)
    signal = ProbeSignal(path, **MOCK)
    assert signal.available, signal.error
    local = MockLocalModel(n_embd=N_EMBD)
    local.enqueue("Paris is it", logprobs=[-0.1, -0.4, -0.2], entropies=[0.3, 0.9, 0.5])
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    gen = local.generate(msgs, max_tokens=8)
    out = signal.compute(gen, msgs)
    from edgeroute.signals.perplexity import features

    hidden = [getattr(gen, name) for name in HIDDEN_BLOCKS]
    assert len(hidden) == 3 and all(h.shape == (N_EMBD,) for h in hidden)
    want = expected(ref, feature_vector("post", hidden, features(gen), query_features(msgs))[0])
    assert out["probe_confidence"] == pytest.approx(want["probe"], abs=1e-5)
    assert out["probe_novelty"] == pytest.approx(want["novelty"], rel=1e-4)
    assert out["combined_confidence"] == pytest.approx(want["combined"], abs=1e-5)
    assert (out["combined_confidence"] == out["probe_confidence"]) == (tau > 1)


def test_router_uses_the_probe_as_its_confidence(tmp_path):
    path, _ = train_and_export(tmp_path, "post", {"type": "logistic", "l2": 10.0})
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
    path, _ = train_and_export(tmp_path, "post", {"type": "logistic", "l2": 10.0}, sha="f" * 64)
    with pytest.warns(RuntimeWarning, match="trained for another model"):
        assert not ProbeSignal(path, **MOCK).available
    path2, _ = train_and_export(tmp_path, "post", {"type": "logistic", "l2": 10.0}, tau=5.0)  # for this model
    with pytest.warns(RuntimeWarning, match="another feature layout"):
        assert not ProbeSignal(path2, **{**MOCK, "n_embd": N_EMBD + 1}).available
    other_block, _ = train_and_export(tmp_path, "post", {"type": "logistic", "l2": 10.0}, tau=6.0, layer=LAYER + 5)
    with pytest.warns(RuntimeWarning, match=f"hidden states from block {LAYER}"):
        assert not ProbeSignal(other_block, **MOCK).available
    assert ProbeSignal(other_block, **{**MOCK, "hidden_layer": LAYER + 5}).available
    pre, _ = train_and_export(tmp_path, "pre", {"type": "logistic", "l2": 10.0})
    with pytest.warns(RuntimeWarning, match="is a 'pre' probe"):
        assert not ProbeSignal(pre, **MOCK).available


def make_pregen_router(tmp_path, threshold, tau=1e9, **kw):
    pre, _ = train_and_export(tmp_path, "pre", {"type": "logistic", "l2": 10.0}, skip=threshold, tau=tau)
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
        f"hidden_layer={real_model.hidden_layer})\n"
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
