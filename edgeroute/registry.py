"""Registries of the extension points: name -> factory, filled by the built-ins and by third-party packages.

A plugin package declares entry points in its ``pyproject.toml``::

    [project.entry-points."edgeroute.providers"]
    my-cloud = "my_package.cloud:make_backend"

and ``RouterConfig(cloud_provider="my-cloud")`` then uses it. The groups and what each factory is called with:

- ``edgeroute.providers``: ``factory(config: RouterConfig) -> CloudBackend``
- ``edgeroute.signals``: ``factory(model: LocalModel, config: RouterConfig) -> Signal | list[Signal] | None``
  (None or []: does not apply to this model)
- ``edgeroute.meters``: ``factory() -> EnergyMeter``
- ``edgeroute.policies``: ``factory(threshold: float, config: RouterConfig, *, store, model_key) -> Policy``
- ``edgeroute.history``: ``factory(model: LocalModel) -> HistoryStrategy``

Registries are read lazily: a built-in name never scans entry points, and a factory's module is imported only
when that factory is used. In a frozen app (PyInstaller) without package metadata, only the built-ins exist, and
an unknown name says so.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

if TYPE_CHECKING:
    from importlib import metadata

from ._errors import ConfigError

#: A factory, or where to find one ("package.module:attribute", as in an entry point).
Target = Union[str, Callable[..., Any]]


def _load(target: Target) -> Callable[..., Any]:
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


class Registry:
    """Name -> factory for one extension point; ``group`` is its entry-point group."""

    def __init__(self, group: str, kind: str, builtins: dict[str, Target]) -> None:
        self.group, self.kind = group, kind
        self._builtins = dict(builtins)
        self._added: dict[str, Target] = {}
        self._plugins: Optional[dict[str, "metadata.EntryPoint"]] = None
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()

    def register(self, name: str, factory: Target) -> None:
        """Add (or replace) ``name`` at run time, e.g. from an app that embeds edgeroute."""
        self._added[name] = factory

    def _entry_points(self) -> dict[str, "metadata.EntryPoint"]:
        with self._lock:
            if self._plugins is None:
                from importlib import metadata  # only when a name is not a built-in: about 30 ms of imports

                try:
                    found = metadata.entry_points(group=self.group)
                except Exception as exc:  # broken metadata of some unrelated package: built-ins still work
                    self._errors["*"] = f"{type(exc).__name__}: {exc}"
                    found = ()  # type: ignore[assignment]
                self._plugins = {ep.name: ep for ep in found}
            return self._plugins

    def names(self) -> list[str]:
        """Every known name: built-ins first, then registered ones, then installed plugins."""
        out = list(self._builtins)
        out += [n for n in self._added if n not in out]
        out += sorted(n for n in self._entry_points() if n not in out)
        return out

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._builtins or name in self._added
                                          or name in self._entry_points())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def source(self, name: str) -> str:
        """"built-in", "registered" or the plugin's distribution name."""
        if name in self._added:
            return "registered"
        if name in self._builtins:
            return "built-in"
        ep = self._entry_points().get(name)
        dist = getattr(ep, "dist", None)
        return f"plugin {dist.name}" if dist is not None else "plugin"

    def get(self, name: str) -> Callable[..., Any]:
        """The factory for ``name``; ``ConfigError`` naming the known ones when there is none or it cannot load."""
        target: Optional[Target] = self._added.get(name) or self._builtins.get(name)
        if target is None:
            ep = self._entry_points().get(name)
            if ep is None:
                raise ConfigError(self.unknown(name))
            try:
                return ep.load()  # type: ignore[no-any-return]
            except Exception as exc:
                raise ConfigError(f"the {self.kind} plugin {name!r} ({ep.value}) failed to load: "
                                  f"{type(exc).__name__}: {exc}") from exc
        return _load(target)

    def unknown(self, name: str) -> str:
        note = ""
        if getattr(sys, "frozen", False):
            note = " (this is a frozen app: plugins installed as packages are not visible, only the built-ins)"
        elif "*" in self._errors:
            note = f" (installed plugins could not be listed: {self._errors['*']})"
        return f"unknown {self.kind} {name!r}; known: {self.names()}{note}"

    def check(self, name: str, key: str) -> None:
        """``ConfigError`` naming the configuration ``key`` when ``name`` is not registered."""
        if name not in self:
            raise ConfigError(f"{key}: {self.unknown(name)}")


PROVIDERS = Registry("edgeroute.providers", "cloud provider", {
    "openai": "edgeroute.cloud.openai_compat:OpenAICompatBackend.from_config",
    "anthropic": "edgeroute.cloud.anthropic:AnthropicBackend.from_config",
})

SIGNALS = Registry("edgeroute.signals", "signal", {
    "perplexity": "edgeroute.signals.perplexity:PerplexitySignal.from_model",
    "tokens": "edgeroute.signals.tokens:TokenStatsSignal.from_model",
    "query": "edgeroute.signals.query:QuerySignal.from_model",
    "selfref": "edgeroute.signals.selfref:SelfRefSignal.from_model",
    "probe": "edgeroute.signals.probe:ProbeSignal.from_model",  # with the Self-REF blend when the engine has one
    "longform": "edgeroute.signals.longform:LongFormSignal.from_model",
})

METERS = Registry("edgeroute.meters", "energy backend", {
    "rapl": "edgeroute.energy.rapl:RaplMeter",
    "nvml": "edgeroute.energy.nvml:NvmlMeter",
    "apple": "edgeroute.energy.apple:AppleMeter",
    "emi": "edgeroute.energy.emi:EmiMeter",
    "battery": "edgeroute.energy.battery:BatteryMeter",
    "estimate": "edgeroute.energy.estimate:EstimateMeter",
})

POLICIES = Registry("edgeroute.policies", "routing policy", {
    "threshold": "edgeroute.policy.threshold:ThresholdPolicy.from_config",
    "linucb": "edgeroute.policy.online:LinUCBPolicy.from_config",
})

HISTORY = Registry("edgeroute.history", "history strategy", {
    "latest": "edgeroute.history.latest:LatestTurns.from_model",
    "summarize": "edgeroute.history.summarize:SummarizeOlder.from_model",
})

DETECTORS = Registry("edgeroute.detectors", "privacy detector", {
    "patterns": "edgeroute.privacy.patterns:PatternDetector.from_config",
})

#: The default signal set, in order (the probe drops out when none fits the model).
DEFAULT_SIGNALS = ("perplexity", "tokens", "query", "longform", "selfref", "probe")

__all__ = ["DEFAULT_SIGNALS", "DETECTORS", "HISTORY", "METERS", "POLICIES", "PROVIDERS", "Registry", "SIGNALS"]
