"""Figures a person would rather see than read: DET curves (probit axes)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import norm  # noqa: E402

from speakerops.eval.metrics import det_curve, eer  # noqa: E402

_TICKS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]


def det_plot(
    systems: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "DET curve"
) -> Path:
    """DET curves (FNMR vs FMR on normal-deviate axes) of named (scores, labels) systems."""
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    clip = (1e-4, 1 - 1e-4)
    for name, (scores, labels) in systems.items():
        fmr, fnmr, _ = det_curve(scores, labels)
        ax.plot(
            norm.ppf(np.clip(fmr, *clip)),
            norm.ppf(np.clip(fnmr, *clip)),
            label=f"{name} (EER {100 * eer(scores, labels):.2f} %)",
        )
    ticks = norm.ppf(_TICKS)
    labels = [f"{100 * t:g}" for t in _TICKS]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set_xlim(ticks[0], ticks[-1])
    ax.set_ylim(ticks[0], ticks[-1])
    ax.plot([ticks[0], ticks[-1]], [ticks[0], ticks[-1]], color="0.8", lw=0.8, ls="--")
    ax.set_xlabel("False match rate (%)")
    ax.set_ylabel("False non-match rate (%)")
    ax.set_title(title)
    ax.grid(True, color="0.9")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
