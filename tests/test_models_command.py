"""`edgeroute models`: the models that resolve, read from their GGUF headers, with the artifacts fitted for each."""

from __future__ import annotations

import json
import struct

from conftest import run_cli

from edgeroute import paths
from edgeroute.local.catalog import list_models
from edgeroute.local.gguf_meta import read_metadata
from edgeroute.local.native import file_sha256
from edgeroute.local.resolve import default_model_path


def gguf(path, kv: dict) -> None:
    """A header-only GGUF (no tensors) holding ``kv`` (strings and u32 values)."""
    def s(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    body = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv))
    for key, value in kv.items():
        body += s(key) + (struct.pack("<I", 8) + s(value) if isinstance(value, str) else struct.pack("<II", 4, value))
    path.write_bytes(body)


def test_the_default_model_with_its_shipped_artifacts_and_figures():
    [entry] = [m for m in list_models() if m["found_in"].startswith("default")]
    assert entry["sha256"] == file_sha256(default_model_path()) and entry["architecture"] == "llama"
    assert entry["n_ctx_trained"] == 8192 and entry["chat_template"] is True and entry["n_embd"] == 576
    names = {a["name"]: a for a in entry["artifacts"]}
    assert {"probe.onnx", "pregen.onnx", "calibration.json", "perplexity.json"} <= set(names)
    assert names["probe.onnx"]["figures"]["loso_mean_auroc"] > 0.5 and names["calibration.json"]["figures"]["threshold"]


def test_a_users_model_dir_a_base_model_a_user_calibration_and_bad_files(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("EDGEROUTE_MODEL_DIR", str(folder))
    base = folder / "tiny-base.gguf"
    gguf(base, {"general.architecture": "gemma3", "general.name": "Tiny base", "gemma3.context_length": 32768,
                "gemma3.block_count": 18})
    assert read_metadata(base)["gemma3.context_length"] == 32768
    sha = file_sha256(base)
    paths.calibration_dir().mkdir(parents=True, exist_ok=True)
    (paths.calibration_dir() / f"{sha[:32]}-abc.json").write_text(json.dumps({"threshold": 0.61, "created": 1.0}))
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF\x03\x00\x00\x00")  # ends inside the header
    models = {m["path"]: m for m in list_models([str(corrupt), str(tmp_path / "missing.gguf")])}
    tiny = models[str(base)]
    assert tiny["name"] == "Tiny base" and tiny["n_ctx_trained"] == 32768 and tiny["chat_template"] is False
    assert "completion format" in tiny["note"] and tiny["artifacts"] == [
        {"name": f"{sha[:32]}-abc.json", "kind": "user calibration", "created": 1.0, "figures": {"threshold": 0.61}}]
    assert "truncated" in models[str(corrupt)]["error"] and "ModelCorruptError" in models[str(corrupt)]["error"]
    assert "ModelNotFoundError" in models[str(tmp_path / "missing.gguf")]["error"]
    done = run_cli("models", "--json", str(corrupt), env={"EDGEROUTE_MODEL_DIR": str(folder)})
    listed = json.loads(done.stdout)
    assert done.returncode == 2 and any(m.get("name") == "Tiny base" for m in listed)  # the bad file fails the run
