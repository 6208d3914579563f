"""PNG plots of a report (``pip install 'edgeroute[plots]'`` for matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._errors import ConfigError


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'edgeroute[plots]'") from None
    return plt


def write_plots(report: dict[str, Any], out_dir: Path, title: str) -> list[Path]:
    """``deferral.png`` (accuracy vs cloud fraction for every signal, the oracle and random) and
    ``energy.png`` (device joules per query vs accuracy along the router's curve)."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = report["_curves"]
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, (frac, acc) in curves["signals"].items():
        style = "-" if name == report["confidence_signal"] else ":"
        ax.plot(frac, acc, style, lw=2 if style == "-" else 1.2, label=f"{name} (AUROC {report['signals'][name]['auroc']:.2f})")
    for name, style in (("oracle", "k--"), ("random", "0.5")):
        frac, acc = curves[name]
        ax.plot(frac, acc, style, lw=1.2, label=name)
    ax.set_xlabel("fraction of queries sent to the cloud")
    ax.set_ylabel("accuracy of the routed system")
    ax.set_title(f"{title}: deferral curves (cloud {report['assumptions']['source']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    paths = [out_dir / "deferral.png"]
    fig.tight_layout()
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts = report["curve"]
    ax.plot([p["joules_per_query"] for p in pts], [p["accuracy"] for p in pts], "o-")
    for p in pts[::2]:
        ax.annotate(f"{p['cloud_fraction']:.0%} cloud", (p["joules_per_query"], p["accuracy"]), fontsize=7,
                    xytext=(4, -10), textcoords="offset points")
    ax.set_xlabel(f"device energy per query, J ({report['energy']['method']})")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}: energy vs accuracy along the deferral curve")
    ax.grid(alpha=0.3)
    paths.append(out_dir / "energy.png")
    fig.tight_layout()
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths


def _choice(c: dict[str, Any]) -> str:
    if c.get("always_cloud"):
        return "always cloud"
    pre = "" if c.get("pregen_threshold") is None else f", pre-gen {c['pregen_threshold']:.2f}"
    return f"t={c['threshold']:.2f}{pre}"


def write_policy_plot(report: dict[str, Any], out_dir: Path) -> Path:
    """``policy.png``: rolling mean reward of LinUCB against the fixed thresholds around each mid-stream change."""
    plt = _pyplot()
    shifts = report["_shifts"]
    fig, axes = plt.subplots(1, len(shifts), figsize=(6 * len(shifts), 4.2), squeeze=False)
    for ax, (name, shift) in zip(axes[0], shifts.items()):
        roll = shift["_rolling"]
        w = roll["window"]
        x = range(w, w + len(roll["linucb"]))
        ax.plot(x, roll["hindsight_fixed"], "k--", lw=1.2, label="best fixed threshold per half (hindsight)")
        ax.plot(x, roll["stale_fixed"], color="0.55", lw=1.2,
                label=f"best fixed of the first half ({_choice(shift['best_fixed_before'])}), kept")
        ax.plot(x, roll["linucb"], lw=1.8, label="LinUCB (learning online)")
        ax.axvline(shift["change_at"], color="r", lw=1, ls=":")
        ax.set_title(f"{name.replace('_', ' ')} at query {shift['change_at']}")
        ax.set_xlabel("query")
        ax.set_ylabel(f"reward, rolling mean of {w}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path = out_dir / "policy.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_policy_series_plot(report: dict[str, Any], out_dir: Path, window: int = 200) -> Path:
    """``policy_series.png``: per stream (columns), LinUCB's and the first half's best fixed policy's rolling
    reward, energy on each side (J per query, both estimated or measured as recorded), cloud share and quality."""
    import numpy as np

    plt = _pyplot()
    shifts = report["_shifts"]
    rows = (("reward", "reward"), ("energy", "J per query"), ("cloud", "cloud share"), ("quality", "quality"))
    fig, axes = plt.subplots(len(rows), len(shifts), figsize=(5 * len(shifts), 10), squeeze=False, sharex=True)

    def roll(v: list[float]) -> np.ndarray:
        a = np.asarray(v, dtype=float)
        if len(a) < window:
            return a
        c = np.cumsum(np.insert(a, 0, 0.0))
        return (c[window:] - c[:-window]) / window

    for col, (name, shift) in enumerate(shifts.items()):
        series = shift["_series"]
        for row, (key, label) in enumerate(rows):
            ax = axes[row][col]
            for who, style in (("linucb", {"lw": 1.6}), ("stale_fixed", {"color": "0.55", "lw": 1.0})):
                s = series[who]
                if key == "energy":
                    ax.plot(roll(s["device_j"]), label=f"{who}: device", **style)
                    ax.plot(roll(s["cloud_j"]), ls="--", label=f"{who}: cloud (estimated)", **style)
                else:
                    ax.plot(roll(s[key]), label=who, **style)
            ax.axvline(shift["change_at"] - window, color="r", lw=1, ls=":")
            if shift.get("change_until", 0) < len(series["linucb"]["reward"]):
                ax.axvline(shift["change_until"] - window, color="r", lw=1, ls=":")
            ax.set_ylabel(f"{label}, rolling {window}")
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(name.replace("_", " "))
            if col == 0:
                ax.legend(fontsize=6)
    fig.tight_layout()
    path = out_dir / "policy_series.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_handoff_plot(report: dict[str, Any], out_dir: Path) -> Path:
    """``handoff.png``: decode saved on escalated answers against accepted-and-correct answers lost, as the floor
    moves, per report split; the shipped floor marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    rule = report.get("rule") or {}
    for split, pts in report["_sweep"].items():
        line, = ax.plot([p[1] * 100 for p in pts], [p[2] * 100 for p in pts], marker=".", label=split)
        if rule.get("floor") is not None:  # where the shipped floor lands on this split
            m = report["ablation"][[r.get("components") for r in report["ablation"]].index(report["shipped"])][split]
            ax.plot([m["accepted_correct_lost_share"] * 100], [m["decode_saved_share"] * 100], marker="*",
                    markersize=14, color=line.get_color())
    if rule.get("floor") is not None:
        ax.set_title(f"mid-stream handoff: the floor from 0 to 0.6 (star: shipped, {rule['floor']:.3f})")
    ax.axvline(report["basis"]["max_cut"] * 100, color="grey", linestyle=":", label="max cut")
    ax.set_xlabel("accepted-and-correct answers cut (%)")
    ax.set_ylabel("local decode saved on escalated answers (%)")
    ax.legend()
    path = out_dir / "handoff.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
