"""``edgeroute bench risk``: a replay of a distribution shift through the online risk control, from the bench cache.

Setup: the cached local answers with the Router's confidence, their grades, their joules, and each prompt's novelty
(the shipped novelty map); a cloud that answers correctly (so a label is the local answer's grade). The threshold
to start from is calibrated, in selective mode (wrong <= epsilon of the accepted answers, probability >= 1 - delta),
on the calibration split. The stream draws queries (seeded, with replacement) from the calibration split, then
from the held-out families. A fixed threshold is compared with the audited control (``risk.control``, the same
``RiskController`` the Router runs, in memory) at several audit rates. Two simulations over seeded replays check the
statistics: without a shift (calibration traffic only), how often the drift flag goes up (false alarms, target
<= delta); and whether the upper bound at the threshold in force covers the true accepted-answer error of that
threshold on the traffic's population at every checkpoint (target >= 1 - delta of the replays).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TextIO

import numpy as np

from ..policy.calibration import calibrate_selective
from ..risk.control import RiskController

#: Epsilons tried, strict to lenient, when none is given: the first the calibration split certifies is used.
EPSILON_LADDER = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
AUDIT_RATES = (0.02, 0.05, 0.1)
CHECK_EVERY = 100  # queries between the validity checks
ROLL = 200  # queries in the plot's rolling window


@dataclass(frozen=True)
class Population:
    """The cached answers of one split: confidence, correct (0/1), device joules, cloud tokens, novel (0/1/-1)."""

    name: str
    confidence: np.ndarray
    correct: np.ndarray
    joules: np.ndarray
    tokens: np.ndarray
    novel: np.ndarray

    def accepted_error(self, t: float) -> Optional[float]:
        a = self.confidence >= t
        return float(1.0 - self.correct[a].mean()) if a.any() else None

    def oracle(self, epsilon: float) -> tuple[float, Optional[float]]:
        """(coverage, threshold) of the most lenient threshold whose accepted error here is <= epsilon."""
        order = np.argsort(-self.confidence, kind="stable")
        wrong = np.cumsum(1.0 - self.correct[order]) / np.arange(1, len(order) + 1)
        ok = np.flatnonzero(wrong <= epsilon + 1e-12)
        if ok.size == 0:
            return 0.0, None
        k = int(ok.max())
        return (k + 1) / len(order), float(self.confidence[order][k])


def populations(progress: Optional[TextIO] = sys.stderr) -> dict[str, Population]:
    """The calibration, test and held-out-families populations from the bench cache (generated where missing)."""
    import warnings

    from ..local.llama import LlamaCppModel
    from ..risk.novelty import NoveltyMap
    from ..signals import default_signals
    from .datasets import load_items
    from .grading import grade
    from .runner import RunParams, decode_vector, rescore, run_local

    model = LlamaCppModel()
    try:
        signals = default_signals(model)
        novelty = NoveltyMap.for_model(model.fingerprint, model.n_embd)
        out = {}
        for split in ("calibration", "test", "heldout-families"):
            items = load_items(split=split)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                records, _ = run_local(items, model, RunParams(), progress=progress, need_hidden=True)
            records = rescore(records, items, signals)
            nov = []
            for r in records:
                h = decode_vector(r.get("prompt_hidden"))
                nov.append(-1 if novelty is None or h is None else int(novelty.novel(h)))
            out[split] = Population(
                split, np.array([r["confidence"] if r["confidence"] is not None else 0.0 for r in records]),
                np.array([float(grade(r["text"], it)) for it, r in zip(items, records)]),
                np.array([float(r["joules"] or 0.0) for r in records]),
                np.array([r.get("prompt_tokens", 0) + r.get("completion_tokens", 0) for r in records]),
                np.array(nov))
    finally:
        model.close()
    return out


def choose_start(cal: Population, epsilon: Optional[float], delta: float) -> tuple[float, float]:
    """(epsilon, threshold): the given epsilon, or the strictest of ``EPSILON_LADDER`` the calibration split
    certifies; the threshold calibrated on it in selective mode."""
    from .._errors import CalibrationError

    for eps in (epsilon,) if epsilon is not None else EPSILON_LADDER:
        try:
            return eps, calibrate_selective(cal.confidence, cal.correct > 0.5, eps, delta).threshold
        except CalibrationError:
            continue
    raise CalibrationError(f"no epsilon in {EPSILON_LADDER} is certified on the calibration split")


def replay(pops: list[tuple[Population, int]], *, t0: float, epsilon: float, delta: float,
           audit_rate: Optional[float], seed: int, cloud_wait_j: float = 0.05,
           truth: Optional[Population] = None) -> dict[str, Any]:
    """One seeded stream (``(population, length)`` segments in order) through a fixed threshold (``audit_rate``
    None) or the control. Per query: threshold, accepted, correct, cloud calls, joules, drift; with ``truth``, the
    validity checks (does the upper bound cover ``truth``'s accepted error at the threshold in force?)."""
    rng = np.random.default_rng(seed)  # the queries: the same stream for every policy of one seed
    coins = np.random.default_rng(seed + 1_000_003)  # the audits
    control = None
    if audit_rate is not None:
        expected = 0.05 if any(p.novel.max() >= 0 for p, _ in pops) else None
        control = RiskController(None, "replay", threshold=t0, source="calibration split", epsilon=epsilon,
                                 delta=delta, audit_rate=audit_rate, expected_novel=expected, seed=seed)
    rows: dict[str, list[float]] = {k: [] for k in ("threshold", "accepted", "correct", "calls", "joules", "drift")}
    covered, checks = True, 0
    streams = [(pop, rng.integers(0, len(pop.confidence), size=length)) for pop, length in pops]
    for pop, idx in streams:
        for i in idx:
            c, y = float(pop.confidence[i]), float(pop.correct[i])
            t = control.threshold if control is not None else t0
            accepted = c >= t
            calls = 0 if accepted else 1
            if control is not None:
                novel = None if pop.novel[i] < 0 else bool(pop.novel[i])
                if accepted:
                    audited = coins.random() < audit_rate
                    calls += int(audited)
                    control.observe(c, True, float(audit_rate), (1.0 - y) / audit_rate if audited else 0.0,
                                    novel, labelled=audited)
                else:
                    control.observe(c, False, 1.0, 1.0 - y, novel, labelled=True)
                if truth is not None and len(rows["threshold"]) % CHECK_EVERY == 0:
                    true = truth.accepted_error(control.threshold)
                    info = control.info()
                    if true is not None and info.upper is not None and info.labels > 0:
                        checks += 1
                        covered &= info.upper + 1e-9 >= true
            rows["threshold"].append(t)
            rows["accepted"].append(float(accepted))
            rows["correct"].append(y)
            rows["calls"].append(calls)
            rows["joules"].append(float(pop.joules[i]) + calls * cloud_wait_j)
            rows["drift"].append(float(control is not None and control.drift is not None))
    out: dict[str, Any] = {k: np.asarray(v) for k, v in rows.items()}
    out["covered"], out["checks"] = covered, checks
    return out


def _window(run: dict[str, Any], lo: int, hi: int) -> dict[str, Optional[float]]:
    acc = run["accepted"][lo:hi] > 0.5
    wrong = 1.0 - run["correct"][lo:hi]
    return {"accepted_error": float(wrong[acc].mean()) if acc.any() else None, "coverage": float(acc.mean())}


def risk_report(pops: dict[str, Population], *, epsilon: Optional[float] = None, delta: float = 0.05,
                before: int = 1000, after: int = 2000, seeds: int = 20, sim_seeds: int = 200,
                sim_length: int = 2000, long_after: int = 20_000, long_seeds: int = 5,
                price_per_1k_usd: float = 0.0006,
                progress: Optional[TextIO] = sys.stderr) -> dict[str, Any]:
    """The replay's figures (see the module docstring)."""
    t_start = time.perf_counter()
    cal, held = pops["calibration"], pops["heldout-families"]
    eps, t0 = choose_start(cal, epsilon, delta)
    oracle_cov, oracle_t = held.oracle(eps)
    settle = (before + after - 1000, before + after)  # the last 1,000 queries: "within 1,000 queries" of the shift
    rows: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    for rate in (None, *AUDIT_RATES):
        name = "fixed threshold" if rate is None else f"audited control, rate {rate:g}"
        runs = [replay([(cal, before), (held, after)], t0=t0, epsilon=eps, delta=delta, audit_rate=rate, seed=s)
                for s in range(seeds)]
        if progress is not None:
            print(f"bench risk: {name}: {seeds} replays", file=progress, flush=True)
        detect = [int(np.argmax(r["drift"][before:] > 0.5)) if (r["drift"][before:] > 0.5).any() else None
                  for r in runs]
        final = [_window(r, *settle) for r in runs]
        errs = [f["accepted_error"] for f in final if f["accepted_error"] is not None]
        cov = float(np.mean([f["coverage"] for f in final]))
        audits = [float(r["calls"][r["accepted"] > 0.5].sum()) for r in runs]
        tokens = float(np.mean(held.tokens))
        rows[name] = {
            "audit_rate": rate,
            "before_shift": _window(runs[0], 0, before) | {"accepted_error_mean": _mean(
                [_window(r, 0, before)["accepted_error"] for r in runs])},
            "final_accepted_error": float(np.mean(errs)) if errs else None,
            "final_accepted_error_replays_with_answers": len(errs),
            "final_coverage": cov,
            "coverage_vs_oracle": cov / oracle_cov if oracle_cov > 0 else None,
            "queries_to_detect": {"median": _median([d for d in detect if d is not None]),
                                  "detected": sum(d is not None for d in detect), "of": seeds},
            "cloud_share": float(np.mean([r["calls"].sum() / len(r["calls"]) for r in runs])),
            "audits_per_1000": float(np.mean(audits)) * 1000.0 / (before + after),
            "audit_cost_usd_per_1000": float(np.mean(audits)) * tokens * price_per_1k_usd / (before + after),
            "joules_per_query": float(np.mean([r["joules"].mean() for r in runs])),
            "final_threshold_median": float(np.median([r["threshold"][-1] for r in runs])),
        }
        curves[name] = {k: _rolling(np.mean([r[k] for r in runs], axis=0)) for k in ("threshold",)}
        curves[name]["accepted_error"] = _rolling_error(runs)
        curves[name]["coverage"] = _rolling(np.mean([r["accepted"] for r in runs], axis=0))
    sim = simulations(cal, held, t0=t0, epsilon=eps, delta=delta, seeds=sim_seeds, length=sim_length,
                      progress=progress)
    long: dict[str, Any] = {}
    long_curves: dict[str, Any] = {}
    for rate in (0.05, 0.1):
        runs = [replay([(cal, before), (held, long_after)], t0=t0, epsilon=eps, delta=delta, audit_rate=rate,
                       seed=s) for s in range(long_seeds)]
        raised = [int(np.flatnonzero(np.diff(r["threshold"][before:]) > 0)[0]) + 1
                  if (np.diff(r["threshold"][before:]) > 0).any() else None for r in runs]
        end = [_window(r, before + long_after - 2000, before + long_after) for r in runs]
        long_curves[f"audited control, rate {rate:g}"] = {
            "threshold": np.mean([r["threshold"] for r in runs], axis=0)[::50].tolist(),
            "accepted_error": _rolling_error(runs)[::50]}
        long[f"audited control, rate {rate:g}"] = {
            "first_raise_after": _median([x for x in raised if x is not None]),
            "raised_in": sum(x is not None for x in raised), "of": long_seeds,
            "final_threshold_median": float(np.median([r["threshold"][-1] for r in runs])),
            "accepted_error_last_2000": _mean([e["accepted_error"] for e in end]),
            "coverage_last_2000": float(np.mean([e["coverage"] for e in end]))}
        if progress is not None:
            print(f"bench risk: long replay at audit rate {rate:g}: {long_seeds} x {long_after} queries",
                  file=progress, flush=True)
    target_row = rows["audited control, rate 0.05"]
    report = {
        "epsilon": eps, "delta": delta, "start_threshold": t0,
        "setup": {"before": f"{before} queries drawn from the calibration split",
                  "after": f"{after} queries drawn from the held-out families", "seeds": seeds,
                  "cloud": "answers correctly (a label is the local answer's grade)",
                  "start": f"selective calibration on the calibration split: threshold {t0:.2f} for epsilon {eps:g}"},
        "population_error_at_start_threshold": {p.name: p.accepted_error(t0) for p in pops.values()},
        "oracle_on_heldout": {"coverage": oracle_cov, "threshold": oracle_t},
        "novel_share": {p.name: float(np.mean(p.novel == 1)) if (p.novel >= 0).any() else None
                        for p in pops.values()},
        "policies": rows,
        "simulations": sim,
        "long_horizon": {"after": long_after, "replays": long_seeds, "policies": long},
        "targets": {
            "final_accepted_error_le_eps_plus_0.02": _le(target_row["final_accepted_error"], eps + 0.02),
            # "at the same time": the coverage counts only where the error target holds too
            "coverage_ge_half_oracle_at_that_error": (
                None if oracle_cov == 0 else bool(_le(target_row["final_accepted_error"], eps + 0.02))
                and target_row["final_coverage"] >= 0.5 * oracle_cov),
            "false_alarms_le_delta": sim["false_alarm_rate"] <= delta,
            "coverage_of_bound_ge_1_minus_delta": all(v["covered_share"] >= 1 - delta
                                                      for v in sim["validity"].values()),
        },
        "elapsed_s": round(time.perf_counter() - t_start, 1),
        "_curves": curves, "_before": before, "_long_curves": long_curves,
    }
    return report


def simulations(cal: Population, held: Population, *, t0: float, epsilon: float, delta: float, seeds: int,
                length: int, audit_rate: float = 0.05, progress: Optional[TextIO] = sys.stderr) -> dict[str, Any]:
    """False alarms without a shift (calibration traffic), and the bound's coverage on stationary traffic from
    each population (the calibration split; the held-out families from the first query)."""
    alarms = 0
    validity: dict[str, Any] = {}
    for pop in (cal, held):
        covered = checks = 0
        for s in range(seeds):
            run = replay([(pop, length)], t0=t0, epsilon=epsilon, delta=delta, audit_rate=audit_rate,
                         seed=10_000 + s, truth=pop)
            covered += int(run["covered"])
            checks += run["checks"]
            if pop is cal:
                alarms += int((run["drift"] > 0.5).any())
        validity[pop.name] = {"covered_share": covered / seeds, "replays": seeds, "checks": checks}
        if progress is not None:
            print(f"bench risk: simulation on {pop.name}: {seeds} replays", file=progress, flush=True)
    return {"audit_rate": audit_rate, "length": length, "false_alarm_rate": alarms / seeds,
            "false_alarm_replays": seeds, "validity": validity}


def _mean(v: list[Optional[float]]) -> Optional[float]:
    w = [x for x in v if x is not None]
    return float(np.mean(w)) if w else None


def _median(v: list[int]) -> Optional[float]:
    return float(np.median(v)) if v else None


def _le(x: Optional[float], bound: float) -> Optional[bool]:
    return None if x is None else x <= bound


def _rolling(x: np.ndarray) -> list[float]:
    c = np.cumsum(np.r_[0.0, x])
    return ((c[ROLL:] - c[:-ROLL]) / ROLL).tolist()


def _rolling_error(runs: list[dict[str, Any]]) -> list[Optional[float]]:
    acc = np.mean([r["accepted"] for r in runs], axis=0)
    wrong = np.mean([r["accepted"] * (1.0 - r["correct"]) for r in runs], axis=0)
    a, w = np.cumsum(np.r_[0.0, acc]), np.cumsum(np.r_[0.0, wrong])
    na, nw = a[ROLL:] - a[:-ROLL], w[ROLL:] - w[:-ROLL]
    return [float(x / y) if y > 1e-9 else None for x, y in zip(nw, na)]


def write_risk_plot(report: dict[str, Any], out_dir: Path) -> Path:
    """``risk.png``: accepted-answer error, coverage and threshold over the replayed stream, per policy."""
    from .plots import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.2))
    for name, curve in report["_curves"].items():
        x = range(ROLL, ROLL + len(curve["coverage"]))
        axes[0].plot(x, [np.nan if v is None else v for v in curve["accepted_error"]], lw=1.4, label=name)
        axes[1].plot(x, curve["coverage"], lw=1.4, label=name)
        axes[2].plot(x, curve["threshold"], lw=1.4, label=name)
    axes[0].axhline(report["epsilon"], color="k", ls="--", lw=1, label="epsilon")
    for ax, title in zip(axes, ("error among accepted answers", "share answered locally", "threshold (mean)")):
        ax.axvline(report["_before"], color="r", ls=":", lw=1)
        ax.set_title(f"{title}, rolling {ROLL}")
        ax.set_xlabel("query (shift at the red line)")
        ax.grid(alpha=0.3)
    axes[2].set_ylim(0, 1)
    long_after = report.get("long_horizon", {}).get("after", 0)
    for name, curve in report.get("_long_curves", {}).items():
        x = [i * 50 for i in range(len(curve["threshold"]))]
        axes[3].plot(x, curve["threshold"], lw=1.4, label=f"{name}: threshold")
        axes[3].plot([ROLL + i * 50 for i in range(len(curve["accepted_error"]))],
                     [np.nan if v is None else v for v in curve["accepted_error"]], lw=1, ls="--",
                     label=f"{name}: accepted error")
    axes[3].axhline(report["epsilon"], color="k", ls="--", lw=1)
    axes[3].axvline(report["_before"], color="r", ls=":", lw=1)
    axes[3].set_title(f"longer: {long_after} queries after the shift")
    axes[3].set_xlabel("query")
    axes[3].set_ylim(0, 1)
    axes[3].grid(alpha=0.3)
    axes[3].legend(fontsize=7)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "risk.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
