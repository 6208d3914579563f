"""Third-party plugins: a real wheel with entry points in all four groups, installed by pip into a directory,
then used by a Router in a fresh interpreter (registries are process-wide)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from edgeroute import ConfigError, RouterConfig
from edgeroute.registry import METERS, POLICIES, PROVIDERS, SIGNALS, Registry

PLUGIN_CODE = '''
"""A tiny edgeroute plugin: one provider, one signal, one meter and one policy."""
from edgeroute.cloud.base import CloudAnswer, CloudBackend
from edgeroute.policy.base import Decision
from edgeroute.policy.threshold import ThresholdPolicy
from edgeroute.signals.base import Signal
from edgeroute.testing import ReplayEnergyMeter


class EchoCloud(CloudBackend):
    name = "echo-cloud"

    def __init__(self, model):
        self.model = model

    def complete(self, messages, *, max_tokens, temperature=0.0, timeout_s=None):
        return CloudAnswer("echo: " + messages[-1]["content"], self.model, 3, 2, 0.0)


def make_cloud(config):
    return EchoCloud(config.cloud_model)


class AnswerLength(Signal):
    name = "answer-length"

    def features(self, generation, messages):
        return {"plugin_answer_chars": float(len(generation.text))}

    def score(self, values, messages):
        return {}


class Metered(ReplayEnergyMeter):
    name = "plugin-meter"

    def __init__(self):
        super().__init__([0.0, 2.5], method="counter", scope="plugin")


class AlwaysCloud(ThresholdPolicy):
    def judge(self, answer_id, situation):
        return Decision(True, "plugin policy: always the cloud")


def always_cloud(threshold, config, *, store=None, model_key=""):
    return AlwaysCloud(threshold, config.on_unknown)
'''

ENTRY_POINTS = """\
[edgeroute.providers]
echo-cloud = edgeroute_demo_plugin:make_cloud

[edgeroute.signals]
answer-length = edgeroute_demo_plugin:AnswerLength.from_model

[edgeroute.meters]
plugin-meter = edgeroute_demo_plugin:Metered

[edgeroute.policies]
always-cloud = edgeroute_demo_plugin:always_cloud
"""


def build_wheel(folder: Path) -> Path:
    """edgeroute_demo_plugin-0.1-py3-none-any.whl, written as a wheel is (dist-info with entry_points.txt and a
    RECORD of hashes), so pip installs it exactly as it would one from PyPI."""
    dist = "edgeroute_demo_plugin-0.1.dist-info"
    files = {
        "edgeroute_demo_plugin/__init__.py": PLUGIN_CODE,
        f"{dist}/METADATA": "Metadata-Version: 2.1\nName: edgeroute-demo-plugin\nVersion: 0.1\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: edgeroute-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": ENTRY_POINTS,
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    wheel = folder / "edgeroute_demo_plugin-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return wheel


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plugin")
    target = folder / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--disable-pip-version-check", "--target", str(target), str(build_wheel(folder))],
                   check=True, capture_output=True, timeout=120)
    assert (target / "edgeroute_demo_plugin-0.1.dist-info" / "entry_points.txt").is_file()
    return target


def run_with_plugin(site: Path, code: str, tmp_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "EDGEROUTE_DATA_DIR": str(tmp_path / "data"), "EDGEROUTE_CONFIG": str(tmp_path / "none.toml")}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_installed_plugin_fills_all_four_registries_and_a_router_uses_it(plugin_site, tmp_path):
    got = run_with_plugin(plugin_site, """
        import json
        from edgeroute import Router
        from edgeroute.registry import METERS, POLICIES, PROVIDERS, SIGNALS
        from edgeroute.testing import MockLocalModel

        r = Router(local_model=MockLocalModel(), cloud_url="http://echo.localhost/v1", cloud_provider="echo-cloud",
                   routing="always-cloud", signal_names=("tokens", "answer-length"), energy_meters=("plugin-meter",),
                   trace=False)
        a = r.ask("Capital of France?")
        print(json.dumps({"text": a.text, "route": a.route, "reason": a.reason, "signals": a.signals,
                          "energy_source": a.energy.local.source, "cloud": type(r.cloud).__name__,
                          "names": [PROVIDERS.names(), SIGNALS.names(), METERS.names(), POLICIES.names()],
                          "source": PROVIDERS.source("echo-cloud")}))
    """, tmp_path)
    assert got["route"] == "cloud" and got["text"] == "echo: Capital of France?"
    assert got["reason"] == "escalated: plugin policy: always the cloud"
    assert got["signals"]["plugin_answer_chars"] == len("Capital of France?")
    assert "plugin-meter" in got["energy_source"]
    assert got["cloud"] == "CircuitBreaker"  # a plugin's backend gets the retry loop and the breaker too
    assert [n[-1] for n in got["names"]] == ["echo-cloud", "answer-length", "plugin-meter", "always-cloud"]
    assert got["source"] == "plugin edgeroute-demo-plugin"


def test_configuration_is_validated_against_the_registries_plugins_included(plugin_site, tmp_path):
    got = run_with_plugin(plugin_site, """
        import json
        from edgeroute import ConfigError, RouterConfig
        RouterConfig(cloud_provider="echo-cloud", routing="always-cloud")
        try:
            RouterConfig(cloud_provider="carrier-pigeon")
        except ConfigError as exc:
            print(json.dumps({"error": str(exc)}))
    """, tmp_path)
    assert "cloud_provider: unknown cloud provider 'carrier-pigeon'" in got["error"]
    assert "echo-cloud" in got["error"]


def test_without_the_plugin_its_names_are_config_errors_naming_the_built_ins():
    for key, value in (("cloud_provider", "echo-cloud"), ("routing", "always-cloud"),
                       ("energy_meters", ("plugin-meter",)), ("signal_names", ("answer-length",))):
        with pytest.raises(ConfigError, match=f"{key}: unknown .*known: \\["):
            RouterConfig(**{key: value})
    assert PROVIDERS.names()[:2] == ["openai", "anthropic"] and POLICIES.names()[:2] == ["threshold", "linucb"]
    assert "rapl" in METERS and "probe" in SIGNALS


def test_a_broken_plugin_is_a_config_error_and_registries_are_lazy(monkeypatch):
    from importlib import metadata

    reg = Registry("edgeroute.test-group", "widget", {"builtin": "json:dumps"})
    scans = []
    real = metadata.entry_points

    def counting(**kw):
        scans.append(kw)
        return real(**kw)

    monkeypatch.setattr(metadata, "entry_points", counting)
    assert reg.get("builtin") is json.dumps and "builtin" in reg
    assert scans == []  # a built-in name never scans the installed packages
    broken = metadata.EntryPoint("bad", "no_such_module_anywhere:thing", "edgeroute.test-group")
    reg._plugins = {"bad": broken}
    with pytest.raises(ConfigError, match="widget plugin 'bad'.*failed to load.*ModuleNotFoundError"):
        reg.get("bad")
    reg.register("mine", len)
    assert reg.get("mine") is len and reg.source("mine") == "registered"
