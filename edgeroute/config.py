"""Router configuration: one validated dataclass; defaults come from ``_constants``."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from . import _constants as C
from ._errors import ConfigError


@dataclass(frozen=True)
class RouterConfig:
    """Everything a Router can be told. Times in seconds, lengths in tokens, probabilities in [0, 1].

    ``selfref`` loads the shipped Self-REF adapter (when it was trained on this model) and reports its confidence
    token's P(<CN>) as the ``selfref`` signal (one extra token of compute per answer). ``probe`` uses the shipped
    hidden-state probe (when it matches the model) for the confidence; ``pregen`` lets
    the pre-generation probe skip local generation below ``pregen_threshold`` (None: the probe's own) when the
    cloud can take the query. ``threshold`` None means: the calibration saved by ``edgeroute calibrate`` for this model if there is one,
    else ``DEFAULT_THRESHOLD``. ``energy_meters`` restricts the energy backends (e.g. ``("rapl",)`` or ``("estimate",)``; None: detect);
    ``energy_idle_w`` is the device's idle power in watts (readings become marginal); ``watts_per_core`` overrides
    the estimate's table. ``cloud_url`` / ``cloud_model`` default to ``$EDGEROUTE_CLOUD_URL`` / ``$EDGEROUTE_CLOUD_MODEL``; the API key
    is read only from the environment variable named by ``cloud_api_key_env``.

    ``routing`` ``"linucb"`` turns on the online policy: ``preset`` names the lambdas of its reward (``balanced``,
    ``battery-saver``, ``quality-first``, ``cost-saver``), ``lambda_energy`` / ``lambda_latency`` / ``lambda_cost``
    override them; ``cloud_price_per_1k_usd`` (US$ per 1,000 cloud tokens) prices cloud answers;
    ``cloud_quality_prior`` is the quality credited to a cloud answer without feedback (a negative value: none, wait
    for feedback); ``allow_below_threshold`` lets it accept local answers below the calibrated threshold.
    """

    model: Optional[str] = None
    n_ctx: int = C.DEFAULT_N_CTX_TOKENS
    n_threads: Optional[int] = None
    max_tokens: int = C.DEFAULT_MAX_TOKENS
    temperature: float = C.DEFAULT_TEMPERATURE
    hidden_states: bool = True
    probe: bool = True
    selfref: bool = False
    pregen: bool = True
    pregen_threshold: Optional[float] = None
    threshold: Optional[float] = None
    on_unknown: str = "escalate"
    local_only: bool = False
    cloud_provider: str = "openai"
    cloud_url: Optional[str] = None
    cloud_model: Optional[str] = None
    cloud_api_key_env: str = C.ENV_CLOUD_API_KEY
    connect_timeout_s: float = C.DEFAULT_CONNECT_TIMEOUT_S
    read_timeout_s: float = C.DEFAULT_READ_TIMEOUT_S
    cloud_required: bool = False
    cloud_max_retries: int = C.DEFAULT_CLOUD_MAX_RETRIES
    cloud_deadline_s: float = C.DEFAULT_CLOUD_DEADLINE_S
    trace: bool = True
    trace_path: Optional[str] = None
    store_prompts: bool = False
    privacy_detect: bool = True
    privacy_kinds: Optional[tuple[str, ...]] = None
    energy: bool = True
    energy_meters: Optional[tuple[str, ...]] = None
    energy_idle_w: Optional[float] = None
    watts_per_core: Optional[float] = None
    routing: str = "threshold"
    preset: str = C.DEFAULT_PRESET
    lambda_energy: Optional[float] = None
    lambda_latency: Optional[float] = None
    lambda_cost: Optional[float] = None
    cloud_price_per_1k_usd: float = C.DEFAULT_CLOUD_PRICE_PER_1K_USD
    cloud_quality_prior: float = C.DEFAULT_CLOUD_QUALITY_PRIOR
    allow_below_threshold: bool = False

    def __post_init__(self) -> None:
        if self.cloud_url is None and os.environ.get(C.ENV_CLOUD_URL):
            object.__setattr__(self, "cloud_url", os.environ[C.ENV_CLOUD_URL])
        if self.cloud_model is None:
            object.__setattr__(self, "cloud_model", os.environ.get(C.ENV_CLOUD_MODEL) or C.DEFAULT_CLOUD_MODEL)
        if self.privacy_kinds is not None and not isinstance(self.privacy_kinds, tuple):
            kinds = self.privacy_kinds
            object.__setattr__(self, "privacy_kinds", (kinds,) if isinstance(kinds, str) else tuple(kinds))
        if self.energy_meters is not None and not isinstance(self.energy_meters, tuple):
            meters = self.energy_meters
            object.__setattr__(self, "energy_meters", (meters,) if isinstance(meters, str) else tuple(meters))
        checks = [
            (self.n_ctx >= 64, f"n_ctx must be >= 64 tokens, got {self.n_ctx}"),
            (self.n_threads is None or self.n_threads >= 1, f"n_threads must be >= 1, got {self.n_threads}"),
            (self.max_tokens >= 1, f"max_tokens must be >= 1, got {self.max_tokens}"),
            (0.0 <= self.temperature <= 5.0, f"temperature must be in [0, 5], got {self.temperature}"),
            (
                self.threshold is None or 0.0 <= self.threshold <= 1.0,
                f"threshold must be in [0, 1], got {self.threshold}",
            ),
            (self.on_unknown in ("escalate", "accept"), f"on_unknown must be 'escalate' or 'accept'"),
            (self.connect_timeout_s > 0, f"connect_timeout_s must be > 0 seconds, got {self.connect_timeout_s}"),
            (self.read_timeout_s > 0, f"read_timeout_s must be > 0 seconds, got {self.read_timeout_s}"),
            (
                self.cloud_provider in ("openai", "anthropic"),
                f"cloud_provider must be 'openai' (any OpenAI-compatible server) or 'anthropic', "
                f"got {self.cloud_provider!r}",
            ),
            (self.cloud_max_retries >= 0, f"cloud_max_retries must be >= 0, got {self.cloud_max_retries}"),
            (self.cloud_deadline_s > 0, f"cloud_deadline_s must be > 0 seconds, got {self.cloud_deadline_s}"),
            (
                self.pregen_threshold is None or 0.0 <= self.pregen_threshold <= 1.0,
                f"pregen_threshold must be in [0, 1], got {self.pregen_threshold}",
            ),
            (
                self.energy_idle_w is None or self.energy_idle_w >= 0,
                f"energy_idle_w must be >= 0 watts, got {self.energy_idle_w}",
            ),
            (
                self.watts_per_core is None or self.watts_per_core > 0,
                f"watts_per_core must be > 0 watts, got {self.watts_per_core}",
            ),
            (self.routing in ("threshold", "linucb"), f"routing must be 'threshold' or 'linucb', got {self.routing!r}"),
            (self.preset in C.REWARD_PRESETS, f"preset must be one of {sorted(C.REWARD_PRESETS)}, got {self.preset!r}"),
            (
                all(v is None or v >= 0 for v in (self.lambda_energy, self.lambda_latency, self.lambda_cost)),
                "lambda_energy, lambda_latency and lambda_cost must be >= 0",
            ),
            (
                self.cloud_price_per_1k_usd >= 0,
                f"cloud_price_per_1k_usd must be >= 0 US$, got {self.cloud_price_per_1k_usd}",
            ),
            (self.cloud_quality_prior <= 1.0, f"cloud_quality_prior must be <= 1, got {self.cloud_quality_prior}"),
            (
                self.cloud_url is None or self.cloud_url.startswith(("http://", "https://")),
                f"cloud_url must start with http:// or https://, got {self.cloud_url!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "RouterConfig":
        """Like the constructor, but an unknown key is a ``ConfigError`` naming the valid ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ConfigError(f"unknown configuration key(s) {unknown}; valid keys: {sorted(known)}")
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "RouterConfig":
        return dataclasses.replace(self, **changes)


def config_path() -> Path:
    """``$EDGEROUTE_CONFIG`` or ``config.toml`` in the platform's user config directory for edgeroute."""
    env = os.environ.get(C.ENV_CONFIG)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_config_dir(C.APP_NAME)) / "config.toml"


def load_config_file(path: Optional[Path] = None) -> dict[str, Any]:
    """The ``RouterConfig`` keys set in the config file (empty when there is none).

    TOML, top-level keys or a ``[router]`` table, named like ``RouterConfig``'s fields; API keys do not belong
    there (only the name of the environment variable that holds one, ``cloud_api_key_env``). Precedence:
    arguments > environment (``$EDGEROUTE_CLOUD_URL``, ``$EDGEROUTE_CLOUD_MODEL``) > this file > defaults.
    """
    target = path or config_path()
    if not target.is_file():
        return {}
    try:
        data = tomllib.loads(target.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {target}: {exc}") from exc
    values = data.get("router", data)
    known = {f.name for f in dataclasses.fields(RouterConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{target}: unknown key(s) {unknown}; valid keys: {sorted(known)}")
    for var, key in ((C.ENV_CLOUD_URL, "cloud_url"), (C.ENV_CLOUD_MODEL, "cloud_model")):
        if os.environ.get(var):
            values.pop(key, None)  # the environment wins over the file
    return dict(values)
