"""Every script in examples/ runs as it is."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=180)


def test_quickstart():
    proc = run("quickstart.py")
    assert proc.returncode == 0, proc.stderr
    assert "route=local" in proc.stdout and "feedback stored" in proc.stdout
    assert "J estimated via estimate:" in proc.stdout and "J per output token" in proc.stdout


def test_offline_fallback():
    proc = run("offline_fallback.py")
    assert proc.returncode == 0, proc.stderr
    assert "route=local-offline" in proc.stdout and "CloudUnreachableError" in proc.stdout
