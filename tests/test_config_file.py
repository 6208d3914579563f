"""The TOML config file in the user config directory: read, validated, and outranked by env and arguments."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeroute import ConfigError, Router
from edgeroute.testing import MockLocalModel


def write(text: str) -> Path:
    path = Path(os.environ["EDGEROUTE_CONFIG"])
    path.write_text(text)
    return path


def test_values_come_from_the_file_and_arguments_win():
    write("[router]\nthreshold = 0.7\nmax_tokens = 40\ncloud_url = \"http://file.test/v1\"\n")
    r = Router(local_model=MockLocalModel(), trace=False)
    assert r.config.threshold == 0.7 and r.config.max_tokens == 40 and r.config.cloud_url == "http://file.test/v1"
    assert r.threshold_source == "configured"
    r2 = Router(local_model=MockLocalModel(), trace=False, threshold=0.2)
    assert r2.config.threshold == 0.2 and r2.config.max_tokens == 40


def test_the_environment_wins_over_the_file(monkeypatch):
    write('cloud_url = "http://file.test/v1"\n')
    monkeypatch.setenv("EDGEROUTE_CLOUD_URL", "http://env.test/v1")
    assert Router(local_model=MockLocalModel(), trace=False).config.cloud_url == "http://env.test/v1"


def test_unknown_keys_and_broken_toml_are_config_errors_naming_the_file():
    path = write('threshhold = 0.7\n')
    with pytest.raises(ConfigError, match=f"{path.name}.*unknown key.*threshhold"):
        Router(local_model=MockLocalModel(), trace=False)
    write('threshold = \n')
    with pytest.raises(ConfigError, match="cannot read the config file"):
        Router(local_model=MockLocalModel(), trace=False)
    write('cloud_provider = "carrier-pigeon"\n')
    with pytest.raises(ConfigError, match="cloud_provider"):
        Router(local_model=MockLocalModel(), trace=False)
