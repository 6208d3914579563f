"""A real OpenAI-compatible cloud stand-in on 127.0.0.1: ``python -m llama_cpp.server`` (the ``[server]`` extra)
serving a local GGUF (the default model unless told otherwise).

``edgeroute bench policy`` replays against it by default, so the cloud's accuracy, latency and tokens in the replay
are measured on a real HTTP endpoint, not assumed (it is a small model: its accuracy is what it is, and the report
says which cloud it was); the test suite uses it as its cloud.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import httpx

from .._errors import CloudUnreachableError

#: The model name the stand-in answers to.
STAND_IN_MODEL = "stand-in-cloud"


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandInServer:
    """A real ``python -m llama_cpp.server`` on 127.0.0.1, serving ``model_path`` (default: the default model).
    ``start`` waits until it answers; ``stop`` ends it; also a context manager."""

    def __init__(self, model_path: Optional[Path] = None) -> None:
        from ..local.llama import cpu_has_amx
        from ..local.resolve import default_model_path

        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.model_path = model_path or default_model_path()
        self._amx = cpu_has_amx()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the server and wait until it answers; ``CloudUnreachableError`` when it cannot (the ``[server]``
        extra missing, the process exiting, or no answer within ``timeout_s`` seconds)."""
        missing = [m for m in ("llama_cpp.server", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings",
                               "starlette_context") if not _importable(m)]
        if missing:
            raise CloudUnreachableError(
                f"the loopback cloud stand-in needs llama-cpp-python's server ({', '.join(missing)} missing): "
                "pip install 'edgeroute[server]', or measure another endpoint (--cloud-url) or state a profile "
                "(--cloud-profile)")
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
             "--port", str(self.port), "--n_ctx", "8192", "--model_alias", STAND_IN_MODEL, "--verbose", "False"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.seek(0)
                err = self._log.read().decode(errors="replace")
                raise CloudUnreachableError(f"llama_cpp.server exited with {self.proc.returncode}: {err[-2000:]}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise CloudUnreachableError(f"llama_cpp.server did not answer within {timeout_s:g} s")

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

    def __enter__(self) -> "StandInServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["STAND_IN_MODEL", "StandInServer", "free_port"]
