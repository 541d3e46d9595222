"""Figures a person would rather see than read: DET curves, calibration, per-group bars.

All PNGs (matplotlib Agg), titled, with axis units and legends; every figure takes named
systems (e.g. ``{"candidate v7": ..., "champion v5": ...}``) so one plot compares models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.lines  # noqa: E402
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import norm  # noqa: E402

from speakerops.eval.metrics import act_dcf, bayes_threshold, det_curve, eer, min_dcf  # noqa: E402

_TICKS = [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95, 0.99]
_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:gray"]


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def det_plot(
    systems: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    title: str = "DET curve",
    operating_points: Mapping[str, tuple[np.ndarray | None, float]] | None = None,
    axes: tuple[str, str] = ("False match rate, FMR", "False non-match rate, FNMR"),
) -> Path:
    """DET curves (FNMR vs FMR on normal-deviate axes) of named (scores, labels) systems.

    ``operating_points``: name -> (LLRs, θ) marks where each system operates at the shipped
    threshold (accept iff llr >= θ). ``axes``: the (x, y) rates' names, each "long, short"
    (labels True are the class accepted: for a countermeasure bona fide, x its spoofs
    accepted)."""
    short = [a.rsplit(", ", 1)[-1] for a in axes]
    fig, ax = plt.subplots(figsize=(6, 6))
    clip = (5e-4, 0.995)
    for i, (name, (scores, labels)) in enumerate(systems.items()):
        color = _COLORS[i % len(_COLORS)]
        fmr, fnmr, _ = det_curve(scores, labels)
        ax.plot(
            norm.ppf(np.clip(fmr, *clip)),
            norm.ppf(np.clip(fnmr, *clip)),
            color=color,
            label=f"{name} (EER {100 * eer(scores, labels):.2f} %)",
        )
        op = (operating_points or {}).get(name)
        if op is not None and op[0] is not None:
            llr, theta = np.asarray(op[0]), float(op[1])
            y = np.asarray(labels).astype(bool)
            p_fa = np.count_nonzero(llr[~y] >= theta) / np.count_nonzero(~y)
            p_miss = np.count_nonzero(llr[y] < theta) / np.count_nonzero(y)
            ax.plot(
                norm.ppf(np.clip(p_fa, *clip)),
                norm.ppf(np.clip(p_miss, *clip)),
                "o",
                color=color,
                markersize=8,
                markeredgecolor="black",
                label=f"{name} at θ={theta:.2f}: {short[0]} {100 * p_fa:.2f} %, "
                f"{short[1]} {100 * p_miss:.2f} %",
            )
    ticks = norm.ppf(_TICKS)
    labels = [f"{100 * t:g}" for t in _TICKS]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    lo, hi = norm.ppf(clip[0]), norm.ppf(clip[1])
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.plot([lo, hi], [lo, hi], color="0.8", lw=0.8, ls="--")
    ax.set_xlabel(f"{axes[0]} (%)")
    ax.set_ylabel(f"{axes[1]} (%)")
    ax.set_title(title)
    ax.grid(True, color="0.9")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def score_histogram_plot(
    groups: Mapping[str, np.ndarray], threshold: float, path: str | Path, title: str, xlabel: str
) -> Path:
    """Overlaid score histograms of named groups (shared bins) with the decision threshold."""
    finite = {k: np.asarray(v, dtype=float)[np.isfinite(v)] for k, v in groups.items() if len(v)}
    values = np.concatenate([*finite.values(), [threshold]])
    bins = np.linspace(values.min(), values.max(), 41) if np.ptp(values) > 0 else 10
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, v) in enumerate(finite.items()):
        ax.hist(v, bins=bins, histtype="step", lw=1.5, color=_COLORS[i % len(_COLORS)],
                density=True, label=f"{name} (n={len(v)})")  # fmt: skip
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.3f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _reliability(llr: np.ndarray, y: np.ndarray, n_bins: int = 10):
    """Per LLR quantile bin: mean LLR and the empirical LLR log(n_tar/n_non) − log(N_tar/N_non)
    (add-½ smoothing), the count in the bin."""
    order = np.argsort(llr, kind="stable")
    bins = np.array_split(order, n_bins)
    prior = math.log(np.count_nonzero(y) / np.count_nonzero(~y))
    xs, ys, ns = [], [], []
    for b in bins:
        if b.size == 0:
            continue
        nt = np.count_nonzero(y[b])
        nn = b.size - nt
        xs.append(float(np.mean(llr[b])))
        ys.append(math.log((nt + 0.5) / (nn + 0.5)) - prior)
        ns.append(b.size)
    return np.array(xs), np.array(ys), np.array(ns)


def calibration_plot(
    systems: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    operating_point: Mapping[str, float] | None = None,
    title: str = "Calibration",
) -> Path:
    """Two panels for named (LLRs, labels) systems.

    Left, normalized Bayes error rate vs prior log-odds logit(P): actual DCF (Bayes decisions
    on the LLRs, solid) and minimum DCF (dashed); the gap is the cost of mis-calibration.
    Right, reliability: the empirical LLR of each LLR bin against its mean LLR; calibrated
    LLRs lie on the diagonal."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.8))
    etas = np.linspace(-6.0, 6.0, 49)
    priors = 1.0 / (1.0 + np.exp(-etas))
    lim = [0.0, 0.0]
    for i, (name, (llr, labels)) in enumerate(systems.items()):
        color = _COLORS[i % len(_COLORS)]
        llr = np.asarray(llr, dtype=float)
        y = np.asarray(labels).astype(bool)
        act = [act_dcf(llr, y, p) for p in priors]
        mn = [min_dcf(llr, y, p) for p in priors]
        ax1.plot(etas, act, color=color, label=f"{name}: actual DCF")
        ax1.plot(etas, mn, color=color, ls="--", label=f"{name}: minimum DCF")
        xs, ys, ns = _reliability(llr, y)
        ax2.plot(xs, ys, "o-", color=color, label=f"{name} ({len(y)} trials, {len(xs)} bins)")
        lim = [min(lim[0], xs.min(), ys.min()), max(lim[1], xs.max(), ys.max())]
    ax1.axhline(1.0, color="0.6", lw=0.8, ls=":", label="accept-all / reject-all")
    if operating_point:
        p = float(operating_point["p_target"])
        c_miss = float(operating_point.get("c_miss", 1.0))
        c_fa = float(operating_point.get("c_fa", 1.0))
        eta = -bayes_threshold(p, c_miss, c_fa)
        for ax in (ax1,):
            ax.axvline(eta, color="black", lw=0.8, ls="-.")
        ax1.annotate(
            f"shipped operating point\nP_target = {p:g}, θ = {-eta:.2f}",
            (eta, 0.03),
            xytext=(6, 0),
            textcoords="offset points",
            fontsize=8,
            va="bottom",
        )
    ax1.set_xlabel("Prior log-odds, logit(P_target)")
    ax1.set_ylabel("Normalized detection cost (DCF / min(P, 1−P))")
    ax1.set_ylim(0, 1.2)
    ax1.set_title("Bayes error rate: actual vs minimum")
    ax1.grid(True, color="0.9")
    ax1.legend(fontsize=7, loc="upper left")
    pad = 0.5
    ax2.plot(
        [lim[0] - pad, lim[1] + pad],
        [lim[0] - pad, lim[1] + pad],
        color="0.6",
        ls="--",
        lw=0.8,
        label="perfect calibration",
    )
    ax2.set_xlabel("Mean LLR in bin (natural log)")
    ax2.set_ylabel("Empirical LLR in bin (natural log)")
    ax2.set_title("Reliability: are the LLRs honest?")
    ax2.grid(True, color="0.9")
    ax2.legend(fontsize=7, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def bias_plot(
    systems: Mapping[str, Mapping[str, Mapping[str, Any]]],
    path: str | Path,
    threshold: float,
    columns: list[str] | None = None,
    title: str | None = None,
) -> Path:
    """Per-group bars for each metadata column: EER, and FMR, FNMR and the normalized
    detection cost at the one shipped threshold θ, side by side for each named system
    (values: the ``bias`` dicts of :class:`speakerops.eval.evaluate.Assessment`). Dashed
    lines: each system's overall figure. Hatched, faded bars: groups with too few trials
    (reported, not gated). One column: a 2 × 2 grid; several: one row of four per column."""
    first = next(iter(systems.values()))
    columns = columns or list(first)
    columns = [c for c in columns if any(c in s for s in systems.values())]
    metrics = ("eer", "fmr", "fnmr", "dcf")
    if len(columns) <= 1:
        fig, grid = plt.subplots(2, 2, figsize=(11, 7.6), squeeze=False)
        rows_of_axes = [list(grid.ravel())]
    else:
        fig, grid = plt.subplots(len(columns), 4, figsize=(17, 3.7 * len(columns)), squeeze=False)
        rows_of_axes = [list(r) for r in grid]
    names = list(systems)
    for axes, col in zip(rows_of_axes, columns or [""], strict=False):
        tables = {name: s.get(col, {}) for name, s in systems.items()}
        ok_tables = {k: v for k, v in tables.items() if v.get("status") == "ok"}
        if not ok_tables:
            status = next(iter(tables.values()), {}).get("status", "not assessed")
            for ax in axes:
                ax.axis("off")
            axes[0].text(0.0, 0.5, f"{col}: {status}", ha="left", va="center", fontsize=10)
            continue
        groups: list[str] = []
        for t in ok_tables.values():
            for row in t["table"]:
                if row["status"] != "cross-group" and row["group"] not in groups:
                    groups.append(row["group"])
        ref_rows = {row["group"]: row for row in next(iter(ok_tables.values()))["table"]}
        ticks = []
        for g in groups:
            row = ref_rows.get(g, {})
            flag = "" if row.get("status") == "ok" else "\n(too few)"
            ticks.append(f"{g}\nn={row.get('n_trials', 0)}{flag}")
        x = np.arange(len(groups))
        width = 0.8 / len(systems)
        for ax, metric in zip(axes, metrics, strict=True):
            scale = 1.0 if metric == "dcf" else 100.0
            for i, name in enumerate(names):
                t = tables[name]
                if t.get("status") != "ok":
                    continue
                rows = {row["group"]: row for row in t["table"]}
                color = _COLORS[i % len(_COLORS)]
                vals = [scale * _nz(rows.get(g, {}).get(metric)) for g in groups]
                bars = ax.bar(
                    x + (i - (len(systems) - 1) / 2) * width, vals, width, color=color, alpha=0.85
                )
                for bar, g in zip(bars, groups, strict=True):
                    if rows.get(g, {}).get("status") != "ok":
                        bar.set_hatch("//")
                        bar.set_alpha(0.35)
                ax.axhline(scale * _nz(t["overall"].get(metric)), color=color, ls="--", lw=1)
            ax.set_xticks(x, ticks, fontsize=8)
            label = {
                "eer": "EER (%)",
                "fmr": f"FMR at θ = {threshold:.2f} (%)",
                "fnmr": f"FNMR at θ = {threshold:.2f} (%)",
                "dcf": f"Detection cost at θ = {threshold:.2f} (normalized)",
            }[metric]
            ax.set_ylabel(label, fontsize=9)
            ax.set_title(f"{col}: {label.split(' (')[0]}", fontsize=10)
            ax.grid(True, axis="y", color="0.9")
    handles = []
    for i, name in enumerate(names):
        color = _COLORS[i % len(_COLORS)]
        handles.append(matplotlib.patches.Patch(color=color, alpha=0.85, label=name))
        handles.append(
            matplotlib.lines.Line2D([], [], color=color, ls="--", lw=1, label=f"{name}: overall")
        )
    handles.append(
        matplotlib.patches.Patch(
            facecolor="white", edgecolor="0.4", hatch="//", label="too few trials (not gated)"
        )
    )
    fig.suptitle(title or "Per-group error rates at the shipped threshold")
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=min(len(handles), 5),
        fontsize=8,
        bbox_to_anchor=(0.5, 0.962),
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.935))
    return _save(fig, path)


def _nz(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(v) else v
