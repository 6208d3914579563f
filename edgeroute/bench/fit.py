"""``edgeroute fit --model PATH``: fit the judgement to any local GGUF, within a time budget, resumably.

1. **Answers.** The model answers the fit set (``data/fitset.json``: items of ``items.jsonl`` from sources whose
   licence allows redistribution, spread over 46 families, plus held-out families), or ``--data``. Items are taken
   round-robin across families, so a short budget still spreads its labels; a family stops early once its accuracy
   is pinned down (``FAMILY_STABLE_HALF_WIDTH``). Every answer is appended to the bench cache as it is produced
   (keyed by the model's SHA-256): Ctrl-C loses nothing, ``--resume`` continues the same plan.
2. **The training-free map** (``signals.perplexity``'s features -> P(correct), a logistic regression) is fitted on
   the answers of the ``train`` split, its L2 strength chosen by leave-one-family-out (LOFO) AUROC; LOFO and
   leave-one-source-out (LOSO) AUROCs are reported with bootstrap intervals over families / sources, and the
   AUROC on the held-out families with a bootstrap interval over items.
3. **The hidden-state probes** (``probe_fit``), when the model's block outputs can be captured: the
   post-generation probe ships only when it beats the map by LOFO, the pre-generation probe when its LOFO AUROC is
   above chance and its skips transfer to sources left out (LOSO); otherwise the report (and ``fit.json``) says
   why.
4. **The threshold** is calibrated (``--epsilon``, ``--delta``, fixed-sequence Clopper-Pearson) on the answers of the
   ``calibration`` split with the Router's confidence: the probe's when it shipped, else the map's.
5. Everything is saved in ``paths.fitted_dir(sha256)``; ``Router(model=PATH)`` loads it and says so.

Nothing is claimed on too few labels: no map below ``min_per_class`` right and wrong answers, no threshold when
the calibration cannot certify epsilon; the output says how many more answers it would need.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import defaultdict
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Optional, TextIO

import numpy as np

from .. import paths
from .._errors import CalibrationError, FitError, FitInterruptedError
from ..policy.calibration import calibrate_guarantee
from ..signals.perplexity import FEATURES, MAP_FILE, LogisticMap, PerplexitySignal
from .datasets import load_items
from .grading import grade
from .metrics import auroc, auroc_interval, mean_interval, round4
from .probe_fit import fit_probes
from .runner import RunParams, run_local
from .transfer import fit_logistic

#: A family stops taking items once it has this many answers and its accuracy's 95 % Wilson half-width is below:
FAMILY_MIN_ANSWERS = 20
FAMILY_STABLE_HALF_WIDTH = 0.1
#: No map is fitted with fewer right (or wrong) answers than this in the train split.
MIN_PER_CLASS = 25
L2_GRID = (0.1, 1.0, 10.0)
CHUNK = 8  # items answered between two budget checks
FIT_FILE, CAL_FILE, CAL_MAP_FILE = "fit.json", "calibration.json", "calibration-map.json"


def fit_set(data: Optional[str] = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The items to answer, round-robin across families (held-out ones interleaved), and the fit set's metadata
    (licences). ``data``: the user's JSONL instead (its own ``split`` fields; without them every item is fitted on)."""
    if data is not None:
        items, meta = load_items(data), {"source": str(data), "licences": "the user's data"}
    else:
        raw = resources.files("edgeroute.bench").joinpath("data", "fitset.json").read_text(encoding="utf-8")
        meta = json.loads(raw)
        wanted = set(meta["fit"]) | set(meta["heldout"])
        items = [i for i in load_items() if i["id"] in wanted]
    by_family: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        by_family[item["family"]].append(item)
    order: list[dict[str, Any]] = []
    queues = [list(v) for _, v in sorted(by_family.items())]
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    return order, {k: v for k, v in meta.items() if k not in ("fit", "heldout")}


def _wilson_half_width(k: int, n: int) -> float:
    if n == 0:
        return 1.0
    z, p = 1.96, k / n
    return z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)


class Progress:
    """A one-line progress bar with the ETA (the budget's end, or the plan's at the measured pace)."""

    def __init__(self, total: int, budget_s: float, stream: Optional[TextIO]) -> None:
        self.total, self.budget_s, self.stream, self.t0, self.done = total, budget_s, stream, time.monotonic(), 0
        self._shown = 0.0

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.stream is None or (now - self._shown < 0.5 and self.done < self.total):
            return
        self._shown = now
        elapsed = now - self.t0
        pace = elapsed / max(self.done, 1)
        eta = min(self.budget_s - elapsed, pace * (self.total - self.done))
        bar = "#" * int(30 * self.done / max(self.total, 1))
        print(f"\redgeroute fit: [{bar:<30}] {self.done}/{self.total} answers, {elapsed:.0f} s, "
              f"ETA {max(eta, 0):.0f} s", end="", file=self.stream, flush=True)


def answer(items: list[dict[str, Any]], model: Any, params: RunParams, budget_s: float,
           progress: Optional[TextIO] = sys.stderr,
           on_generate: Optional[Callable[[str], None]] = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Answer ``items`` in order within ``budget_s`` (cached answers cost nothing and always count), skipping a
    family once it is stable: (items answered, their records, how many were generated now). Ctrl-C raises
    ``FitInterruptedError`` (the cache keeps what was answered)."""
    cached, _ = run_local(items, model, params, progress=None, generate=False)
    have = {r["id"]: r for r in cached}
    t0 = time.monotonic()
    bar = Progress(len(items), budget_s, progress)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    done_items, records, generated = [], [], 0
    pending: list[dict[str, Any]] = []

    def settle(batch: list[dict[str, Any]], recs: list[dict[str, Any]]) -> None:
        for item, rec in zip(batch, recs):
            done_items.append(item)
            records.append(rec)
            c = counts[item["family"]]
            c[0] += 1
            c[1] += int(grade(rec["text"], item))
        bar.step(len(batch))

    def stable(family: str) -> bool:
        n, k = counts[family]
        return n >= FAMILY_MIN_ANSWERS and _wilson_half_width(k, n) <= FAMILY_STABLE_HALF_WIDTH

    try:
        for item in items:
            if item["id"] in have:
                settle([item], [have[item["id"]]])
                continue
            if stable(item["family"]) or time.monotonic() - t0 >= budget_s:
                continue
            pending.append(item)
            if len(pending) >= CHUNK:
                recs, info = run_local(pending, model, params, progress=None, on_generate=on_generate)
                generated += info["generated"]
                settle(pending, recs)
                pending = []
        if pending and time.monotonic() - t0 < budget_s:
            recs, info = run_local(pending, model, params, progress=None, on_generate=on_generate)
            generated += info["generated"]
            settle(pending, recs)
    except KeyboardInterrupt:
        raise FitInterruptedError(
            f"interrupted after {len(records)} answers ({generated} generated now); every answer is cached: "
            "run the same command with --resume to continue") from None
    finally:
        if progress is not None:
            print(file=progress)
    return done_items, records, generated


def _lofo(x: np.ndarray, y: np.ndarray, groups: np.ndarray, l2: float) -> dict[str, float]:
    """AUROC on each group of a map fitted on the others (groups with one class are skipped)."""
    out = {}
    for g in sorted(set(groups.tolist())):
        test = groups == g
        if len(set(y[test].tolist())) < 2 or len(set(y[~test].tolist())) < 2:
            continue
        w, b = fit_logistic(x[~test], y[~test], l2=l2)
        value = auroc(x[test] @ w + b, y[test])
        if value is not None:
            out[g] = value
    return out


def _rows(items: list[dict[str, Any]], records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    keep = [i for i, r in enumerate(records) if all(f in r["signals"] for f in FEATURES)]
    x = np.array([[records[i]["signals"][f] for f in FEATURES] for i in keep], dtype=np.float64)
    y = np.array([float(grade(records[i]["text"], items[i])) for i in keep])
    return x.reshape(len(keep), len(FEATURES)), y, keep


def run_fit(model: Optional[str], *, budget_minutes: float = 30.0, data: Optional[str] = None, resume: bool = False,
            epsilon: float = 0.1, delta: float = 0.05, max_tokens: int = 64, min_per_class: int = MIN_PER_CLASS,
            probe_margin: float = 0.0, progress: Optional[TextIO] = sys.stderr, on_generate: Optional[Callable[[str], None]] = None,
            engine: Any = None) -> dict[str, Any]:
    """Fit the judgement to ``model`` (see the module docstring); returns the report (also saved as ``fit.json``).
    ``probe_margin``: the LOFO AUROC a probe must gain over the map to ship. ``engine``: an already loaded
    ``LlamaCppModel`` (tests)."""
    from ..local.llama import LlamaCppModel

    t_start = time.perf_counter()
    local = engine or LlamaCppModel(model)
    try:
        sha = local.fingerprint
        out_dir = paths.fitted_dir(sha)
        plan_path = out_dir / "plan.json"
        budget_s = budget_minutes * 60.0
        if resume and plan_path.is_file():
            plan = json.loads(plan_path.read_text(encoding="utf-8"))
            data, max_tokens = plan.get("data"), int(plan.get("max_tokens", max_tokens))
            budget_s = max(budget_s, float(plan.get("budget_s", 0.0)))
        items, meta = fit_set(data)
        out_dir.mkdir(parents=True, exist_ok=True)
        _write(plan_path, {"data": data, "max_tokens": max_tokens, "budget_s": budget_s, "created": time.time()})
        params = RunParams(max_tokens=max_tokens)
        done, records, generated = answer(items, local, params, budget_s, progress, on_generate)
        if not records:
            raise FitError(f"no answers within the budget ({budget_minutes:g} min): give it more time")
        report = _fit(local, done, records, epsilon, delta, min_per_class, probe_margin, out_dir)
        rates = [r["completion_tokens"] / (r["latency_ms"] / 1000.0) for r in records
                 if r.get("completion_tokens") and r.get("latency_ms")]
        joules = [r["joules"] for r in records if r.get("joules") is not None]
        report.update({
            "decode_tok_s_median": round(float(np.median(rates)), 1) if rates else None,
            "joules_per_answer_mean": round(float(np.mean(joules)), 3) if joules else None,
            "energy_method": next((r.get("energy_method") for r in records if r.get("energy_method")), None),
            "model": str(local.path), "model_sha256": sha, "prompt_format": getattr(local, "prompt_format", "chat"),
            "answers": len(records), "generated_now": generated, "resumed": resume,
            "budget_minutes": budget_minutes, "fit_set": meta, "saved_in": str(out_dir),
            "elapsed_s": round(time.perf_counter() - t_start, 1),
        })
        _write(out_dir / FIT_FILE, report)
        return report
    finally:
        if engine is None:
            local.close()


def _fit(local: Any, items: list[dict[str, Any]], records: list[dict[str, Any]], epsilon: float, delta: float,
         min_per_class: int, probe_margin: float, out_dir: Path) -> dict[str, Any]:
    items = [{**i, "split": i.get("split") or _hash_split(i["id"])} for i in items]
    x, y, keep = _rows(items, records)
    split = np.array([items[i]["split"] for i in keep])
    family = np.array([items[i]["family"] for i in keep])
    source = np.array([items[i].get("source", items[i]["family"]) for i in keep])
    train = split == "train"
    report: dict[str, Any] = {"accuracy": round(float(y.mean()), 4) if len(y) else None,
                              "labels": {"train": int(train.sum()), "calibration": int((split == "calibration").sum()),
                                         "test": int((split == "test").sum()),
                                         "heldout": int((split == "heldout-families").sum())},
                              "refused": {}}
    right, wrong = int(y[train].sum()), int((1 - y[train]).sum())
    if min(right, wrong) < min_per_class:
        need = min_per_class - min(right, wrong)
        report["refused"]["map"] = (f"{right} right and {wrong} wrong answers in the train split; a map needs "
                                    f"{min_per_class} of each: about {need} more {'right' if right < wrong else 'wrong'}"
                                    f" answers (a longer budget)")
        report["refused"]["threshold"] = "no map to calibrate"
        report["probes"], _ = fit_probes(local, items, records, map_lofo=None, min_per_class=min_per_class,
                                         margin=probe_margin, out_dir=out_dir, trained_on="")
        return report
    mean, scale = x[train].mean(axis=0), x[train].std(axis=0) + 1e-9
    z = (x - mean) / scale
    lofo = {l2: _lofo(z[train], y[train], family[train], l2) for l2 in L2_GRID}
    l2 = max(L2_GRID, key=lambda v: np.mean(list(lofo[v].values())) if lofo[v] else -1)
    loso = _lofo(z[train], y[train], source[train], l2)
    w, b = fit_logistic(z[train], y[train], l2=l2)
    mapping = LogisticMap(tuple(mean.tolist()), tuple(scale.tolist()), tuple(w.tolist()), float(b),
                          model_sha256=local.fingerprint, engine=local.golden(),
                          info=f"edgeroute fit, {int(train.sum())} train answers, L2 {l2:g} by LOFO")
    report["map"] = {"l2": l2, "lofo_auroc_mean": round4(np.mean(list(lofo[l2].values())) if lofo[l2] else None),
                     "lofo_auroc_interval": mean_interval(list(lofo[l2].values())), "lofo_families": len(lofo[l2]),
                     "loso_auroc_mean": round4(np.mean(list(loso.values())) if loso else None),
                     "loso_auroc_interval": mean_interval(list(loso.values())), "loso_sources": len(loso)}
    conf = 1.0 / (1.0 + np.exp(-np.clip(z @ w + b, -40, 40)))
    for name, mask in (("test", split == "test"), ("heldout", split == "heldout-families")):
        value = auroc(conf[mask], y[mask]) if mask.any() else None
        report["map"][f"{name}_auroc"] = round4(value)
        report["map"][f"{name}_auroc_interval"] = auroc_interval(conf[mask], y[mask]) if value is not None else None
        report["map"][f"{name}_labels"] = int(mask.sum())
    _write(out_dir / MAP_FILE, mapping.to_dict())
    cal_mask = split == "calibration"
    trained_on = f"edgeroute fit: {int(train.sum())} answers of the train split, {len(set(family[train]))} families"
    report["probes"], probe_cal = fit_probes(local, items, records, map_lofo=report["map"]["lofo_auroc_mean"],
                                             min_per_class=min_per_class, margin=probe_margin, out_dir=out_dir,
                                             trained_on=trained_on)
    signal = PerplexitySignal(mapping, model_sha256=local.fingerprint)
    families = len(set(family[cal_mask].tolist()))
    for path in out_dir.glob("calibration*.json"):
        path.unlink()
    # the map's threshold too, when the probe is the confidence: a Router with probe=False still gets a guarantee
    map_file = CAL_MAP_FILE if probe_cal is not None else CAL_FILE
    map_cal = _calibrate(local, conf[cal_mask], y[cal_mask], signal.confidence_id, epsilon, delta, families,
                         out_dir / map_file)
    cal = map_cal if probe_cal is None else _calibrate(local, *probe_cal, epsilon, delta, families, out_dir / CAL_FILE)
    if isinstance(cal, str):
        report["refused"]["threshold"] = cal
        return report
    report["threshold"] = {"confidence": "probe" if probe_cal is not None else "map",
                           "threshold": cal.threshold, "epsilon": epsilon, "delta": delta, "n": cal.n,
                           "risk_upper_bound": cal.risk_upper_bound, "expected_cloud_rate": cal.expected_cloud_rate}
    if probe_cal is not None:
        report["threshold"]["map_threshold"] = map_cal if isinstance(map_cal, str) else map_cal.threshold
    return report


def _calibrate(local: Any, conf: np.ndarray, y: np.ndarray, confidence_id: str, epsilon: float, delta: float,
               families: int, path: Path) -> Any:
    """The calibration of ``conf`` saved to ``path`` (a ``Calibration``), or why it cannot certify ``epsilon``."""
    try:
        cal = calibrate_guarantee(conf, y > 0.5, epsilon, delta)
    except CalibrationError as exc:
        return str(exc)
    cal = replace(cal, model=local.fingerprint, confidence_id=confidence_id, engine=local.golden(),
                  source=f"edgeroute fit on {time.strftime('%Y-%m-%d')}",
                  covers=f"{len(y)} answers of the fit set's calibration split ({families} families); traffic "
                         "like that mixture only")
    _write(path, cal.to_dict())
    return cal


def _hash_split(item_id: str) -> str:
    """A user's item without a ``split``: a quarter (by a hash of its id) calibrates, the rest trains."""
    import zlib

    return "calibration" if zlib.crc32(item_id.encode("utf-8")) % 4 == 0 else "train"


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False), encoding="utf-8")
    os.replace(tmp, path)


def markdown(report: dict[str, Any]) -> str:
    """The fit's result in a few lines."""
    m, t, f = report.get("map"), report.get("threshold"), lambda v: "n/a" if v is None else f"{v:.3f}"
    lines = [f"edgeroute fit: {report['model']} (sha256 {report['model_sha256'][:12]}, prompt format "
             f"{report['prompt_format']}): {report['answers']} answers ({report['generated_now']} generated now), "
             f"accuracy {f(report['accuracy'])}, {report['elapsed_s']} s; {report['decode_tok_s_median']} tok/s "
             f"(median), {report['joules_per_answer_mean']} J per answer ({report['energy_method']})"]
    if m:
        lines.append(f"map: LOFO AUROC {f(m['lofo_auroc_mean'])} {m['lofo_auroc_interval']} over "
                     f"{m['lofo_families']} families; LOSO {f(m['loso_auroc_mean'])} {m['loso_auroc_interval']} over "
                     f"{m['loso_sources']} sources ({report['labels']['train']} train labels); held-out AUROC "
                     f"{f(m['heldout_auroc'])} {m['heldout_auroc_interval']} ({m['heldout_labels']} labels); test "
                     f"{f(m['test_auroc'])} ({m['test_labels']} labels)")
    lines += _probe_lines(report.get("probes") or {}, f)
    if t:
        lines.append(f"threshold {t['threshold']:.2f} on the {t.get('confidence', 'map')}'s confidence: wrong local answers <= {t['epsilon']:g} of queries with "
                     f"probability >= {1 - t['delta']:g} (n={t['n']} calibration labels)")
    for what, why in report["refused"].items():
        lines.append(f"not fitted: {what}: {why}")
    lines.append(f"saved in {report['saved_in']}; Router(model=...) loads it.")
    return "\n".join(lines)


def _probe_lines(probes: dict[str, Any], f: Callable[[Optional[float]], str]) -> list[str]:
    """The probes' part of ``markdown``: why none was fitted, or each probe's figures and whether it shipped."""
    where = f"{probes.get('architecture')}, block {probes.get('block')} ({probes.get('node')})"
    if "why" in probes:
        return [f"probes: not fitted ({where}): {probes['why']}"]
    out = []
    for kind, name in (("post", "post-generation probe"), ("pre", "pre-generation probe")):
        p = probes.get(kind)
        if not p:
            continue
        lofo = p["lofo_auroc"]
        line = (f"{name} ({where}; {p['spec']}): LOFO AUROC {f(lofo['mean'])} {lofo['interval']} over "
                f"{lofo['groups']} families ({probes['labels']['train']} train labels)")
        if kind == "post":
            line += (f"; LOSO {f(p['loso_auroc']['mean'])} {p['loso_auroc']['interval']}; held-out AUROC "
                     f"{f(p['heldout_auroc']['auroc'])} {p['heldout_auroc']['interval']} "
                     f"({p['heldout_auroc']['labels']} labels)")
        elif p.get("shipped"):
            line += f"; skip threshold {p['skip_threshold']:.3f}: {p['skip_bound']}"
        out.append(line + ("; shipped" if p.get("shipped") else f"; not shipped: {p.get('why')}"))
    return out
