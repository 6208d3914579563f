"""``edgeroute bench handoff``: the mid-stream handoff replayed on the harness's cached answers, no regeneration.

Every cached answer keeps its per-token logprobs, entropies and ids, so each prefix the engine's watch would have
seen (every ``every`` tokens while the decode is still running) can be scored after the fact. The prefix model is
fitted on ``train``, the floor chosen on ``calibration`` (at most ``max_cut`` of its accepted-and-correct answers
cut: a conformal order statistic of each answer's lowest prefix score), and the result reported on ``test`` and
``heldout-families`` separately, which neither choice saw.

Rows of the ablation, each adding one source of saving to the rows before it: ``repetition`` (the loop detector,
firing on the prefix), ``stats`` (the running NLL and entropy statistics). A component ships only when, on the
calibration split, it adds at least ``MIN_GAIN`` of saved decode to the rows before it. The hidden-state prefix
probe is not a row: the cache holds each answer's hidden states at its end, not at its prefixes, so it cannot be
replayed without regenerating (the report says so).

Decode time and energy saved are token-proportional shares of each escalated answer's decode (its latency less the
prefill share measured for the policy replay, ``replay.PREFILL_SHARE``); so is the time before the cloud is asked.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, TextIO

import numpy as np

from .._constants import HANDOFF_EVERY_TOKENS, HANDOFF_MAX_CUT, REPEAT_MIN_LOOP_TOKENS
from ..signals.prefix import PREFIX_FEATURES, HandoffRule, PrefixModel, prefix_features
from ..signals.repetition import ends_in_loop, loop_tail
from .metrics import round4

#: Saved share of escalated decode a component must add (on the calibration split) to ship.
MIN_GAIN = 0.01
REPORT_SPLITS = ("test", "heldout-families")


class Answer:
    """One cached answer as the replay needs it: its prefix checkpoints and what the Router finally did."""

    def __init__(self, record: dict[str, Any], correct: bool, threshold: float, every: int) -> None:
        self.ids = [int(t) for t in record.get("token_ids") or []]
        self.lps = [float(v) for v in record.get("token_logprobs") or []]
        self.ents = [float(v) for v in record.get("token_entropies") or []]
        self.n = len(self.ids)
        conf = record.get("confidence")
        defect = bool(record.get("truncated")) or ends_in_loop(self.ids)
        self.accepted = conf is not None and conf >= threshold and not defect
        self.correct = bool(correct)
        self.latency_s = float(record.get("latency_ms") or 0.0) / 1000.0
        self.joules = float(record.get("joules") or 0.0)
        #: The checkpoints: prefix lengths at which the watch looks while more tokens follow.
        self.checks = [t for t in range(every, self.n, every)] if len(self.lps) == self.n else []
        self.loop_at = next((t for t in self.checks if loop_tail(self.ids[:t])[0] >= REPEAT_MIN_LOOP_TOKENS), None)
        self._x: Optional[np.ndarray] = None
        self._scored: Optional[tuple[PrefixModel, np.ndarray]] = None
        self.every = every

    @property
    def keep(self) -> bool:
        """The answers a handoff must not cut: accepted and correct."""
        return self.accepted and self.correct

    def features(self) -> np.ndarray:
        if self._x is None:
            rows = [prefix_features(self.ids[:t], self.lps[:t], self.ents[:t], self.every) for t in self.checks]
            self._x = np.asarray(rows).reshape(len(self.checks), len(PREFIX_FEATURES))
        return self._x

    def scores(self, model: PrefixModel) -> np.ndarray:
        """``model``'s score at every checkpoint (kept for the last model asked)."""
        if self._scored is None or self._scored[0] is not model:
            self._scored = (model, model.scores(self.features()))
        return self._scored[1]

    def decode_s(self, prefill_share: float) -> float:
        return self.latency_s * (1.0 - prefill_share)


def fit_prefix_model(answers: Sequence[Answer], l2: float = 1.0) -> PrefixModel:
    """Logistic P(accepted and correct | prefix) over every checkpoint of every answer, each answer weighing one."""
    from .transfer import fit_logistic

    xs, ys, ws = [], [], []
    for a in answers:
        if a.checks:
            xs.append(a.features())
            ys += [float(a.keep)] * len(a.checks)
            ws += [1.0 / len(a.checks)] * len(a.checks)
    x = np.vstack(xs)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    w, b = fit_logistic((x - mean) / scale, np.asarray(ys), l2=l2, weights=np.asarray(ws))
    return PrefixModel(tuple(float(v) for v in w), float(b), tuple(float(v) for v in mean),
                       tuple(float(v) for v in scale))


def fire_at(a: Answer, components: Sequence[str], model: Optional[PrefixModel],
            floor: Optional[float]) -> Optional[int]:
    """The prefix length at which the rule would stop ``a`` (None: it completes)."""
    first: Optional[int] = a.loop_at if "repetition" in components else None
    if "stats" in components and model is not None and floor is not None and a.checks:
        scores = a.scores(model)
        below = np.nonzero(scores < floor)[0]
        if len(below):
            t = a.checks[int(below[0])]
            first = t if first is None else min(first, t)
    return first


def choose_floor(answers: Sequence[Answer], model: PrefixModel, components: Sequence[str],
                 max_cut: float) -> tuple[float, dict[str, Any]]:
    """The highest floor that cuts at most ``max_cut`` of the accepted-and-correct answers in exchangeable draws:
    the k-th lowest of their lowest prefix scores, k = floor(max_cut (n + 1)) (an answer the repetition component
    cuts anyway counts as cut at any floor)."""
    lows = []
    for a in answers:
        if not a.keep:
            continue
        if "repetition" in components and a.loop_at is not None:
            lows.append(-math.inf)
        elif a.checks:
            lows.append(float(a.scores(model).min()))
        else:
            lows.append(math.inf)  # too short to be checked: never cut
    n = len(lows)
    k = int(math.floor(max_cut * (n + 1)))
    ordered = sorted(lows)
    floor = 0.0 if k < 1 or not math.isfinite(ordered[k - 1]) else ordered[k - 1]
    return floor, {"keep_answers": n, "k": k, "rule": f"k-th lowest of {n} lowest prefix scores, "
                                                      f"k = floor({max_cut:g} (n + 1))"}


def measure(answers: Sequence[Answer], components: Sequence[str], model: Optional[PrefixModel],
            floor: Optional[float], prefill_share: float) -> dict[str, Any]:
    """Decode saved on the escalated answers, accepted-and-correct answers lost, and the local time before the
    cloud is asked (median, escalated answers), with and without the handoff."""
    from ..policy.calibration import clopper_pearson_upper

    esc = [a for a in answers if not a.accepted]
    keep = [a for a in answers if a.keep]
    saved_tok = saved_s = saved_j = tok = decode_s = decode_j = 0.0
    before, after = [], []
    fired = 0
    for a in esc:
        t = fire_at(a, components, model, floor)
        d = a.decode_s(prefill_share)
        dj = a.joules * (1.0 - prefill_share)
        tok += a.n
        decode_s += d
        decode_j += dj
        before.append(a.latency_s)
        if t is None or not a.n:
            after.append(a.latency_s)
            continue
        fired += 1
        share = (a.n - t) / a.n
        saved_tok += a.n - t
        saved_s += d * share
        saved_j += dj * share
        after.append(a.latency_s - d * share)
    lost = sum(1 for a in keep if fire_at(a, components, model, floor) is not None)
    upper = clopper_pearson_upper(lost, len(keep), 0.05) if keep else None
    cut_wrong = sum(1 for a in answers if a.accepted and not a.correct and fire_at(a, components, model, floor))
    return {
        "answers": len(answers), "escalated": len(esc), "accepted_correct": len(keep),
        "handoffs_on_escalated": fired,
        "decode_saved_share": saved_s / decode_s if decode_s else 0.0,
        "decode_tokens_saved_share": saved_tok / tok if tok else 0.0,
        "decode_s_saved_per_escalated": saved_s / len(esc) if esc else 0.0,
        "decode_j_saved_per_escalated": saved_j / len(esc) if esc else 0.0,
        "accepted_correct_lost": lost,
        "accepted_correct_lost_share": lost / len(keep) if keep else 0.0,
        "accepted_correct_lost_upper95": upper,
        "accepted_wrong_cut": cut_wrong,
        "local_s_before_cloud_p50": {"without": float(np.median(before)) if before else None,
                                     "with": float(np.median(after)) if after else None},
    }


def load_answers(split: str, model: Any, params: Any, every: int, progress: Optional[TextIO]) -> tuple[
        list[Answer], dict[str, Any]]:
    """The split's cached answers (generated where missing), graded, with the Router's decision at the
    calibrated threshold."""
    from ..policy.calibration import load_calibration
    from ..signals import confidence_signal, default_signals
    from .api import needs_hidden, open_model
    from .datasets import load_items
    from .grading import grade
    from .runner import rescore, run_local

    items = load_items(None, split)
    local, owned = open_model(model)
    try:
        signals = default_signals(local)
        records, info = run_local(items, local, params, progress=progress, need_hidden=needs_hidden(signals))
        records = rescore(records, items, signals)
        source = confidence_signal(signals)
        cal = load_calibration(local.fingerprint, source.confidence_id if source else "")
        fingerprint = local.fingerprint
    finally:
        if owned:
            local.close()
    from .._constants import DEFAULT_THRESHOLD

    threshold = cal.threshold if cal else DEFAULT_THRESHOLD
    answers = [Answer(r, grade(r["text"], it), threshold, every) for r, it in zip(records, items)]
    return answers, {"threshold": threshold, "calibration": cal.describe() if cal else "default threshold",
                     "model": fingerprint, "cache": info["cache"]}


def handoff_report(*, model: Any = None, params: Any = None, every: int = HANDOFF_EVERY_TOKENS,
                   max_cut: float = HANDOFF_MAX_CUT, progress: Optional[TextIO] = sys.stderr,
                   out_dir: Optional[Path] = None) -> dict[str, Any]:
    """Fit on train, choose on calibration, report test and heldout-families; the ablation rows and the rule that
    ships (``rule``: a ``HandoffRule.to_dict()``)."""
    from .replay import PREFILL_SHARE
    from .runner import RunParams

    t0 = time.perf_counter()
    params = params or RunParams()
    data: dict[str, list[Answer]] = {}
    basis: dict[str, Any] = {}
    for split in ("train", "calibration") + REPORT_SPLITS:
        data[split], basis = load_answers(split, model, params, every, progress)
    prefix_model = fit_prefix_model(data["train"])
    rows: list[dict[str, Any]] = []
    shipped: list[str] = []
    floor_used: Optional[float] = None
    floor_basis: dict[str, Any] = {}
    previous = 0.0
    for component in ("repetition", "stats"):
        comps = shipped + [component]
        floor, fb = (choose_floor(data["calibration"], prefix_model, comps, max_cut) if component == "stats"
                     else (None, {}))
        cal = measure(data["calibration"], comps, prefix_model, floor, PREFILL_SHARE)
        gain = cal["decode_saved_share"] - previous
        ships = gain >= MIN_GAIN and cal["accepted_correct_lost_share"] <= max_cut
        row = {"components": comps, "floor": floor, "calibration": cal, "gain_on_calibration": gain, "ships": ships,
               **{split: measure(data[split], comps, prefix_model, floor, PREFILL_SHARE) for split in REPORT_SPLITS}}
        if fb:
            row["floor_basis"] = fb
        rows.append(row)
        if ships:
            shipped, previous = comps, cal["decode_saved_share"]
            if floor is not None:
                floor_used, floor_basis = floor, fb
    rows.append({"components": shipped + ["prefix_probe"], "ships": False,
                 "why": "not replayable: the cache keeps each answer's hidden states at its end, not at its "
                        "prefixes (a prefix probe needs regenerated answers with per-checkpoint captures)"})
    rule = HandoffRule(tuple(shipped), every, floor_used, max_cut, prefix_model if "stats" in shipped else None,
                       {"fitted_on": "train", "floor_on": "calibration", **floor_basis,
                        "covers": "the calibration split's mixture of families (the guarantee holds for traffic "
                                  "drawn like it; measure on your own)"}) if shipped else None
    sweep = _sweep(data, prefix_model, shipped, PREFILL_SHARE)
    report = {"basis": {**basis, "every": every, "max_cut": max_cut, "prefill_share": PREFILL_SHARE,
                        "splits": {s: len(v) for s, v in data.items()}},
              "ablation": rows, "shipped": shipped, "rule": rule.to_dict() if rule else None,
              "targets": _targets(rows, shipped, max_cut), "elapsed_s": round(time.perf_counter() - t0, 1),
              "_sweep": sweep}
    if out_dir is not None:
        import json

        from .plots import write_handoff_plot
        from .report import public

        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "handoff.json").write_text(json.dumps(public(report), indent=2), encoding="utf-8")
        report["plots"] = [str(write_handoff_plot(report, out_dir))]
    return report


def _sweep(data: dict[str, list[Answer]], model: PrefixModel, shipped: Sequence[str],
           prefill_share: float) -> dict[str, list[tuple[float, float, float]]]:
    """Per report split, (floor, accepted-and-correct lost share, decode saved share) as the floor moves."""
    comps = [c for c in shipped if c != "stats"] + ["stats"]
    out = {}
    for split in REPORT_SPLITS:
        pts = []
        for floor in np.concatenate([[0.0], np.geomspace(0.002, 0.6, 40)]):  # fine where the shipped floor lies
            m = measure(data[split], comps, model, float(floor), prefill_share)
            pts.append((float(floor), m["accepted_correct_lost_share"], m["decode_saved_share"]))
        out[split] = pts
    return out


def _targets(rows: list[dict[str, Any]], shipped: Sequence[str], max_cut: float) -> dict[str, Any]:
    row = next((r for r in rows if r.get("components") == list(shipped)), None)
    if row is None:
        return {"met": False, "why": "no component shipped"}
    out: dict[str, Any] = {}
    for split in REPORT_SPLITS:
        m = row[split]
        out[split] = {"decode_saved_share": round4(m["decode_saved_share"]), "target_saved": 0.30,
                      "accepted_correct_lost_share": round4(m["accepted_correct_lost_share"]),
                      "target_lost": max_cut,
                      "met": m["decode_saved_share"] >= 0.30 and m["accepted_correct_lost_share"] <= max_cut}
    return out


def markdown(report: dict[str, Any]) -> str:
    b = report["basis"]
    lines = [f"edgeroute bench handoff: threshold {b['threshold']:.3f} ({b['calibration']}); every {b['every']} "
             f"tokens; floor cuts <= {b['max_cut']:g} of calibration's accepted-and-correct answers",
             "", "| components | ships | split | decode saved (escalated) | J saved / escalated | accepted-correct "
                 "lost | local s before the cloud is asked, p50 without / with |", "|---|---|---|---|---|---|---|"]
    for row in report["ablation"]:
        if "why" in row:
            lines.append(f"| {' + '.join(row['components'])} | no | - | {row['why']} | | | |")
            continue
        for split in ("calibration",) + REPORT_SPLITS:
            m = row[split]
            hi = m["accepted_correct_lost_upper95"]
            p = m["local_s_before_cloud_p50"]
            lines.append(
                f"| {' + '.join(row['components'])} | {'yes' if row['ships'] else 'no'} | {split} | "
                f"{m['decode_saved_share']:.1%} | {m['decode_j_saved_per_escalated']:.2f} | "
                f"{m['accepted_correct_lost']}/{m['accepted_correct']} = {m['accepted_correct_lost_share']:.1%}"
                + (f" (<= {hi:.1%}, 95 %)" if hi is not None else "") + f" | {p['without']:.3f} / {p['with']:.3f} |")
    return "\n".join(lines)


def save_rule(report: dict[str, Any], model: Any = None, path: Optional[Path] = None) -> Path:
    """Write ``report``'s rule into a calibration: the file at ``path``, or else this model's own calibration
    (created from the one in use, shipped or fitted, when the user has none). ``ConfigError`` when no rule
    shipped or there is no calibration to carry it."""
    import dataclasses
    import json

    from .._errors import ConfigError
    from ..policy.calibration import Calibration, calibration_path, load_calibration, save_calibration
    from ..signals import confidence_signal, default_signals
    from .api import open_model

    if report.get("rule") is None:
        raise ConfigError("no handoff component shipped: nothing to save")
    if path is not None:
        try:
            cal = Calibration.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"cannot read the calibration {path}: {exc}") from exc
        if cal.model != report["basis"]["model"]:
            raise ConfigError(f"{path} is the calibration of another model")
    else:
        local, owned = open_model(model)
        try:
            source = confidence_signal(default_signals(local))
            found = load_calibration(local.fingerprint, source.confidence_id if source else "")
        finally:
            if owned:
                local.close()
        if found is None:
            raise ConfigError("no calibration for this model to carry the rule: run edgeroute calibrate first")
        cal, path = found, calibration_path(found.model, found.confidence_id)
    return save_calibration(dataclasses.replace(cal, handoff=report["rule"]), path)
