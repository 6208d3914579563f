"""Shared fixtures. Real components by default; mocks only where a test injects a fault."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeroute.bench.standin import StandInServer as LlamaServer  # the loopback cloud stand-in


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep traces and user models of every test in its own tmp dir; no cloud from the environment."""
    monkeypatch.setenv("EDGEROUTE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EDGEROUTE_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("EDGEROUTE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGEROUTE_CONFIG", str(tmp_path / "config.toml"))  # none unless a test writes one
    from dataclasses import fields

    from edgeroute import RouterConfig

    for var in ["EDGEROUTE_CLOUD_API_KEY", *(f"EDGEROUTE_{f.name.upper()}" for f in fields(RouterConfig))]:
        monkeypatch.delenv(var, raising=False)  # every configuration key can come from the environment


@pytest.fixture(scope="session")
def real_model():
    """The default GGUF, loaded once per test session (the engine serialises callers itself)."""
    from edgeroute.local.llama import LlamaCppModel

    model = LlamaCppModel()
    yield model
    model.close()


@pytest.fixture()
def llama_server() -> Iterator[LlamaServer]:
    server = LlamaServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeroute", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
