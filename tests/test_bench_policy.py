"""``edgeroute bench policy``: the replay of routing policies, on a synthetic world and on real cached answers."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from edgeroute.bench.replay import CloudCosts, Query, RouteTable, adaptation, best_fixed, compare, make_stream
from edgeroute.policy.reward import RewardWeights
from conftest import run_cli
from test_bench_runner import small_jsonl

WEIGHTS = RewardWeights.preset("balanced")
COSTS = CloudCosts(latency_s=1.5, wait_j=0.05, price_per_1k_usd=0.0006)


def world(n: int = 400, seed: int = 0) -> list[Query]:
    """Queries whose local answer is right with probability = its confidence (a calibrated signal)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        conf = rng.random()
        out.append(Query(
            messages=[{"role": "user", "content": f"Question number {i}?"}],
            signals={"pregen_confidence": min(max(conf + rng.gauss(0, 0.15), 0.0), 1.0), "probe_confidence": conf},
            confidence=conf,
            local_quality=float(rng.random() < conf),
            cloud_quality=0.9,
            local_j=4.0,
            local_s=0.45,
            cloud_tokens=100,
        ))
    return out


def test_the_stream_cycles_through_every_query_before_repeating():
    qs = world(50)
    s = make_stream(qs, 120, seed=1)
    assert len(s) == 120 and {id(q) for q in s[:50]} == {id(q) for q in qs}
    assert make_stream(qs, 120, seed=1) == s and make_stream(qs, 120, seed=2) != s


def test_best_fixed_policy_is_the_hindsight_optimum_of_its_family():
    stream = make_stream(world(), 1000, seed=0)
    table = RouteTable(stream, lambda i: (WEIGHTS, COSTS))
    choice, run = best_fixed(table, pregen=True)
    total = sum(run.rewards)
    for t in (0.0, 0.3, 0.5, 0.8, 1.01):
        assert total >= sum(table.choose(table.fixed(t)).rewards) - 1e-9
        assert total >= sum(table.choose(table.fixed(t, 0.3)).rewards) - 1e-9
    assert total >= sum(table.choose(np.full(len(stream), 2)).rewards) - 1e-9  # always cloud


def test_linucb_learns_to_route_in_a_world_it_has_never_seen():
    stream = make_stream(world(), 2000, seed=0)
    r = compare(stream, lambda i: (WEIGHTS, COSTS), guardrail=0.3, warmup=500, seed=0, pregen_threshold=0.2)
    for name in ("linucb", "best_fixed_threshold", "best_fixed_policy", "always_local", "always_cloud", "random"):
        for key in ("total_reward", "accuracy", "joules", "cloud_calls"):
            assert key in r[name], (name, key)
    late = r["after_warmup"]
    assert late["linucb_mean_reward"] > r["random"]["mean_reward_after_warmup"] + 0.05
    assert late["linucb_mean_reward"] > r["always_local"]["mean_reward_after_warmup"] + 0.05
    assert late["best_fixed_policy"]["linucb_gap"] < 0.05
    d = r["linucb"]["decision_ms"]
    assert 0 < d["p50"] <= d["p99"] <= d["max"]
    assert 0 < r["linucb"]["cloud_calls"] < 2000


def test_adaptation_reports_the_change_and_linucb_follows_it():
    stream = make_stream(world(), 2000, seed=0)
    pricey = CloudCosts(COSTS.latency_s, COSTS.wait_j, COSTS.price_per_1k_usd * 20)
    a = adaptation(stream, (WEIGHTS, COSTS), (WEIGHTS, pricey), guardrail=0.3, seed=0, pregen_threshold=0.2)
    assert a["change_at"] == 1000 and a["best_fixed_before"] != a["best_fixed_after"]
    m = a["mean_reward_after_change"]
    assert m["hindsight_fixed"] >= m["stale_fixed"]
    assert m["linucb"] > m["stale_fixed"]  # it noticed the price
    assert len(a["_rolling"]["linucb"]) == 2000 - 200 + 1


@pytest.mark.slow
def test_bench_policy_cli_replays_real_cached_answers(tmp_path):
    data = small_jsonl(tmp_path)
    out = tmp_path / "policy"
    proc = run_cli("bench", "policy", "--data", str(data), "--queries", "600", "--warmup", "200", "--json",
                   "--quiet", "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["queries"] == 600 and d["basis"]["items"] == 12
    assert set(d["policies"]) == {"linucb", "best_fixed_threshold", "best_fixed_policy", "always_local",
                                  "always_cloud", "random"}
    assert d["policies"]["always_local"]["cloud_calls"] == 0 and d["policies"]["always_cloud"]["cloud_calls"] == 600
    assert d["policies"]["always_local"]["joules"] > 0  # the cached answers' measured (estimated) energy
    assert d["policies"]["linucb"]["decision_ms"]["mean"] > 0
    assert set(d["adaptation"]) == {"cloud_price_x10", "lambdas_to_battery-saver", "cloud_outage",
                                    "cloud_accuracy_x0.5"}
    assert d["adaptation"]["cloud_outage"]["cloud_calls_in_change"] == 0
    within = d["adaptation"]["cloud_price_x10"]["within_guardrail"]  # the fixed policies with LinUCB's guarantee
    assert within["best_fixed_before"].get("always_cloud") or within["best_fixed_before"]["threshold"] >= \
        d["guardrail_threshold"]
    for name in ("policy.png", "policy_series.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "policy.json").read_text())["queries"] == 600
    # the default cloud is the loopback stand-in, measured: its cached answers graded by the local answers' grader
    basis = d["basis"]
    assert basis["cloud_source"].startswith("measured: stand-in-cloud") and basis["cloud_energy"]["method"] == "estimated"
    from edgeroute.bench.datasets import load_items
    from edgeroute.bench.grading import grade

    items = {i["id"]: i for i in load_items(str(data))}
    (cache,) = (tmp_path / "cache").rglob("cloud-*.jsonl")
    answers = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(answers) == 12 and basis["cloud"]["latency_ms_percentiles"]["p50"] > 0
    assert basis["cloud"]["accuracy"] == pytest.approx(sum(grade(a["text"], items[a["id"]]) for a in answers) / 12)
    text = run_cli("bench", "policy", "--data", str(data), "--queries", "300", "--warmup", "100", "--quiet",
                   "--cloud-profile", "--cloud-accuracy", "0.9", "--cloud-latency-ms", "1200", timeout=300)
    assert text.returncode == 0 and "| linucb |" in text.stdout and "decision" in text.stdout
    assert "profile (stated, not measured): accuracy 0.9" in text.stdout and "energy scope both" in text.stdout
    bad = run_cli("bench", "policy", "--data", str(data), "--queries", "300", "--quiet", timeout=300)
    assert bad.returncode == 2 and "warmup" in bad.stderr


def test_two_sided_energy_charges_the_cloud_its_estimate_and_the_device_scope_does_not():
    from dataclasses import replace as dc_replace

    from edgeroute.bench.replay import outcome, scope_effect

    q = dc_replace(world(1)[0], cloud_j=300.0, cloud_s=2.5)
    both, device = CloudCosts(None, 0.05, 0.0006), CloudCosts(None, 0.05, 0.0006, scope="device")
    assert outcome(q, "cloud", both).joules == pytest.approx(300.05)
    assert outcome(q, "cloud", device).joules == pytest.approx(0.05)
    assert outcome(q, "escalate", both).joules == pytest.approx(4.0 + 300.05)
    assert outcome(q, "cloud", both).seconds == 2.5  # the query's recorded latency when the costs name none
    assert outcome(q, "local", both).joules == 4.0
    stream = make_stream([dc_replace(x, cloud_j=400.0, cloud_s=1.2) for x in world(200)], 600, seed=0)
    effect = scope_effect(stream, RewardWeights.preset("balanced"), both, guardrail=0.3, seed=0)
    assert set(effect) == {"both", "device"}
    for scope in ("both", "device"):  # the parts add up: both sides = the device + 400 J per cloud call
        r = effect[scope]["best_fixed_policy"]
        assert r["both_sides_j_per_query"] == pytest.approx(r["device_j_per_query"] + 400.0 * r["cloud_share"])
    # the cloud's energy made visible moves the hindsight-best policy away from the cloud
    assert effect["both"]["best_fixed_policy"]["cloud_share"] < effect["device"]["best_fixed_policy"]["cloud_share"]


def test_a_replay_is_deterministic_per_seed():
    from edgeroute.bench.replay import run_linucb

    stream = make_stream(world(150), 400, seed=3)
    a, _ = run_linucb(stream, lambda i: (WEIGHTS, COSTS), guardrail=0.3, seed=7)
    b, _ = run_linucb(stream, lambda i: (WEIGHTS, COSTS), guardrail=0.3, seed=7)
    assert a.rewards == b.rewards and a.cloud_calls == b.cloud_calls


def test_an_outage_window_sends_nothing_to_the_cloud_and_a_cloud_that_gets_worse_loses_its_share():
    from dataclasses import replace as dc_replace

    from edgeroute.bench.replay import run_linucb

    stream = make_stream(world(200), 1200, seed=0)
    down = dc_replace(COSTS, available=False)

    def outage(i):
        return WEIGHTS, (down if 600 <= i < 900 else COSTS)

    run, _ = run_linucb(stream, outage, guardrail=0.3, seed=0, pregen_threshold=0.2)
    assert sum(run.cloud_calls[600:900]) == 0 and sum(run.cloud_calls[:600]) > 0 and sum(run.cloud_calls[900:]) > 0
    table = RouteTable(stream, outage)
    always_cloud = table.choose(np.full(len(stream), 2))
    assert sum(always_cloud.cloud_calls[600:900]) == 0  # even "always cloud" answers locally while it is down
    assert always_cloud.quality[600:900] == [q.local_quality for q in stream[600:900]]
    shift = adaptation(stream, (WEIGHTS, COSTS), (WEIGHTS, dc_replace(COSTS, accuracy_scale=0.3)), guardrail=0.3,
                       seed=0, pregen_threshold=0.2)
    calls = shift["_series"]["linucb"]["cloud"]
    assert np.mean(calls[900:]) < np.mean(calls[300:600])  # LinUCB moves away from a cloud that got worse
    assert shift["mean_reward_after_change"]["linucb"] > shift["mean_reward_after_change"]["stale_fixed"]


def test_the_stand_in_without_the_server_extra_is_a_typed_error_that_says_what_to_do(monkeypatch):
    from edgeroute import CloudUnreachableError
    from edgeroute.bench import standin

    monkeypatch.setattr(standin, "_importable", lambda module: module != "uvicorn")
    with pytest.raises(CloudUnreachableError, match=r"uvicorn missing.*edgeroute\[server\].*--cloud-profile"):
        standin.StandInServer().start()
