"""``edgeroute bench policy``: replay cached harness results through routing policies, side by side.

Every policy sees the same stream of queries (a seeded shuffle of the split, cycled to the requested length) and is
charged from the same cached measurements: the local answer's joules and seconds, its grade, and the cloud's quality,
latency, device-side waiting energy and price (measured when the harness has a real cloud run, else the stated
assumptions). LinUCB runs the real ``LinUCBPolicy`` with its state in a real SQLite store and learns from every
answer's reward as it goes (feedback on every answer, or on a ``feedback_rate`` share of them).

Policies: ``linucb``; ``best_fixed_threshold`` (generate locally, escalate below t; t chosen in hindsight on the same
stream, so it is an upper bound for any fixed threshold); ``always_local``; ``always_cloud``; ``random`` (a fair coin
before generation, then a fair coin after it).
"""

from __future__ import annotations

import random as _random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .. import _constants as C
from ..policy.context import DeviceState, Situation
from ..policy.online import LinUCBPolicy
from ..policy.reward import Outcome, RewardWeights, reward
from ..policy.threshold import ThresholdPolicy
from ..store import TraceStore

#: Share of a local answer's time and energy spent on the prompt's prefill, which the pre-generation decision pays
#: even when it then sends the query to the cloud (measured: 87 ms of 460 ms over 40 test prompts on 2 Xeon cores).
PREFILL_SHARE = 0.19
#: Thresholds tried for the best fixed policy (1.01: always escalate after generating).
THRESHOLDS = tuple(np.round(np.arange(0.0, 1.0001, 0.01), 2)) + (1.01,)


@dataclass(frozen=True)
class Query:
    """One replayable query: what a policy sees and what each route costs and earns."""

    messages: list[dict[str, str]]
    signals: dict[str, float]
    confidence: Optional[float]
    local_quality: float
    cloud_quality: float
    local_j: float
    local_s: float
    cloud_tokens: int
    #: The cloud's side of its answer, J (``energy.cloud``'s estimate from tokens), and its recorded latency, s
    #: (None: the ``CloudCosts`` latency).
    cloud_j: float = 0.0
    cloud_s: Optional[float] = None


@dataclass(frozen=True)
class CloudCosts:
    """The cloud side of every replayed call: seconds (None: each query's recorded latency), device joules while
    waiting, US$ per 1,000 tokens, and the energy the reward counts (``both``: the cloud's estimate too;
    ``device``)."""

    latency_s: Optional[float]
    wait_j: float
    price_per_1k_usd: float
    scope: str = "both"
    #: False during an outage (the circuit breaker open): every route answers locally, as the Router does offline.
    available: bool = True
    #: The cloud's quality is multiplied by this (a cloud whose accuracy drops).
    accuracy_scale: float = 1.0


def outcome(q: Query, route: str, cloud: CloudCosts, *, prefill_only: bool = False) -> Outcome:
    """The outcome of answering ``q`` by ``route``: ``local`` (accepted), ``escalate`` (generated, then the cloud)
    or ``cloud`` (straight to the cloud; ``prefill_only`` charges the pre-generation prefill too)."""
    dollars = cloud.price_per_1k_usd * q.cloud_tokens / 1000.0
    if route == "local" or not cloud.available:  # offline: the local answer, generated whatever was decided
        return Outcome("local", q.local_j, q.local_s, 0.0, q.local_quality)
    quality = q.cloud_quality * cloud.accuracy_scale
    latency = cloud.latency_s if cloud.latency_s is not None else (q.cloud_s or 0.0)
    cloud_j = cloud.wait_j + (q.cloud_j if cloud.scope == "both" else 0.0)
    if route == "escalate":
        return Outcome("cloud", q.local_j + cloud_j, q.local_s + latency, dollars, quality)
    share = PREFILL_SHARE if prefill_only else 0.0
    return Outcome("cloud", share * q.local_j + cloud_j, share * q.local_s + latency, dollars, quality)


@dataclass
class Run:
    """Per-query results of one policy over the stream."""

    rewards: list[float]
    quality: list[float]
    joules: list[float]
    cloud_calls: list[int]
    decision_ms: list[float]

    def summary(self, warmup: int) -> dict[str, Any]:
        r = np.asarray(self.rewards)
        out = {
            "total_reward": float(r.sum()),
            "mean_reward": float(r.mean()),
            "mean_reward_after_warmup": float(r[warmup:].mean()) if len(r) > warmup else None,
            "accuracy": float(np.mean(self.quality)),
            "joules": float(np.sum(self.joules)),
            "joules_per_query": float(np.mean(self.joules)),
            "cloud_calls": int(np.sum(self.cloud_calls)),
        }
        if self.decision_ms:  # one entry per decision (LinUCB: before and after generation are one each)
            d = np.asarray(self.decision_ms)
            out["decision_ms"] = {"mean": float(d.mean()), "p50": float(np.percentile(d, 50)),
                                  "p99": float(np.percentile(d, 99)), "max": float(d.max()), "decisions": len(d),
                                  "per_query_mean": float(d.sum() / len(self.rewards))}
        return out


Schedule = Callable[[int], tuple[RewardWeights, CloudCosts]]
ROUTES = ("local", "escalate", "cloud_direct", "cloud_after_prefill")


def _record(run: Run, o: Outcome, weights: RewardWeights) -> None:
    run.rewards.append(reward(o, weights))
    run.quality.append(float(o.quality or 0.0))
    run.joules.append(o.joules)
    run.cloud_calls.append(int(o.route == "cloud"))


class RouteTable:
    """Reward, quality, joules and cloud calls of every query under every route, as arrays (for fixed policies)."""

    def __init__(self, stream: Sequence[Query], schedule: Schedule) -> None:
        cols: dict[str, dict[str, list[float]]] = {r: {"reward": [], "quality": [], "joules": [], "cloud": []}
                                                   for r in ROUTES}
        for i, q in enumerate(stream):
            weights, cloud = schedule(i)
            for route in ROUTES:
                o = outcome(q, "cloud" if route.startswith("cloud") else route, cloud,
                            prefill_only=route == "cloud_after_prefill")
                c = cols[route]
                c["reward"].append(reward(o, weights))
                c["quality"].append(float(o.quality or 0.0))
                c["joules"].append(o.joules)
                c["cloud"].append(float(o.route == "cloud"))
        self.cols = {r: {k: np.asarray(v) for k, v in c.items()} for r, c in cols.items()}
        self.conf = np.array([-1.0 if q.confidence is None else q.confidence for q in stream])
        self.pregen = np.array([q.signals.get("pregen_confidence", np.inf) for q in stream])

    def choose(self, route: np.ndarray) -> Run:
        """The run that takes ``route[i]`` (an index into ``ROUTES``) for query i."""
        pick = {k: np.choose(route, [self.cols[r][k] for r in ROUTES]) for k in ("reward", "quality", "joules", "cloud")}
        return Run(pick["reward"].tolist(), pick["quality"].tolist(), pick["joules"].tolist(),
                   pick["cloud"].astype(int).tolist(), [])

    def fixed(self, threshold: float, pregen_threshold: Optional[float] = None) -> np.ndarray:
        """Routes of the fixed policy: straight to the cloud when the pre-generation probe is below
        ``pregen_threshold`` (None: no probe run), else generate and escalate below ``threshold``."""
        route = np.where(self.conf >= threshold, 0, 1)
        if pregen_threshold is not None:
            route = np.where(self.pregen < pregen_threshold, 3, route)
        return route


def run_fixed(stream: Sequence[Query], schedule: Schedule, threshold: float) -> Run:
    """Generate locally; escalate when confidence < ``threshold`` (unknown confidence escalates)."""
    table = RouteTable(stream, schedule)
    return table.choose(table.fixed(threshold))


def run_random(stream: Sequence[Query], schedule: Schedule, seed: int) -> Run:
    """A fair coin before generation (cloud or local), then a fair coin after it (accept or escalate)."""
    rng = np.random.default_rng(seed)
    table = RouteTable(stream, schedule)
    n = len(stream)
    return table.choose(np.where(rng.random(n) < 0.5, 2, np.where(rng.random(n) < 0.5, 1, 0)))


def run_linucb(stream: Sequence[Query], schedule: Schedule, *, guardrail: float, seed: int,
               pregen_threshold: Optional[float] = None, feedback_rate: float = 1.0,
               state_dir: Optional[Path] = None, **options: Any) -> tuple[Run, dict[str, Any]]:
    """The real ``LinUCBPolicy`` (state in a real SQLite store), learning as it goes; ``options`` go to it. Where it
    has no pre-generation opinion (warming up) the pre-generation probe's threshold decides, as in the Router."""
    rng = _random.Random(seed)
    run = Run([], [], [], [], [])
    update_ms: list[float] = []
    seen_latency: Optional[float] = None  # recorded latencies: the policy sees those of earlier cloud calls only
    with tempfile.TemporaryDirectory(dir=state_dir) as tmp:
        store = TraceStore(Path(tmp) / "policy.sqlite3")
        weights0, cloud0 = schedule(0)
        policy = LinUCBPolicy(guardrail, weights=weights0, model_key="replay", store=store,
                              cloud_quality_prior=None, **options)
        try:
            for i, q in enumerate(stream):
                weights, cloud = schedule(i)
                policy.weights = weights
                aid = f"q{i}"
                device = DeviceState(None, cloud.available,
                                     cloud.latency_s if cloud.latency_s is not None else seen_latency)
                probed: list[bool] = []
                pregen = q.signals.get("pregen_confidence")

                def probe() -> Optional[float]:
                    probed.append(True)
                    return pregen

                t = time.perf_counter()
                pre = policy.before(aid, Situation(q.messages, {}, device=device), probe)
                run.decision_ms.append((time.perf_counter() - t) * 1000.0)
                if pre is None and pregen_threshold is not None and pregen is not None:
                    skip = probe() < pregen_threshold  # type: ignore[operator]
                else:
                    skip = pre is not None and pre.escalate
                if skip:
                    o = outcome(q, "cloud", cloud, prefill_only=bool(probed))
                else:
                    t = time.perf_counter()
                    post = policy.judge(aid, Situation(q.messages, q.signals, q.confidence, device=device))
                    run.decision_ms.append((time.perf_counter() - t) * 1000.0)
                    o = outcome(q, "escalate" if post.escalate else "local", cloud)
                _record(run, o, weights)
                if o.route == "cloud" and q.cloud_s is not None:  # what the Router's device watch keeps: an EWMA
                    a = C.CLOUD_LATENCY_EWMA
                    seen_latency = q.cloud_s if seen_latency is None else (1 - a) * seen_latency + a * q.cloud_s
                t = time.perf_counter()
                policy.settle(aid, Outcome(o.route, o.joules, o.seconds, o.dollars, None))
                if rng.random() < feedback_rate:
                    assert o.quality is not None
                    policy.feedback(aid, o.quality)
                update_ms.append((time.perf_counter() - t) * 1000.0)
        finally:
            store.close()
    u = np.asarray(update_ms)
    return run, {"update_ms_mean": float(u.mean()), "update_ms_p99": float(np.percentile(u, 99))}


def best_fixed(table: RouteTable, window: slice = slice(None), *, pregen: bool = False,
               min_threshold: float = 0.0) -> tuple[dict[str, Any], Run]:
    """The fixed policy with the highest total reward over ``window`` of the stream, chosen in hindsight: a
    threshold on the confidence (``>= min_threshold``), and with ``pregen`` also a threshold on the pre-generation
    probe, or always-cloud."""
    candidates: list[tuple[dict[str, Any], np.ndarray]] = []
    pregen_grid: Sequence[Optional[float]] = [None] + [float(p) for p in THRESHOLDS] if pregen else [None]
    for p in pregen_grid:
        for t in THRESHOLDS:
            if t >= min_threshold:
                candidates.append(({"threshold": float(t), "pregen_threshold": p}, table.fixed(float(t), p)))
    if pregen:
        candidates.append(({"always_cloud": True}, np.full(len(table.conf), 2)))
    rewards = table.cols
    best = max(candidates, key=lambda c: float(np.choose(c[1], [rewards[r]["reward"] for r in ROUTES])[window].sum()))
    return best[0], table.choose(best[1])


def make_stream(queries: Sequence[Query], length: int, seed: int) -> list[Query]:
    """A seeded shuffle of ``queries``, reshuffled each time it runs out, ``length`` long."""
    rng = _random.Random(seed)
    out: list[Query] = []
    while len(out) < length:
        order = list(range(len(queries)))
        rng.shuffle(order)
        out += [queries[i] for i in order]
    return out[:length]


def threshold_decision_ms(stream: Sequence[Query], pregen: bool) -> list[float]:
    """Wall time of the fixed policies' decisions, ms: ``ThresholdPolicy.decide`` (and, with ``pregen``, the
    comparison of the pre-generation probe with its threshold)."""
    policy, out = ThresholdPolicy(0.5), []
    for q in stream:
        t = time.perf_counter()
        if pregen:
            _ = q.signals.get("pregen_confidence", 1.0) < 0.5
        policy.decide(q.confidence)
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def compare(stream: Sequence[Query], schedule: Schedule, *, guardrail: float, warmup: int, seed: int,
            pregen_threshold: Optional[float] = None, feedback_rate: float = 1.0, **options: Any) -> dict[str, Any]:
    """Every policy on ``stream``; LinUCB's mean reward after ``warmup`` queries against the best fixed policies'
    on the same queries (chosen in hindsight on them)."""
    lin, timing = run_linucb(stream, schedule, guardrail=guardrail, seed=seed, pregen_threshold=pregen_threshold,
                             feedback_rate=feedback_rate, **options)
    table = RouteTable(stream, schedule)
    fixed_t, fixed_run = best_fixed(table)
    policy_t, policy_run = best_fixed(table, pregen=True)
    runs = {
        "linucb": lin,
        "best_fixed_threshold": fixed_run,
        "best_fixed_policy": policy_run,
        "always_local": table.choose(np.zeros(len(stream), dtype=int)),
        "always_cloud": table.choose(np.full(len(stream), 2)),
        "random": run_random(stream, schedule, seed),
    }
    for name in ("best_fixed_threshold", "best_fixed_policy"):
        runs[name].decision_ms = threshold_decision_ms(stream, runs[name] is policy_run)
    out: dict[str, Any] = {name: run.summary(warmup) for name, run in runs.items()}
    out["best_fixed_threshold"]["choice"] = fixed_t
    out["best_fixed_policy"]["choice"] = policy_t
    out["linucb"].update(timing)
    late = slice(warmup, None)
    lin_late = float(np.mean(lin.rewards[late]))
    after: dict[str, Any] = {"warmup": warmup, "linucb_mean_reward": lin_late}
    for name, kwargs in (("best_fixed_threshold", {}), ("best_fixed_policy", {"pregen": True}),
                         ("best_fixed_policy_within_guardrail", {"pregen": True, "min_threshold": guardrail})):
        choice, run = best_fixed(table, late, **kwargs)  # type: ignore[arg-type]
        mean = float(np.mean(run.rewards[late]))
        after[name] = {"choice": choice, "mean_reward": mean,
                       "linucb_gap": (mean - lin_late) / abs(mean) if mean else None}
    out["after_warmup"] = after
    return out


def scope_effect(stream: Sequence[Query], weights: RewardWeights, cloud: CloudCosts, *, guardrail: float,
                 seed: int, pregen_threshold: Optional[float] = None, **options: Any) -> dict[str, Any]:
    """What the reward's energy scope does: for ``both`` (the cloud's estimate counts) and ``device``, LinUCB's and
    the hindsight best fixed policy's cloud share and joules per query, on this device and on both sides."""
    out: dict[str, Any] = {}
    for scope in ("both", "device"):
        costs = replace(cloud, scope=scope)
        lin, _ = run_linucb(stream, lambda i: (weights, costs), guardrail=guardrail, seed=seed,
                            pregen_threshold=pregen_threshold, **options)
        choice, best = best_fixed(RouteTable(stream, lambda i: (weights, costs)), pregen=True)
        row: dict[str, Any] = {}
        for name, run in (("linucb", lin), ("best_fixed_policy", best)):
            calls = np.asarray(run.cloud_calls, dtype=float)
            cloud_j = calls * np.array([q.cloud_j for q in stream])
            device_j = np.asarray(run.joules) - (cloud_j if scope == "both" else 0.0)
            row[name] = {"cloud_share": float(calls.mean()), "accuracy": float(np.mean(run.quality)),
                         "device_j_per_query": float(device_j.mean()),
                         "both_sides_j_per_query": float((device_j + cloud_j).mean())}
        row["best_fixed_policy"]["choice"] = choice
        out[scope] = row
    return out


def rolling(values: Sequence[float], window: int) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if len(v) < window:
        return np.array([v.mean()]) if len(v) else v
    c = np.cumsum(np.insert(v, 0, 0.0))
    return (c[window:] - c[:-window]) / window


def adaptation(stream: Sequence[Query], before: tuple[RewardWeights, CloudCosts],
               after: tuple[RewardWeights, CloudCosts], *, guardrail: float, seed: int,
               pregen_threshold: Optional[float] = None, window: int = 200,
               until: Optional[int] = None, **options: Any) -> dict[str, Any]:
    """The world changes at the middle of the stream (a lambda, the cloud's price, an outage, its accuracy), for
    good or (``until``) up to that query. LinUCB against the best fixed policy of the first half kept after the
    change (stale) and the best fixed policy of the second half (hindsight): mean rewards after the change, their
    ratios, and how many queries LinUCB needs to come within 5% of the hindsight policy (rolling mean over
    ``window`` queries). The same against the fixed policies that keep the guardrail (threshold >= ``guardrail``,
    or always cloud: the ones with LinUCB's guarantee), unless ``allow_below_threshold`` is among ``options``."""
    mid = len(stream) // 2
    end = len(stream) if until is None else until

    def schedule(i: int) -> tuple[RewardWeights, CloudCosts]:
        return after if mid <= i < end else before

    lin, _ = run_linucb(stream, schedule, guardrail=guardrail, seed=seed, pregen_threshold=pregen_threshold,
                        **options)
    table = RouteTable(stream, schedule)
    t1, first = best_fixed(table, slice(0, mid), pregen=True)
    t2, second = best_fixed(table, slice(mid, None), pregen=True)
    within: dict[str, Any] = {}
    if not options.get("allow_below_threshold"):
        g1, gfirst = best_fixed(table, slice(0, mid), pregen=True, min_threshold=guardrail)
        g2, gsecond = best_fixed(table, slice(mid, None), pregen=True, min_threshold=guardrail)
        lin_after = float(np.mean(lin.rewards[mid:]))
        stale_g, best_g = float(np.mean(gfirst.rewards[mid:])), float(np.mean(gsecond.rewards[mid:]))
        within = {"best_fixed_before": g1, "best_fixed_after": g2, "stale_fixed": stale_g, "hindsight_fixed": best_g,
                  "linucb_vs_stale": _ratio(lin_after, stale_g),
                  "linucb_gap_to_hindsight": (best_g - lin_after) / abs(best_g) if best_g else None}
    stale = first  # the first half's best, kept after the change
    oracle_rewards = first.rewards[:mid] + second.rewards[mid:]
    roll_lin, roll_best = rolling(lin.rewards, window), rolling(oracle_rewards, window)
    recovered = None
    for k in range(mid, len(roll_lin)):
        if roll_lin[k] >= roll_best[k] - 0.05 * abs(roll_best[k]):
            recovered = k + window - mid  # the window ending k + window - 1 lies after the change
            break
    after_change = {"linucb": float(np.mean(lin.rewards[mid:])), "stale_fixed": float(np.mean(stale.rewards[mid:])),
                    "hindsight_fixed": float(np.mean(second.rewards[mid:]))}
    return {
        "change_at": mid,
        "change_until": end,
        "best_fixed_before": t1,
        "best_fixed_after": t2,
        "mean_reward_after_change": after_change,
        "linucb_vs_stale": _ratio(after_change["linucb"], after_change["stale_fixed"]),
        "linucb_gap_to_hindsight": (after_change["hindsight_fixed"] - after_change["linucb"])
        / abs(after_change["hindsight_fixed"]) if after_change["hindsight_fixed"] else None,
        "within_guardrail": within,
        "cloud_calls_in_change": int(np.sum(lin.cloud_calls[mid:end])),
        "queries_to_within_5pct": recovered,
        "_rolling": {"linucb": roll_lin.tolist(), "stale_fixed": rolling(stale.rewards, window).tolist(),
                     "hindsight_fixed": roll_best.tolist(), "window": window},
        "_series": {"linucb": _series(lin, stream, schedule), "stale_fixed": _series(stale, stream, schedule)},
    }


def _ratio(a: float, b: float) -> Optional[float]:
    """How many times ``b`` reward ``a`` earns, for rewards of any sign: 1 + (a - b) / |b| (a / b when both are
    positive; None when b is 0). 1.05 means 5 % of b's magnitude better."""
    return None if b == 0 else 1.0 + (a - b) / abs(b)


def _series(run: Run, stream: Sequence[Query], schedule: Schedule) -> dict[str, list[float]]:
    """Per query: reward, quality, cloud call, joules on this device and on the cloud's side (for the plots)."""
    cloud_j = [c * q.cloud_j for c, q in zip(run.cloud_calls, stream)]
    scoped = [1.0 if schedule(i)[1].scope == "both" else 0.0 for i in range(len(stream))]
    device_j = [j - c * s for j, c, s in zip(run.joules, cloud_j, scoped)]
    return {"reward": list(run.rewards), "quality": list(run.quality), "cloud": [float(c) for c in run.cloud_calls],
            "device_j": device_j, "cloud_j": cloud_j}


def describe(weights: RewardWeights, cloud: CloudCosts) -> dict[str, Any]:
    return {"lambdas": asdict(weights), "cloud": asdict(cloud)}
