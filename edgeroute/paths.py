"""Every file location of edgeroute, in one place (platformdirs, each overridable by an environment variable).

=================  =======================================  ===========================
what               default (Linux shown)                    override
=================  =======================================  ===========================
config file        ~/.config/edgeroute/config.toml          ``$EDGEROUTE_CONFIG``
data               ~/.local/share/edgeroute                 ``$EDGEROUTE_DATA_DIR``
traces             <data>/traces.sqlite3                    ``trace_path``
calibrations       <data>/calibrations                      (under data)
fitted artifacts   <data>/fitted/<model sha256>             (under data)
start-up memo      <data>/memo.json                         (under data)
models             ~/.local/share/edgeroute/models          ``$EDGEROUTE_MODEL_DIR``
bench answer cache ~/.cache/edgeroute/bench                 ``$EDGEROUTE_CACHE_DIR``
=================  =======================================  ===========================
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from ._constants import APP_NAME, ENV_CACHE_DIR, ENV_CONFIG, ENV_DATA_DIR, ENV_MODEL_DIR, TRACE_DB_NAME


def _env_or(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path(default)


def config_file() -> Path:
    """The TOML config file."""
    return _env_or(ENV_CONFIG, str(Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"))


def data_dir() -> Path:
    """Traces, calibrations and fitted artifacts live here."""
    return _env_or(ENV_DATA_DIR, platformdirs.user_data_dir(APP_NAME))


def trace_db() -> Path:
    """The default SQLite trace store."""
    return data_dir() / TRACE_DB_NAME


def calibration_dir() -> Path:
    """Calibrations saved by ``edgeroute calibrate``."""
    return data_dir() / "calibrations"


def fitted_dir(model_sha256: str) -> Path:
    """Artifacts fitted for one local model, keyed by its file's SHA-256."""
    return data_dir() / "fitted" / model_sha256


def memo_file() -> Path:
    """Start-up memo (model file hashes, engine golden measurements): ``local.memo``."""
    return data_dir() / "memo.json"


def model_dir() -> Path:
    """User-installed GGUF models."""
    return _env_or(ENV_MODEL_DIR, str(Path(platformdirs.user_data_dir(APP_NAME)) / "models"))


def bench_cache_dir() -> Path:
    """The bench's resumable answer cache (regenerable)."""
    return _env_or(ENV_CACHE_DIR, str(Path(platformdirs.user_cache_dir(APP_NAME)) / "bench"))


__all__ = ["bench_cache_dir", "calibration_dir", "config_file", "data_dir", "fitted_dir", "memo_file", "model_dir", "trace_db"]
