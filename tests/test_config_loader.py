"""The one configuration path: defaults < config file < environment < arguments, each value checked against its
field's type, a wrong one a ConfigError naming the key and where it came from."""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from pathlib import Path

import pytest

from edgeroute import ConfigError, Router, RouterConfig
from edgeroute.config import RouterOptions, load_config
from edgeroute.testing import MockLocalModel


def write(text: str) -> Path:
    path = Path(os.environ["EDGEROUTE_CONFIG"])
    path.write_text(text)
    return path


def test_precedence_is_defaults_then_file_then_environment_then_arguments(monkeypatch):
    assert load_config().max_tokens == RouterConfig().max_tokens
    write("max_tokens = 40\nn_ctx = 1024\ntemperature = 0\n")
    assert load_config().max_tokens == 40
    monkeypatch.setenv("EDGEROUTE_MAX_TOKENS", "50")
    cfg = load_config()
    assert (cfg.max_tokens, cfg.n_ctx) == (50, 1024) and cfg.temperature == 0.0
    assert isinstance(cfg.temperature, float)  # a TOML integer for a float field is widened
    assert load_config({"max_tokens": 60}).max_tokens == 60
    r = Router(local_model=MockLocalModel(), trace=False)
    assert r.config.max_tokens == 50 and r.config.n_ctx == 1024


def test_environment_strings_are_parsed_by_the_field_type(monkeypatch):
    monkeypatch.setenv("EDGEROUTE_TRACE", "false")
    monkeypatch.setenv("EDGEROUTE_ENERGY_METERS", "rapl, estimate")
    monkeypatch.setenv("EDGEROUTE_THRESHOLD", "0.25")
    monkeypatch.setenv("EDGEROUTE_PREGEN_THRESHOLD", "none")
    monkeypatch.setenv("EDGEROUTE_CLOUD_URL", "")  # set but empty: ignored
    cfg = load_config()
    assert cfg.trace is False and cfg.energy_meters == ("rapl", "estimate") and cfg.threshold == 0.25
    assert cfg.pregen_threshold is None and cfg.cloud_url is None


def test_a_toml_string_for_an_integer_is_a_config_error_naming_key_and_file():
    path = write('n_ctx = "2048"\n')
    with pytest.raises(ConfigError, match=rf"n_ctx: expected an integer, got '2048' \(str, from config file .*{path.name}\)"):
        Router(local_model=MockLocalModel(), trace=False)
    write("trace = 1\n")
    with pytest.raises(ConfigError, match="trace: expected true or false, got 1"):
        load_config()
    write('energy_meters = [1, 2]\n')
    with pytest.raises(ConfigError, match="energy_meters: expected a list of strings"):
        load_config()
    write('[router]\nthreshold = "high"\n')
    with pytest.raises(ConfigError, match="threshold: expected a number, got 'high'"):
        load_config()


def test_a_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("EDGEROUTE_N_CTX", "lots")
    with pytest.raises(ConfigError, match=r"n_ctx: expected an integer, got 'lots' \(str, from \$EDGEROUTE_N_CTX\)"):
        load_config()
    monkeypatch.setenv("EDGEROUTE_N_CTX", "16")
    with pytest.raises(ConfigError, match="n_ctx must be >= 64"):
        load_config()


def test_arguments_of_the_wrong_type_are_config_errors_not_type_errors():
    with pytest.raises(ConfigError, match=r"n_ctx: expected an integer, got '2048' \(str, from argument\)"):
        Router(local_model=MockLocalModel(), trace=False, n_ctx="2048")
    with pytest.raises(ConfigError, match="max_tokens: expected an integer, got True"):
        RouterConfig(max_tokens=True)
    with pytest.raises(ConfigError, match="argument: unknown key"):
        Router(local_model=MockLocalModel(), trace=False, thresold=0.3)
    with pytest.raises(ConfigError, match="unknown key"):
        RouterConfig().replace(nope=1)


def test_the_config_is_a_plain_value_that_does_not_read_the_environment(monkeypatch):
    monkeypatch.setenv("EDGEROUTE_CLOUD_URL", "http://env.test/v1")
    assert RouterConfig().cloud_url is None  # only load_config reads the environment
    assert load_config().cloud_url == "http://env.test/v1"
    cfg = RouterConfig(max_tokens=7)
    assert load_config({"n_ctx": 512}, base=cfg) == RouterConfig(max_tokens=7, n_ctx=512)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.max_tokens = 8  # type: ignore[misc]


def test_router_options_list_every_config_field_with_its_type():
    hints = typing.get_type_hints(RouterConfig)
    options = typing.get_type_hints(RouterOptions)
    assert options == hints
    assert RouterOptions.__total__ is False


def test_toml_comes_from_tomli_before_python_3_11():
    import edgeroute.config as config

    assert config.tomllib.__name__ == ("tomllib" if sys.version_info >= (3, 11) else "tomli")
    write("[router]\nmax_tokens = 12\n")
    assert load_config().max_tokens == 12
