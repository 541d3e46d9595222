"""The fairness summaries of per-group error rates at one threshold: the corrected Gini
coefficient, GARBE (Howard et al. 2022) and FDR (de Freitas Pereira & Marcel 2021).

Inputs: FMR and FNMR per group (mappings matched by group name, or sequences in the same
order), at least two groups, finite and >= 0; ``alpha`` weighs FMR against FNMR.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["fdr", "garbe", "gini"]


def _values(x: Mapping[Any, float] | Sequence[float] | ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, Mapping):
        x = list(x.values())
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite values: {a.tolist()}")
    if (a < 0).any():
        raise ValueError(f"{name} must be >= 0, got {a.tolist()}")
    return a


def _paired(fmr, fnmr, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if isinstance(fmr, Mapping) and isinstance(fnmr, Mapping) and set(fmr) != set(fnmr):
        raise ValueError(f"fmr and fnmr name different groups: {sorted(fmr)} vs {sorted(fnmr)}")
    if isinstance(fmr, Mapping) and isinstance(fnmr, Mapping):
        fnmr = {k: fnmr[k] for k in fmr}
    a = _values(fmr, "fmr_by_group")
    b = _values(fnmr, "fnmr_by_group")
    if a.size != b.size:
        raise ValueError(f"fmr_by_group has {a.size} groups, fnmr_by_group {b.size}")
    if a.size < 2:
        raise ValueError(f"need at least 2 groups to measure disparity, got {a.size}")
    return a, b


def gini(x: Sequence[float] | ArrayLike) -> float:
    """Gini coefficient with the small-sample correction (Howard et al. 2022):

        G(x) = n/(n−1) · Σ_i Σ_j |x_i − x_j| / (2 n² · mean(x))

    0 when all groups are equal (or all zero); 1 when one group carries all the errors.
    """
    a = _values(x, "x")
    n = a.size
    if n < 2:
        raise ValueError(f"Gini needs at least 2 values, got {n}")
    m = a.mean()
    if m == 0:
        return 0.0
    return float(n / (n - 1) * np.abs(a[:, None] - a[None, :]).sum() / (2.0 * n * n * m))


def garbe(
    fmr_by_group: Mapping[Any, float] | Sequence[float],
    fnmr_by_group: Mapping[Any, float] | Sequence[float],
    alpha: float = 0.5,
) -> float:
    """GARBE (Gini Aggregation Rate for Biometric Equitability, Howard et al. 2022):

        GARBE = α·G(FMR_g) + (1−α)·G(FNMR_g)

    with G the corrected Gini coefficient (:func:`gini`). 0 = perfectly equitable; higher =
    worse. Mappings are matched by group name.
    """
    a, b = _paired(fmr_by_group, fnmr_by_group, alpha)
    return float(alpha) * gini(a) + (1.0 - float(alpha)) * gini(b)


def fdr(
    fmr_by_group: Mapping[Any, float] | Sequence[float],
    fnmr_by_group: Mapping[Any, float] | Sequence[float],
    alpha: float = 0.5,
) -> float:
    """Fairness Discrepancy Rate (de Freitas Pereira & Marcel 2021) at one threshold:

        FDR = 1 − [ α·max_{i,j} |FMR_i − FMR_j| + (1−α)·max_{i,j} |FNMR_i − FNMR_j| ]

    1 = perfectly fair; lower = worse.
    """
    a, b = _paired(fmr_by_group, fnmr_by_group, alpha)
    return 1.0 - (float(alpha) * float(np.ptp(a)) + (1.0 - float(alpha)) * float(np.ptp(b)))
