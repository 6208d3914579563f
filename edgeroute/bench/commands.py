"""The ``edgeroute bench`` modes (report, policy, transfer, privacy): what each prints from its arguments."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _bench_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """What every ``bench`` mode takes from the command line: data, model, generation, the cloud, progress."""
    from .report import CloudAssumptions
    from .runner import RunParams

    return dict(
        data=args.data,
        model=args.model,
        params=RunParams(max_tokens=args.max_tokens),
        cloud=CloudAssumptions(args.cloud_accuracy, args.cloud_latency_ms, args.cloud_price_per_1k, args.cloud_wait_j),
        cloud_url=args.cloud_url,
        cloud_model=args.cloud_model,
        progress=None if args.quiet else sys.stderr,
    )


def cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.what == "policy":
        return _cmd_bench_policy(args)
    if args.what == "transfer":
        return _cmd_bench_transfer(args)
    if args.what == "risk":
        return _cmd_bench_risk(args)
    if args.what == "handoff":
        return _cmd_bench_handoff(args)
    if args.what == "value":
        return _cmd_bench_value(args)
    if args.what == "privacy":
        from . import privacy

        report = privacy.privacy_report(path=Path(args.data) if args.data else None)
        print(json.dumps(report, indent=2) if args.json else privacy.markdown(report))
        return 0

    from .api import run_bench
    from .report import markdown, public

    report = run_bench(
        split=args.split or "test",
        limit=args.limit,
        use_cache=not args.no_cache,
        out_dir=Path(args.out) if args.out else None,
        **_bench_inputs(args),
    )
    if args.json:
        print(json.dumps(public(report), indent=2))
    else:
        print(markdown(public(report), f"edgeroute bench ({report['split']})"))
        if report.get("plots"):
            print("plots: " + ", ".join(report["plots"]))
    return 0


def _cmd_bench_transfer(args: argparse.Namespace) -> int:
    from .judgement import markdown, transfer_report
    from .runner import RunParams

    report = transfer_report(data=args.data, model=args.model, params=RunParams(max_tokens=args.max_tokens),
                             epsilon=args.epsilon if args.epsilon is not None else 0.1,
                             progress=None if args.quiet else sys.stderr)
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return 0


def _cmd_bench_policy(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .policy_bench import policy_queries, run_policy_bench
    from .report import public
    from ..policy.reward import RewardWeights

    inputs = _bench_inputs(args)
    if not args.cloud_profile and not args.cloud_url:
        inputs["cloud_url"] = "stand-in"  # measured on a real loopback endpoint unless a profile is stated
    queries, basis = policy_queries(split=args.split or "all", cloud_energy_class=args.cloud_energy_class,
                                    cloud_latency_sigma=args.cloud_latency_sigma if args.cloud_profile else None,
                                    **inputs)
    weights = RewardWeights.preset(args.preset, energy=args.lambda_energy, latency=args.lambda_latency,
                                   cost=args.lambda_cost)
    report = run_policy_bench(queries, basis, length=args.queries, weights=weights, guardrail=args.guardrail,
                              warmup=args.warmup, seed=args.seed, feedback_rate=args.feedback_rate,
                              price_factor=args.price_factor, shift_preset=args.shift_preset,
                              allow_below_threshold=args.allow_below_threshold,
                              out_dir=Path(args.out) if args.out else None)
    if args.json:
        print(json.dumps(public(report), indent=2))
        return 0
    print(f"edgeroute bench policy: {report['queries']} queries replayed from {basis['split']} "
          f"(cloud {basis['cloud_source']}, accuracy {basis['cloud']['accuracy']:.3f}); "
          f"guardrail threshold {report['guardrail_threshold']:.2f}")
    print("| policy | mean reward | after warm-up | accuracy | J/query | cloud calls |")
    print("|---|---|---|---|---|---|")
    for name, p in report["policies"].items():
        print(f"| {name} | {p['mean_reward']:.4f} | {p['mean_reward_after_warmup']:.4f} | {p['accuracy']:.3f} | "
              f"{p['joules_per_query']:.2f} | {p['cloud_calls']} |")
    a = report["after_warmup"]
    d = report["policies"]["linucb"]["decision_ms"]
    print(f"LinUCB after {a['warmup']} queries: {a['linucb_mean_reward']:.4f} vs best fixed policy "
          f"{a['best_fixed_policy']['mean_reward']:.4f} (gap {a['best_fixed_policy']['linucb_gap']:+.1%}); "
          f"a decision takes {d['mean']:.3f} ms mean, {d['p99']:.3f} ms p99 ({d['per_query_mean']:.3f} ms per query)")
    e = basis["cloud_energy"]
    print(f"cloud energy ({e['method']}, {e['source']}): {e['j_per_query_mean']:.1f} J per cloud answer on average")
    for scope, row in report["energy_scope"].items():
        print(f"energy scope {scope}: " + "; ".join(
            f"{name} cloud share {r['cloud_share']:.1%}, {r['device_j_per_query']:.2f} J/query on the device, "
            f"{r['both_sides_j_per_query']:.2f} J/query both sides, accuracy {r['accuracy']:.3f}"
            for name, r in row.items()))
    for name, shift in report["adaptation"].items():
        m = shift["mean_reward_after_change"]
        ratio, gap = shift["linucb_vs_stale"], shift["linucb_gap_to_hindsight"]
        print(f"{name} at query {shift['change_at']}: after it LinUCB {m['linucb']:.4f}, the old best fixed "
              f"{m['stale_fixed']:.4f} (LinUCB x{ratio:.3f} of it; target >= 1.05), the new best fixed (hindsight) "
              f"{m['hindsight_fixed']:.4f} (gap {gap:+.1%}; target <= 5 %)" if ratio is not None and gap is not None
              else f"{name}: rewards change sign, no ratio ({m})")
        g = shift.get("within_guardrail")
        if g:
            print(f"  within the guardrail: the old best fixed {g['stale_fixed']:.4f} (LinUCB x"
                  f"{g['linucb_vs_stale'] or float('nan'):.3f}), hindsight {g['hindsight_fixed']:.4f} (gap "
                  f"{g['linucb_gap_to_hindsight'] or float('nan'):+.1%})")
    if report.get("plots"):
        print("plots: " + ", ".join(report["plots"]))
    return 0


def _cmd_bench_handoff(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .handoff import handoff_report, markdown, save_rule
    from .report import public
    from .runner import RunParams

    report = handoff_report(model=args.model, params=RunParams(max_tokens=args.max_tokens),
                            progress=None if args.quiet else sys.stderr,
                            out_dir=Path(args.out) if args.out else None)
    if args.save is not None:
        report["saved_to"] = str(save_rule(report, args.model, None if args.save == "user" else Path(args.save)))
    print(json.dumps(public(report), indent=2) if args.json else markdown(report))
    return 0


def _cmd_bench_value(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .desktop.report import markdown, value_report, write
    from .desktop.value import CloudProfile

    cloud = CloudProfile(accuracy=args.cloud_accuracy, latency_s=args.cloud_latency_ms / 1000.0,
                         price_per_1k_usd=args.cloud_price_per_1k, wait_j=args.cloud_wait_j)
    report = value_report(args.model, data=Path(args.data) if args.data else None,
                          epsilon=args.epsilon if args.epsilon is not None else 0.10, cloud=cloud, seed=args.seed,
                          progress=None if args.quiet else sys.stderr)
    if args.out:
        write(report, Path(args.out))
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return 0


def _cmd_bench_risk(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from .report import public
    from .risk import populations, risk_report, write_risk_plot

    progress = None if args.quiet else sys.stderr
    logging.getLogger("edgeroute").setLevel(logging.ERROR)  # a replay's drift warnings are its results
    report = risk_report(populations(progress), epsilon=args.epsilon, before=args.before, after=args.after,
                         seeds=args.seeds, sim_seeds=args.sim_seeds, price_per_1k_usd=args.cloud_price_per_1k,
                         progress=progress)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "risk.json").write_text(json.dumps(public(report), indent=2), encoding="utf-8")
        report["plots"] = [str(write_risk_plot(report, out))]
    if args.json:
        print(json.dumps(public(report), indent=2))
        return 0
    print(markdown_risk(report))
    return 0


def markdown_risk(r: dict[str, Any]) -> str:
    """The risk replay as a short markdown report."""
    f = lambda v, p=3: "n/a" if v is None else f"{v:.{p}f}"  # noqa: E731
    lines = [f"edgeroute bench risk: epsilon {r['epsilon']:g} (error among accepted answers), delta {r['delta']:g}; "
             f"start threshold {r['start_threshold']:.2f} ({r['setup']['start']})",
             f"stream: {r['setup']['before']}, then {r['setup']['after']}; {r['setup']['seeds']} replays each; "
             f"cloud {r['setup']['cloud']}",
             "accepted error at the start threshold: " + ", ".join(
                 f"{k} {f(v)}" for k, v in r["population_error_at_start_threshold"].items())
             + f"; oracle on the held-out families: coverage {f(r['oracle_on_heldout']['coverage'])} at threshold "
               f"{f(r['oracle_on_heldout']['threshold'], 2)}; novel share " + ", ".join(
                 f"{k} {f(v)}" for k, v in r["novel_share"].items()),
             "", "| policy | accepted error, last 1000 | coverage, last 1000 | x oracle | drift flagged after (median) "
             "| cloud share | audits / 1000 | audit US$ / 1000 | J / query |", "|---|---|---|---|---|---|---|---|---|"]
    for name, p in r["policies"].items():
        d = p["queries_to_detect"]
        det = "never" if d["median"] is None else f"{d['median']:.0f} ({d['detected']}/{d['of']})"
        lines.append(f"| {name} | {f(p['final_accepted_error'])} | {f(p['final_coverage'])} | "
                     f"{f(p['coverage_vs_oracle'], 2)} | {det} | {f(p['cloud_share'])} | {p['audits_per_1000']:.1f} | "
                     f"{p['audit_cost_usd_per_1000']:.5f} | {p['joules_per_query']:.2f} |")
    s = r["simulations"]
    lines += ["", f"without a shift ({s['false_alarm_replays']} replays of {s['length']} calibration queries, audit "
                  f"rate {s['audit_rate']:g}): drift flagged in {s['false_alarm_rate']:.1%} (target <= "
                  f"{r['delta']:.0%})",
              "upper bound covering the true accepted error at every check: " + ", ".join(
                  f"{k} {v['covered_share']:.1%} of {v['replays']} replays ({v['checks']} checks)"
                  for k, v in s["validity"].items()) + f" (target >= {1 - r['delta']:.0%})",
              f"longer ({r['long_horizon']['replays']} replays, {r['long_horizon']['after']} queries after the shift): "
              + "; ".join(f"{k}: first raise after {f(v['first_raise_after'], 0)} queries ({v['raised_in']}/{v['of']}), "
                          f"threshold {v['final_threshold_median']:.2f}, accepted error {f(v['accepted_error_last_2000'])} "
                          f"at coverage {v['coverage_last_2000']:.3f} over the last 2000"
                          for k, v in r["long_horizon"]["policies"].items()),
              "targets: " + ", ".join(f"{k} {'met' if v else ('n/a' if v is None else 'MISSED')}"
                                      for k, v in r["targets"].items()),
              f"({r['elapsed_s']} s)"]
    if r.get("plots"):
        lines.append("plots: " + ", ".join(r["plots"]))
    return "\n".join(lines)


def cmd_fit(args: argparse.Namespace) -> int:
    """``edgeroute fit``: fit the judgement to a GGUF (``bench.fit``) and print what it measured."""
    from .fit import markdown, run_fit

    report = run_fit(args.model, budget_minutes=args.budget_minutes, data=args.data, resume=args.resume,
                     epsilon=args.epsilon, delta=args.delta, max_tokens=args.max_tokens,
                     min_per_class=args.min_per_class, probe_margin=args.probe_margin, progress=None if args.quiet else sys.stderr)
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return 0
