"""Router configuration: one checked value (``RouterConfig``) and the one loader (``load_config``); defaults come
from ``_constants``."""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from . import _constants as C
from . import paths
from ._errors import ConfigError


@dataclass(frozen=True)
class RouterConfig:
    """Everything a Router can be told. Times in seconds, lengths in tokens, probabilities in [0, 1].

    ``selfref`` loads the shipped Self-REF adapter (when it was trained on this model) and reports its confidence
    token's P(<CN>) as the ``selfref`` signal (one extra token of compute per answer). ``probe`` uses the shipped
    hidden-state probe (when it matches the model) for the confidence; ``pregen`` lets
    the pre-generation probe skip local generation below ``pregen_threshold`` (None: the probe's own) when the
    cloud can take the query; ``handoff`` stops a local decode whose prefix looks hopeless and hands it to the cloud
    (``signals.prefix``; only with a calibration that carries a handoff rule, never offline or for private prompts).
    ``threshold`` None means: the calibration saved by ``edgeroute calibrate`` for this model if there is one,
    else ``DEFAULT_THRESHOLD``. ``energy_meters`` restricts the energy backends (e.g. ``("rapl",)`` or ``("estimate",)``; None: detect);
    ``prompt_format`` "auto" uses the GGUF's chat template, or for a GGUF without one (a base model) the completion
    format ``Question: ...\nAnswer:`` with stops (``local.chat_format``). ``n_threads`` "auto" (default) chooses the decode threads from the load before each answer
    (``local.threads``); a count fixes it. ``energy_idle_w`` is the device's idle power in watts (readings become marginal); ``watts_per_core`` overrides
    the estimate's table. The API key is read only from the
    environment variable named by ``cloud_api_key_env``. ``cloud_provider``, ``routing``, ``energy_meters`` and
    ``signal_names`` (None: the default set) name entries of the registries in ``edgeroute.registry``, built-in or
    plugins. ``cloud_resilience`` wraps every cloud backend, built-in or passed in, in the retry loop and the
    circuit breaker (False: call it as it is). ``privacy_detectors`` adds detectors from the registry to the
    built-in one. ``cloud_budget_usd_per_day`` and ``cloud_requests_per_minute`` are hard caps on cloud use, held
    across processes in the trace store (past one, answers stay local and say so). ``cloud_token_command`` is a
    command that prints a fresh bearer token (or JSON ``{"token", "expires_in"}``), run when the token is needed.

    ``n_ctx`` None (default) sizes the local window to the model's trained context within ``ctx_memory_mib`` MiB
    (``local.context_size``). ``history`` names how a conversation longer than the window is fitted to it
    (``registry.HISTORY``: ``latest`` keeps the system prompt and the newest turns, ``summarize`` also summarises the
    rest locally); the answer is flagged ``history_cut``. In a conversation (``Router.conversation``, or a
    conversation id in ``serve``), after an escalation the next ``sticky_turns`` turns go straight to the cloud,
    unless the pre-generation probe's P(correct) reaches ``sticky_release`` (None: the threshold in force). A prompt
    whose prefill would take over ``prefill_budget_s`` seconds here (estimated from the prefill speed measured on
    this device) goes straight to the cloud when the cloud can take it (None: never).

    A plain value: ``load_config`` builds one from defaults, the config file, the environment and arguments.

    ``routing`` ``"linucb"`` turns on the online policy: ``preset`` names the lambdas of its reward (``balanced``,
    ``battery-saver``, ``quality-first``, ``cost-saver``), ``lambda_energy`` / ``lambda_latency`` / ``lambda_cost``
    override them; ``cloud_price_per_1k_usd`` (US$ per 1,000 cloud tokens) prices cloud answers;
    ``cloud_quality_prior`` is the quality credited to a cloud answer without feedback (a negative value: none, wait
    for feedback); ``allow_below_threshold`` lets it accept local answers below the calibrated threshold.
    ``energy_scope`` is the energy its reward counts: ``both`` (default: this device plus the cloud's datacenter
    estimate, ``energy.cloud``) or ``device`` (this device only). ``cloud_energy_class`` (``frontier``, ``medium``,
    ``small``; None: guessed from ``cloud_model``) picks the estimate's row (``energy.cloud``);
    ``cloud_energy_j_per_output_token`` / ``cloud_energy_j_per_input_token`` replace its rates.

    ``audit_rate`` (default 0: off) sends that share of accepted local answers to the cloud too, in the background,
    to measure the error rate among accepted answers on this device's traffic (``edgeroute.risk``), within
    ``audit_budget_per_day`` calls and ``audit_budget_usd_per_day`` US$; ``audit_judge_prompt`` (with ``{question}``,
    ``{answer}``, ``{reference}``) asks the cloud to judge free-text answers the grader cannot. ``risk_epsilon`` /
    ``risk_delta``: the accepted-answer error to hold and its error probability (None: the calibration's, in
    selective mode, else 0.1 / 0.05); ``risk_control`` lets the measured bound move the threshold.
    """

    model: Optional[str] = None
    n_ctx: Optional[int] = None
    ctx_memory_mib: int = C.DEFAULT_CTX_MEMORY_MIB
    history: str = C.DEFAULT_HISTORY_STRATEGY
    sticky_turns: int = C.DEFAULT_STICKY_TURNS
    sticky_release: Optional[float] = C.DEFAULT_STICKY_RELEASE
    prefill_budget_s: Optional[float] = C.DEFAULT_PREFILL_BUDGET_S
    n_threads: Union[int, str] = "auto"
    max_tokens: int = C.DEFAULT_MAX_TOKENS
    temperature: float = C.DEFAULT_TEMPERATURE
    hidden_states: bool = True
    prompt_format: str = "auto"
    probe: bool = True
    signal_names: Optional[tuple[str, ...]] = None
    selfref: bool = False
    pregen: bool = True
    pregen_threshold: Optional[float] = None
    handoff: bool = True
    threshold: Optional[float] = None
    on_unknown: str = "escalate"
    local_only: bool = False
    cloud_provider: str = "openai"
    cloud_url: Optional[str] = None
    cloud_model: Optional[str] = None  # None: DEFAULT_CLOUD_MODEL
    cloud_api_key_env: str = C.ENV_CLOUD_API_KEY
    connect_timeout_s: float = C.DEFAULT_CONNECT_TIMEOUT_S
    read_timeout_s: float = C.DEFAULT_READ_TIMEOUT_S
    cloud_required: bool = False
    cloud_max_retries: int = C.DEFAULT_CLOUD_MAX_RETRIES
    cloud_deadline_s: float = C.DEFAULT_CLOUD_DEADLINE_S
    cloud_resilience: bool = True
    trace: bool = True
    trace_path: Optional[str] = None
    store_prompts: bool = False
    privacy_detect: bool = True
    privacy_kinds: Optional[tuple[str, ...]] = None
    privacy_detectors: tuple[str, ...] = ()
    cloud_budget_usd_per_day: Optional[float] = None
    cloud_requests_per_minute: Optional[int] = None
    cloud_token_command: Optional[str] = None
    energy: bool = True
    energy_meters: Optional[tuple[str, ...]] = None
    energy_idle_w: Optional[float] = None
    watts_per_core: Optional[float] = None
    cloud_energy_class: Optional[str] = None
    cloud_energy_j_per_output_token: Optional[float] = None
    cloud_energy_j_per_input_token: Optional[float] = None
    energy_scope: str = C.DEFAULT_ENERGY_SCOPE
    routing: str = "threshold"
    preset: str = C.DEFAULT_PRESET
    lambda_energy: Optional[float] = None
    lambda_latency: Optional[float] = None
    lambda_cost: Optional[float] = None
    cloud_price_per_1k_usd: float = C.DEFAULT_CLOUD_PRICE_PER_1K_USD
    cloud_quality_prior: float = C.DEFAULT_CLOUD_QUALITY_PRIOR
    allow_below_threshold: bool = False
    audit_rate: float = 0.0
    audit_budget_per_day: Optional[int] = C.DEFAULT_AUDIT_BUDGET_PER_DAY
    audit_budget_usd_per_day: Optional[float] = None
    audit_judge_prompt: Optional[str] = None
    risk_epsilon: Optional[float] = None
    risk_delta: Optional[float] = None
    risk_control: bool = True

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            converted = _check(f.name, value, _hints()[f.name], "argument", from_text=False)
            if converted is not value:
                object.__setattr__(self, f.name, converted)
        if self.cloud_model is None:
            object.__setattr__(self, "cloud_model", C.DEFAULT_CLOUD_MODEL)
        checks = [
            (self.n_ctx is None or self.n_ctx >= 64, f"n_ctx must be >= 64 tokens, got {self.n_ctx}"),
            (self.ctx_memory_mib >= 16, f"ctx_memory_mib must be >= 16 MiB, got {self.ctx_memory_mib}"),
            (self.prefill_budget_s is None or self.prefill_budget_s > 0,
             f"prefill_budget_s must be > 0 seconds, got {self.prefill_budget_s}"),
            (self.sticky_turns >= 0, f"sticky_turns must be >= 0 turns, got {self.sticky_turns}"),
            (self.sticky_release is None or 0.0 <= self.sticky_release <= 1.0,
             f"sticky_release must be in [0, 1], got {self.sticky_release}"),
            (self.n_threads == "auto" or (isinstance(self.n_threads, int) and self.n_threads >= 1),
             f"n_threads must be 'auto' or a count >= 1, got {self.n_threads!r}"),
            (self.max_tokens >= 1, f"max_tokens must be >= 1, got {self.max_tokens}"),
            (0.0 <= self.temperature <= 5.0, f"temperature must be in [0, 5], got {self.temperature}"),
            (
                self.threshold is None or 0.0 <= self.threshold <= 1.0,
                f"threshold must be in [0, 1], got {self.threshold}",
            ),
            (self.on_unknown in ("escalate", "accept"), "on_unknown must be 'escalate' or 'accept'"),
            (self.prompt_format in ("auto", "chat", "completion"),
             f"prompt_format must be 'auto', 'chat' or 'completion', got {self.prompt_format!r}"),
            (self.connect_timeout_s > 0, f"connect_timeout_s must be > 0 seconds, got {self.connect_timeout_s}"),
            (self.read_timeout_s > 0, f"read_timeout_s must be > 0 seconds, got {self.read_timeout_s}"),
            (self.cloud_max_retries >= 0, f"cloud_max_retries must be >= 0, got {self.cloud_max_retries}"),
            (self.cloud_deadline_s > 0, f"cloud_deadline_s must be > 0 seconds, got {self.cloud_deadline_s}"),
            (self.cloud_budget_usd_per_day is None or self.cloud_budget_usd_per_day >= 0,
             f"cloud_budget_usd_per_day must be >= 0 US$, got {self.cloud_budget_usd_per_day}"),
            (self.cloud_requests_per_minute is None or self.cloud_requests_per_minute >= 0,
             f"cloud_requests_per_minute must be >= 0, got {self.cloud_requests_per_minute}"),
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
            (self.preset in C.REWARD_PRESETS, f"preset must be one of {sorted(C.REWARD_PRESETS)}, got {self.preset!r}"),
            (
                all(v is None or v >= 0 for v in (self.lambda_energy, self.lambda_latency, self.lambda_cost)),
                "lambda_energy, lambda_latency and lambda_cost must be >= 0",
            ),
            (
                self.cloud_price_per_1k_usd >= 0,
                f"cloud_price_per_1k_usd must be >= 0 US$, got {self.cloud_price_per_1k_usd}",
            ),
            (self.cloud_energy_class in (None, *C.CLOUD_ENERGY_CLASSES),
             f"cloud_energy_class must be one of {', '.join(C.CLOUD_ENERGY_CLASSES)}, got {self.cloud_energy_class!r}"),
            (all(v is None or v >= 0 for v in (self.cloud_energy_j_per_output_token,
                                                 self.cloud_energy_j_per_input_token)),
             "cloud_energy_j_per_output_token and cloud_energy_j_per_input_token must be >= 0 J"),
            (self.energy_scope in C.ENERGY_SCOPES,
             f"energy_scope must be one of {', '.join(C.ENERGY_SCOPES)}, got {self.energy_scope!r}"),
            (self.cloud_quality_prior <= 1.0, f"cloud_quality_prior must be <= 1, got {self.cloud_quality_prior}"),
            (0.0 <= self.audit_rate <= 1.0, f"audit_rate must be in [0, 1], got {self.audit_rate}"),
            (self.audit_budget_per_day is None or self.audit_budget_per_day >= 0,
             f"audit_budget_per_day must be >= 0 calls, got {self.audit_budget_per_day}"),
            (self.audit_budget_usd_per_day is None or self.audit_budget_usd_per_day >= 0,
             f"audit_budget_usd_per_day must be >= 0 US$, got {self.audit_budget_usd_per_day}"),
            (self.risk_epsilon is None or 0.0 < self.risk_epsilon < 1.0,
             f"risk_epsilon must be in (0, 1), got {self.risk_epsilon}"),
            (self.risk_delta is None or 0.0 < self.risk_delta < 1.0,
             f"risk_delta must be in (0, 1), got {self.risk_delta}"),
            (self.audit_judge_prompt is None or _template_ok(self.audit_judge_prompt),
             "audit_judge_prompt must be a template using only {question}, {answer} and {reference}"),
            (
                self.cloud_url is None or self.cloud_url.startswith(("http://", "https://")),
                f"cloud_url must start with http:// or https://, got {self.cloud_url!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        from .registry import DETECTORS, HISTORY, METERS, POLICIES, PROVIDERS, SIGNALS

        PROVIDERS.check(self.cloud_provider, "cloud_provider")
        POLICIES.check(self.routing, "routing")
        HISTORY.check(self.history, "history")
        for name in self.energy_meters or ():
            METERS.check(name, "energy_meters")
        for name in self.signal_names or ():
            SIGNALS.check(name, "signal_names")
        for name in self.privacy_detectors:
            DETECTORS.check(name, "privacy_detectors")

    def replace(self, **changes: Any) -> "RouterConfig":
        """A copy with ``changes`` (checked like arguments; an unknown key is a ``ConfigError``)."""
        _known(changes, "argument")
        return dataclasses.replace(self, **changes)


class RouterOptions(typing.TypedDict, total=False):
    """The keyword arguments of ``Router(...)``: every ``RouterConfig`` field, so editors complete them
    (``**options: Unpack[RouterOptions]``). A test keeps the two in step."""

    model: Optional[str]
    n_ctx: Optional[int]
    ctx_memory_mib: int
    history: str
    sticky_turns: int
    sticky_release: Optional[float]
    prefill_budget_s: Optional[float]
    n_threads: Union[int, str]
    max_tokens: int
    temperature: float
    hidden_states: bool
    prompt_format: str
    probe: bool
    signal_names: Optional[tuple[str, ...]]
    selfref: bool
    pregen: bool
    pregen_threshold: Optional[float]
    handoff: bool
    threshold: Optional[float]
    on_unknown: str
    local_only: bool
    cloud_provider: str
    cloud_url: Optional[str]
    cloud_model: Optional[str]
    cloud_api_key_env: str
    connect_timeout_s: float
    read_timeout_s: float
    cloud_required: bool
    cloud_max_retries: int
    cloud_deadline_s: float
    cloud_resilience: bool
    trace: bool
    trace_path: Optional[str]
    store_prompts: bool
    privacy_detect: bool
    privacy_kinds: Optional[tuple[str, ...]]
    privacy_detectors: tuple[str, ...]
    cloud_budget_usd_per_day: Optional[float]
    cloud_requests_per_minute: Optional[int]
    cloud_token_command: Optional[str]
    energy: bool
    energy_meters: Optional[tuple[str, ...]]
    energy_idle_w: Optional[float]
    watts_per_core: Optional[float]
    cloud_energy_class: Optional[str]
    cloud_energy_j_per_output_token: Optional[float]
    cloud_energy_j_per_input_token: Optional[float]
    energy_scope: str
    routing: str
    preset: str
    lambda_energy: Optional[float]
    lambda_latency: Optional[float]
    lambda_cost: Optional[float]
    cloud_price_per_1k_usd: float
    cloud_quality_prior: float
    allow_below_threshold: bool
    audit_rate: float
    audit_budget_per_day: Optional[int]
    audit_budget_usd_per_day: Optional[float]
    audit_judge_prompt: Optional[str]
    risk_epsilon: Optional[float]
    risk_delta: Optional[float]
    risk_control: bool


def _template_ok(template: str) -> bool:
    try:
        template.format(question="", answer="", reference="")
    except (KeyError, IndexError, ValueError):
        return False
    return True


# --- values checked and converted against the field annotations ------------------------------------------------
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@functools.lru_cache(maxsize=1)
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(RouterConfig)


def _check(key: str, value: Any, hint: Any, where: str, *, from_text: bool) -> Any:
    """``value`` as the type ``hint`` names; ``from_text``: parse it from a string (environment variables).
    ``ConfigError`` naming the key and where the value came from when it is not one."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and type(None) in args:
        if value is None or (from_text and str(value).strip().lower() in ("", "none")):
            return None
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is typing.Union:  # e.g. Union[int, str]: the first member that takes the value
        for member in args:
            try:
                return _check(key, value, member, where, from_text=from_text)
            except ConfigError:
                continue
        names = " or ".join(getattr(a, "__name__", str(a)) for a in args)
        raise ConfigError(f"{key}: expected {names}, got {value!r} ({type(value).__name__}, from {where})")
    if typing.get_origin(hint) is tuple:
        items = [v.strip() for v in value.split(",") if v.strip()] if from_text else (
            [value] if isinstance(value, str) else value)
        if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r} (from {where})")
        return tuple(items)
    try:
        if hint is bool:
            if from_text and str(value).strip().lower() in _TRUE + _FALSE:
                return str(value).strip().lower() in _TRUE
            if isinstance(value, bool):
                return value
        elif hint is int:
            if from_text:
                return int(str(value).strip())
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif hint is float:
            if from_text:
                return float(str(value).strip())
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif hint is str:
            if isinstance(value, str):
                return value
    except ValueError:
        pass
    name = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))
    raise ConfigError(f"{key}: expected {name}, got {value!r} ({type(value).__name__}, from {where})")


def _known(values: dict[str, Any], where: str) -> None:
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(RouterConfig)})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: "
                          f"{sorted(f.name for f in dataclasses.fields(RouterConfig))}")


def read_config_file(path: Path) -> dict[str, Any]:
    """The keys set in a TOML config file (top level or a ``[router]`` table); empty when there is no file."""
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc}") from exc
    values = data.get("router", data)
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path}: [router] must be a table")
    _known(values, f"config file {path}")
    return dict(values)


def load_config(arguments: Optional[dict[str, Any]] = None, *, file: Optional[Path] = None,
                environ: Optional[Mapping[str, str]] = None, base: Optional[RouterConfig] = None) -> RouterConfig:
    """The one configuration path: defaults < config file < environment < ``arguments``.

    The file is ``file`` or ``edgeroute.paths.config_file()`` (TOML, keys named like ``RouterConfig``'s fields);
    each key can also be set as ``$EDGEROUTE_<KEY>`` (e.g. ``EDGEROUTE_N_CTX=4096``, lists comma-separated). Every
    value is checked against the field's type; a wrong one is a ``ConfigError`` naming the key and its source. With
    ``base``, the file and the environment are skipped: ``arguments`` change that configuration. API keys never
    belong in the file, only the name of the variable that holds one (``cloud_api_key_env``).
    """
    arguments = dict(arguments or {})
    _known(arguments, "argument")
    if base is not None:
        return dataclasses.replace(base, **arguments)
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = file or paths.config_file()
    for key, value in read_config_file(path).items():
        values[key] = _check(key, value, _hints()[key], f"config file {path}", from_text=False)
    for f in dataclasses.fields(RouterConfig):
        var = C.ENV_PREFIX + f.name.upper()
        if env.get(var):  # set and not empty
            values[f.name] = _check(f.name, env[var], _hints()[f.name], f"${var}", from_text=True)
    values.update(arguments)
    return RouterConfig(**values)
