"""Building a Router's parts from a configuration: model, cloud, signals, policy, store, energy, privacy.

Each kind of part comes from its registry (``edgeroute.registry``) unless the caller passes one in; what is
built here is owned (and closed) by the Router, what is passed in stays the caller's.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import warnings
from urllib.parse import urlsplit
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from . import paths
from ._constants import DEFAULT_THRESHOLD
from ._errors import ConfigError
from .cloud.base import CloudBackend
from .cloud.breaker import CircuitBreaker
from .cloud.retry import RetryingBackend
from .config import RouterConfig
from .energy.detect import build_monitor
from .energy.monitor import EnergyMonitor
from .local.base import LocalModel
from .local.golden import mismatch
from .policy.base import Policy
from .policy.calibration import Calibration, load_calibration
from .policy.reward import RewardWeights
from .privacy import PrivacyDetector
from .registry import DEFAULT_SIGNALS, HISTORY, POLICIES, PROVIDERS
from .signals import build_signals
from .signals.base import Signal, confidence_signal
from .signals.probe import PregenProbe, model_identity
from .store import TraceStore

log = logging.getLogger("edgeroute")


@dataclass
class Parts:
    """Everything one query's pipeline works with. ``cloud`` is None when the cloud is not used at all
    (``cloud_disabled`` says why when it was configured); ``pregen`` is None when the pre-generation probe is off;
    ``calibration`` is the saved calibration in use (None: configured or default threshold)."""

    config: RouterConfig
    local: LocalModel
    cloud: Optional[CloudBackend]
    signals: list[Signal]
    pregen: Optional[PregenProbe]
    policy: Policy
    store: Optional[TraceStore]
    energy: Optional[EnergyMonitor]
    privacy: Optional[PrivacyDetector]
    calibration: Optional[Calibration]
    threshold_source: str
    cloud_disabled: str = ""
    #: Parts built here, closed with the Router (parts passed in stay open).
    owned: list[Any] = field(default_factory=list)
    #: The risk on this device's traffic (``edgeroute.risk``); None with a policy passed in.
    risk: Optional[Any] = None
    #: The mid-stream handoff rule (``signals.prefix.HandoffRule``) from the calibration; None: answers complete.
    handoff: Optional[Any] = None
    #: How a conversation is fitted to the local window (``edgeroute.history``); None: sent as it is.
    history: Optional[Any] = None


def needs_key(url: str) -> bool:
    """Remote endpoints need an API key; a server on this machine (llama.cpp, Ollama, vLLM) usually does not."""
    host = (urlsplit(url).hostname or "").lower()
    return host not in ("localhost", "127.0.0.1", "::1", "[::1]") and not host.endswith(".localhost")


def make_provider(cfg: RouterConfig) -> CloudBackend:
    """The provider named by ``cfg.cloud_provider`` (from the provider registry), configured from ``cfg``."""
    backend = PROVIDERS.get(cfg.cloud_provider)(cfg)
    if not isinstance(backend, CloudBackend):
        raise ConfigError(f"cloud provider {cfg.cloud_provider!r} built {type(backend).__name__}, not a CloudBackend")
    return backend


def resilient(backend: CloudBackend, cfg: RouterConfig) -> CloudBackend:
    """``backend`` behind the retry loop and the circuit breaker, each unless it has one already (``retries``,
    ``breaks``) or ``cloud_resilience=False``."""
    if not cfg.cloud_resilience:
        return backend
    if not backend.retries:
        backend = RetryingBackend(backend, max_retries=cfg.cloud_max_retries, deadline_s=cfg.cloud_deadline_s)
    return backend if backend.breaks else CircuitBreaker(backend)


def _prefetch(module: str) -> None:
    """Import ``module`` in a background thread (the model's load releases the GIL, so both proceed at once)."""
    def run() -> None:
        try:
            importlib.import_module(module)
        except Exception:  # the foreground import reports it, with its own context
            pass

    threading.Thread(target=run, name=f"edgeroute-prefetch-{module}", daemon=True).start()


def build_local(cfg: RouterConfig) -> LocalModel:
    """The llama.cpp engine for ``cfg.model``, with the shipped Self-REF adapter when ``cfg.selfref``. While the
    weights load, onnxruntime (for the probes) is imported beside it: about 0.1 s off a cold start."""
    from .local.llama import LlamaCppModel

    if cfg.probe or cfg.pregen:
        _prefetch("onnxruntime")

    engine = LlamaCppModel(cfg.model, n_ctx=cfg.n_ctx, ctx_memory_mib=cfg.ctx_memory_mib, n_threads=cfg.n_threads, hidden_states=cfg.hidden_states,
                           prompt_format=cfg.prompt_format)
    weights = RewardWeights.preset(cfg.preset, energy=cfg.lambda_energy, latency=cfg.lambda_latency)
    engine.threads.energy_weight = weights.energy / max(weights.latency, 1e-9)  # measured J/token vs speed
    if cfg.selfref:
        from .local.selfref import SelfRefAdapter

        adapter = SelfRefAdapter.shipped()
        if adapter is None or not adapter.fits(engine.fingerprint):
            log.warning("edgeroute: selfref=True but no Self-REF adapter ships for %s; the signal is off", engine.name)
        else:
            engine.load_selfref(adapter)
    return engine


def capped(backend: CloudBackend, cfg: RouterConfig, owned: list[Any]) -> CloudBackend:
    """``backend`` behind the hard spend caps, when any is configured (the ledger sits beside the trace and is
    closed with the Router)."""
    if cfg.cloud_budget_usd_per_day is None and cfg.cloud_requests_per_minute is None:
        return backend
    from .cloud.spend import SpendCapped, SpendLedger

    if cfg.trace:
        where = Path(cfg.trace_path) if cfg.trace_path else paths.trace_db()
    else:
        where = paths.data_dir() / "spend.sqlite3"
    ledger = SpendLedger(where, budget_usd_per_day=cfg.cloud_budget_usd_per_day,
                         requests_per_minute=cfg.cloud_requests_per_minute)
    owned.append(ledger)
    return SpendCapped(backend, ledger, cfg.cloud_price_per_1k_usd)


def build_cloud(cfg: RouterConfig, cloud: Optional[CloudBackend], owned: list[Any]) -> tuple[Optional[CloudBackend], str]:
    """(the cloud backend or None, why the configured cloud is disabled or "")."""
    if cloud is not None:
        return capped(resilient(cloud, cfg), cfg, owned), ""
    if not cfg.cloud_url or cfg.local_only:
        return None, ""
    if needs_key(cfg.cloud_url) and not os.environ.get(cfg.cloud_api_key_env) and not cfg.cloud_token_command:
        why = f"no API key in ${cfg.cloud_api_key_env} for {cfg.cloud_url}: cloud disabled"
        if cfg.cloud_required:
            raise ConfigError(f"cloud_required is set but there is {why}")
        log.warning("edgeroute: %s; answering locally", why)
        return None, why
    backend = capped(resilient(make_provider(cfg), cfg), cfg, owned)
    owned.append(backend)
    return backend, ""


def build_parts(
    cfg: RouterConfig,
    *,
    local_model: Optional[LocalModel] = None,
    cloud: Optional[CloudBackend] = None,
    policy: Optional[Policy] = None,
    store: Optional[TraceStore] = None,
    signals: Optional[list[Signal]] = None,
    energy_monitor: Optional[EnergyMonitor] = None,
) -> Parts:
    """Every part of a Router: the ones passed in, the others built from ``cfg``. On failure, what was built so
    far is closed."""
    owned: list[Any] = []
    try:
        return _build(cfg, owned, local_model, cloud, policy, store, signals, energy_monitor)
    except BaseException:
        for part in reversed(owned):
            part.close()
        raise


def _build(cfg: RouterConfig, owned: list[Any], local: Optional[LocalModel], cloud: Optional[CloudBackend],
           policy: Optional[Policy], store: Optional[TraceStore], signals: Optional[list[Signal]],
           energy: Optional[EnergyMonitor]) -> Parts:
    if local is None:
        local = build_local(cfg)
        owned.append(local)
    cloud, disabled = build_cloud(cfg, cloud, owned)
    if signals is None:
        names = cfg.signal_names if cfg.signal_names is not None else DEFAULT_SIGNALS
        signals = build_signals(local, cfg, [n for n in names if cfg.probe or n != "probe"])
    pregen: Optional[PregenProbe] = None
    if cfg.pregen and local.hidden_states:
        probe = PregenProbe(**model_identity(local), threshold=cfg.pregen_threshold)
        pregen = probe if probe.available else None
    refused = check_engine(local, signals, pregen, None)
    signals = [s for s in signals if s.name not in refused]
    pregen = None if "pregen" in refused else pregen
    calibration: Optional[Calibration] = None
    if policy is not None:
        source = "policy passed in"
    elif cfg.threshold is not None:
        source = "configured"
    else:
        judge = confidence_signal(signals)
        calibration = load_calibration(local.fingerprint, judge.confidence_id if judge else "")
        source = calibration.describe() if calibration else "default"
        if calibration is not None and calibration.source.startswith("edgeroute fit"):
            source = f"fitted for this model by {calibration.source}: {source}"
        refused.update(check_engine(local, [], None, calibration))
        if "calibration" in refused:
            calibration, source = None, "default (the saved calibration was refused: the engine changed)"
    if refused:
        first = next(iter(refused.values()))
        warnings.warn(f"edgeroute: refused {', '.join(refused)} for {local.name}: {first}; refit them "
                      "(edgeroute calibrate, tools/train_probe.py) on this engine", RuntimeWarning, stacklevel=4)
    threshold = cfg.threshold if cfg.threshold is not None else (
        calibration.threshold if calibration else DEFAULT_THRESHOLD)
    if store is None and cfg.trace:
        store = TraceStore(cfg.trace_path)
        owned.append(store)
    if policy is None:
        policy = POLICIES.get(cfg.routing)(threshold, cfg, store=store, model_key=local.fingerprint)
    if energy is None and cfg.energy:
        energy = build_monitor(cfg.energy_meters, gpu=local.uses_gpu, idle_w=cfg.energy_idle_w,
                               watts_per_core=cfg.watts_per_core)
        owned.append(energy)
    privacy = None
    if cfg.privacy_detect:
        from .registry import DETECTORS

        extra = [DETECTORS.get(name)(cfg) for name in cfg.privacy_detectors if name != "patterns"]
        privacy = PrivacyDetector(cfg.privacy_kinds, extra=extra)
    parts = Parts(cfg, local, cloud, signals, pregen, policy, store, energy, privacy, calibration, source, disabled,
                  owned)
    parts.handoff = handoff_rule(cfg, local, calibration)
    parts.history = HISTORY.get(cfg.history)(local)
    if source != "policy passed in":
        judge = confidence_signal(signals)
        parts.risk = build_risk(parts, threshold, judge.confidence_id if judge else "")
        owned.append(parts.risk)
    return parts


def handoff_rule(cfg: RouterConfig, local: LocalModel, calibration: Optional[Calibration]) -> Optional[Any]:
    """The calibration's handoff rule when ``cfg.handoff`` is on and the engine takes a ``watch``; a damaged rule
    is ignored with a warning (answers then complete)."""
    if not (cfg.handoff and local.watches and calibration is not None and calibration.handoff):
        return None
    from .signals.prefix import HandoffRule

    try:
        return HandoffRule.from_dict(calibration.handoff)
    except ConfigError as exc:
        warnings.warn(f"edgeroute: ignoring the calibration's handoff rule: {exc}", RuntimeWarning, stacklevel=4)
        return None


def build_risk(parts: Parts, threshold: float, confidence_id: str) -> Any:
    """The risk part: the control keyed by model, confidence map and starting threshold, in the trace store (in
    memory, measuring nothing, without one)."""
    from . import _constants as C
    from .risk import Risk, RiskController, RiskState
    from .risk.audit import Auditor
    from .risk.novelty import NoveltyMap

    cfg, cal = parts.config, parts.calibration
    selective = cal is not None and cal.mode == "selective"
    epsilon = cfg.risk_epsilon or (cal.epsilon if selective and cal and cal.epsilon else C.DEFAULT_RISK_EPSILON)
    delta = cfg.risk_delta or (cal.delta if selective and cal and cal.delta else C.DEFAULT_RISK_DELTA)
    novelty = NoveltyMap.for_model(parts.local.fingerprint, parts.local.n_embd) if parts.local.hidden_states else None
    state = RiskState(parts.store) if parts.store is not None else None
    key = f"{parts.local.fingerprint[:32]}:{confidence_id}:{threshold:.4f}"
    control = RiskController(state, key, threshold=threshold, source=parts.threshold_source, epsilon=epsilon,
                             delta=delta, audit_rate=cfg.audit_rate,
                             expected_novel=novelty.expected_share if novelty else None, control=cfg.risk_control)
    risk = Risk(control, state, novelty, can_audit=parts.cloud is not None, budget_calls=cfg.audit_budget_per_day,
                budget_usd=cfg.audit_budget_usd_per_day, judge=bool(cfg.audit_judge_prompt))
    if state is not None:
        risk.auditor = Auditor(parts.cloud, state, control, price_per_1k_usd=cfg.cloud_price_per_1k_usd,
                               judge_prompt=cfg.audit_judge_prompt, energy=parts.energy, after=risk.check_budget)
    return risk


def check_engine(local: LocalModel, signals: list[Signal], pregen: Optional[PregenProbe],
                 calibration: Optional[Calibration]) -> dict[str, str]:
    """The fitted artifacts whose recorded engine outputs differ from this engine's (``local.golden``): name ->
    why, naming both versions. The caller drops what is refused. Artifacts without a record, and engines without
    a version, pass."""
    recorded: list[tuple[str, dict[str, Any]]] = []
    for signal in signals:
        if signal.engine and getattr(signal, "calibrated", True):  # a map fitted on another model: not an engine
            recorded.append((signal.name, signal.engine))           # change (its outputs were never this model's)
    if pregen is not None and pregen.engine:
        recorded.append(("pregen", pregen.engine))
    if calibration is not None and calibration.engine:
        recorded.append(("calibration", calibration.engine))
    if not recorded or not local.engine_version:
        return {}
    now = local.golden()
    if now is None:
        return {}
    refused: dict[str, str] = {}
    for name, engine in recorded:
        why = mismatch(engine, now)
        if why is not None:
            refused[name] = f"fitted with {engine.get('engine') or 'an unrecorded engine'}, this is {now['engine']} ({why})"
    return refused
