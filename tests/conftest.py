"""Shared fixtures. Real components by default; mocks only where a test injects a fault."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """A real ``python -m llama_cpp.server`` on 127.0.0.1, serving the default model."""

    def __init__(self) -> None:
        from edgeroute.local.llama import cpu_has_amx
        from edgeroute.local.resolve import default_model_path

        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.model_path = default_model_path()
        self._amx = cpu_has_amx()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()

    def start(self, timeout_s: float = 60.0) -> None:
        # The server process gets the same AMX guard as the engine (see LlamaCppModel.extra_buffers).
        code = (
            "import sys, runpy\n"
            "from edgeroute.local.llama import _native_params\n"
            f"with _native_params({not self._amx}):\n"
            "    sys.argv = ['llama_cpp.server'] + sys.argv[1:]\n"
            "    runpy.run_module('llama_cpp.server', run_name='__main__')\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "--model", str(self.model_path), "--host", "127.0.0.1",
             "--port", str(self.port), "--n_ctx", "2048", "--model_alias", "stand-in-cloud", "--verbose", "False"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.seek(0)
                err = self._log.read().decode(errors="replace")
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}: {err[-2000:]}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("llama_cpp.server did not come up")

    def requests(self, path: str = "/v1/chat/completions") -> int:
        """How many POSTs to ``path`` the server has answered so far (from its access log)."""
        fd = self._log.fileno()  # shared with the server process: read without moving its offset
        text = os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")
        return text.count(f'"POST {path} HTTP')

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


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
