"""``edgeroute risk`` and ``edgeroute calibrate --from-trace``: the control's state read back from the trace store,
and a calibration on this device's own labelled answers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .._errors import CalibrationError
from ..policy.calibration import DEFAULT_GRID, Calibration
from ..store import TraceStore
from .bounds import Sequences
from .control import RiskController
from .state import RiskState


def model_sha(model: Optional[str]) -> str:
    """The SHA-256 of the GGUF ``model`` resolves to (the default model when None), without loading it."""
    from ..local.memo import file_key, remembered
    from ..local.native import file_sha256
    from ..local.resolve import resolve_model_path

    path = resolve_model_path(model)
    return str(remembered(f"sha256|{file_key(path)}", lambda: file_sha256(path)))


def risk_summary(store: TraceStore, sha: Optional[str] = None) -> list[dict[str, Any]]:
    """Per control key (model, confidence map, starting threshold), optionally of one model: the threshold in
    force and its source, the estimate and bounds with the labels behind them, the drift state, audit spend and
    the threshold history. Read only."""
    state = RiskState(store)
    out = []
    for row in state.controls():
        key = row["key"]
        if sha and not key.startswith(sha[:32]):
            continue
        base = float(key.rsplit(":", 1)[-1]) if key.count(":") >= 2 else float(row.get("threshold") or 0.5)
        control = RiskController(state, key, threshold=base, source=str(row.get("source") or "unknown"),
                                 epsilon=float(row.get("epsilon") or 0.1), delta=float(row.get("delta") or 0.05),
                                 audit_rate=float(row.get("audit_rate") or 0.0), readonly=True)
        info = control.info()
        with store.transaction() as conn:
            audits = conn.execute("SELECT COUNT(*), COALESCE(SUM(audit_usd), 0), AVG(audit_ms), SUM(audit_j) "
                                  "FROM risk_answers WHERE key = ? AND audit_ms IS NOT NULL", (key,)).fetchone()
        out.append({"key": key, "model_sha256_prefix": key.split(":")[0], **info.to_dict(), "epoch": control.epoch,
                    "rows": state.counts(key),
                    "audits": {"calls": int(audits[0]), "usd": float(audits[1]),
                               "mean_ms": None if audits[2] is None else float(audits[2]),
                               "joules": None if audits[3] is None else float(audits[3])},
                    "history": state.history(key)})
    return out


def calibrate_from_trace(store: TraceStore, sha: str, *, epsilon: float, delta: float,
                         grid: tuple[float, ...] = DEFAULT_GRID) -> Calibration:
    """The most lenient threshold whose accepted-answer error on this device's labelled trace is certified
    <= ``epsilon`` with probability >= 1 - ``delta``: Learn-then-Test's fixed sequence from strict to lenient, each
    threshold tested with the betting upper bound of its inverse-probability-weighted error (escalations labelled
    with probability 1, audited answers with the audit rate; unaudited accepted answers count 0 with their
    weight), stopping at the first that fails. The rows are those of the confidence map used last. Feedback on answers that were never sampled is not used (it is not
    a random sample). Raises ``CalibrationError`` when none is certified."""
    state = RiskState(store)
    keys = [c["key"] for c in state.controls() if c["key"].startswith(sha[:32] + ":")]
    latest = max(keys, key=lambda k: max((r[4] for r in state.labelled(k)), default=0.0)) if keys else ""
    confidence_id = latest.split(":")[1] if latest.count(":") >= 2 else ""
    rows = [r for r in state.labelled(f"{sha[:32]}:{confidence_id}:") if r[1] > 0 and r[2] in ("labelled", "unlabelled")]
    if not rows:
        raise CalibrationError("the trace holds no labelled answers for this model: turn audits on "
                               "(audit_rate) or give feedback, then try again")
    conf = np.array([r[0] for r in rows])
    pi = np.array([r[1] for r in rows])
    x = np.array([(float(r[3] or 0) / r[1]) if r[2] == "labelled" else 0.0 for r in rows])
    labelled = sum(r[2] == "labelled" for r in rows)
    order = sorted(grid, reverse=True)
    seq = Sequences(len(order), delta)
    gr = np.array(order)
    for c, p, xi in zip(conf, pi, x):
        seq.add(float(xi), 1.0 / float(p), gr <= c + 1e-12)
    chosen: Optional[int] = None
    for i in range(len(order)):
        if seq.n[i] == 0:
            continue
        if seq.upper(i) > epsilon:
            break
        chosen = i
    if chosen is None:
        raise CalibrationError(f"no threshold is certified at epsilon={epsilon:g}, delta={delta:g} on {labelled} "
                               f"labelled of {len(rows)} answers in the trace: gather more labels or relax them")
    t = float(order[chosen])
    accepted = conf >= t
    span = f"{time.strftime('%Y-%m-%d', time.gmtime(rows[0][4]))} to {time.strftime('%Y-%m-%d', time.gmtime(rows[-1][4]))}"
    return Calibration(
        threshold=t, mode="selective", n=len(rows), expected_cloud_rate=float(np.mean(~accepted)),
        empirical_risk=float(seq.estimate(chosen) or 0.0), epsilon=epsilon, delta=delta,
        risk_upper_bound=seq.upper(chosen), model=sha, confidence_id=confidence_id, source="this device's trace (audits, escalations, feedback)",
        covers=(f"{len(rows)} answers on this device ({labelled} labelled by agreement with the cloud or feedback), "
                f"{span}; the guarantee holds for traffic like this device's, labels are agreement with the cloud"),
        coverage=float(np.mean(accepted)))


def write_history_plot(summary: list[dict[str, Any]], out_dir: Path) -> Path:
    """``risk.png``: each key's threshold over time, from its history."""
    from ..bench.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for entry in summary:
        hist = entry["history"]
        if not hist:
            continue
        xs = [h["created"] for h in hist]
        ax.step([xs[0]] + xs, [hist[0]["old"] if hist[0]["old"] is not None else hist[0]["new"]]
                + [h["new"] for h in hist], where="post", label=entry["key"][:12])
    ax.set_xlabel("unix time")
    ax.set_ylabel("threshold in force")
    ax.set_title("edgeroute risk: threshold history")
    ax.grid(alpha=0.3)
    if summary:
        ax.legend(fontsize=7)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "risk.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
