"""Per-group (demographic) performance and the GARBE / FDR fairness summaries.

Input: a trial table (pandas DataFrame) with a ``score`` column (raw score or LLR), a
``label`` column (1 = target) and one column per grouping (e.g. ``gender``, ``age_band``).

**Which group a trial belongs to.** By default the value of ``column`` is the trial's group
(the caller decides, e.g. the test-side speaker's group). When the enrollment side's group is
also known, pass ``enroll_column``: a trial then belongs to group g only when BOTH sides are
g; every other trial (in practice non-targets between speakers of different groups, which are
easy and would flatter the group's FMR) goes to a separate row named ``cross-group`` with
status ``"cross-group"``. That row is shown, never mixed into a group, and left out of the
overall reference figures and of the summaries. Trials whose group is missing (NaN) form the
group ``missing``.

**Per-group figures** use ONE global threshold (accept if score >= threshold):
FMR_g = #{non-targets of g with s >= t} / N_non,g, FNMR_g = #{targets of g with s < t} /
N_tar,g, EER_g = ROCCH-EER of g's trials (:func:`speakerops.eval.metrics.eer`). Ratios are
to the same figures over all trials assigned to a group (``cross-group`` excluded):
ratio = group / overall (1.0 when both are 0, inf when only the overall is 0).

A group with fewer than ``min_trials`` trials, ``min_targets`` targets or ``min_nontargets``
non-targets gets status ``"insufficient trials"``: it is reported with whatever figures are
computable, and left out of GARBE, FDR and the worst-ratio search.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from .metrics import eer as _eer
from .metrics import validate_trials

__all__ = [
    "CROSS_GROUP",
    "MISSING_GROUP",
    "STATUS_CROSS",
    "STATUS_INSUFFICIENT",
    "STATUS_OK",
    "assign_groups",
    "bias_summary",
    "fdr",
    "garbe",
    "gini",
    "group_report",
]

CROSS_GROUP = "cross-group"
MISSING_GROUP = "missing"
STATUS_OK = "ok"
STATUS_INSUFFICIENT = "insufficient trials"
STATUS_CROSS = "cross-group"

REPORT_COLUMNS = [
    "group",
    "n_trials",
    "n_target",
    "n_nontarget",
    "eer",
    "fmr",
    "fnmr",
    "eer_ratio",
    "fmr_ratio",
    "fnmr_ratio",
    "status",
]


# --------------------------------------------------------------------------- summaries


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


# --------------------------------------------------------------------------- tables


def _check_table(trials: pd.DataFrame, cols: Sequence[str]) -> None:
    if not isinstance(trials, pd.DataFrame):
        raise ValueError(f"trials must be a pandas DataFrame, got {type(trials).__name__}")
    missing = [c for c in cols if c not in trials.columns]
    if missing:
        raise ValueError(
            f"trial table is missing column(s) {missing}; it has {list(trials.columns)}"
        )
    if len(trials) == 0:
        raise ValueError("trial table is empty")


def assign_groups(trials: pd.DataFrame, column: str, enroll_column: str | None = None) -> pd.Series:
    """Group label per trial, as strings (see module docstring).

    Without ``enroll_column``: ``str(trials[column])`` (NaN -> ``"missing"``). With it: the
    shared group when both sides agree, otherwise ``"cross-group"`` (a NaN side also counts
    as a disagreement unless both are NaN, which gives ``"missing"``).
    """
    cols = [column] + ([enroll_column] if enroll_column else [])
    _check_table(trials, cols)
    test_side = trials[column]
    g = test_side.astype(object).where(test_side.notna(), MISSING_GROUP).map(str)
    if enroll_column:
        enr = trials[enroll_column]
        enr_s = enr.astype(object).where(enr.notna(), MISSING_GROUP).map(str)
        g = g.where(g == enr_s, CROSS_GROUP)
    return g.rename(column)


def _ratio(x: float, ref: float) -> float:
    if math.isnan(x) or math.isnan(ref):
        return math.nan
    if ref > 0:
        return x / ref
    return 1.0 if x == 0 else math.inf


def _rates(s: np.ndarray, y: np.ndarray, threshold: float) -> tuple[float, float, float]:
    n_tar = int(y.sum())
    n_non = y.size - n_tar
    fmr = float(np.count_nonzero(s[~y] >= threshold) / n_non) if n_non else math.nan
    fnmr = float(np.count_nonzero(s[y] < threshold) / n_tar) if n_tar else math.nan
    e = _eer(s, y) if n_tar and n_non else math.nan
    return e, fmr, fnmr


def group_report(
    trials: pd.DataFrame,
    column: str,
    threshold: float,
    *,
    enroll_column: str | None = None,
    min_trials: int = 100,
    min_targets: int = 30,
    min_nontargets: int = 30,
    score_column: str = "score",
    label_column: str = "label",
) -> pd.DataFrame:
    """One row per group of ``column``: counts, EER, FMR/FNMR at ``threshold``, ratios, status.

    Columns: group, n_trials, n_target, n_nontarget, eer, fmr, fnmr, eer_ratio, fmr_ratio,
    fnmr_ratio, status ("ok" | "insufficient trials" | "cross-group"). Groups are sorted by
    name, the ``cross-group`` row last. The overall reference figures are in
    ``table.attrs["overall"]`` (dict: n_trials, eer, fmr, fnmr, threshold).
    """
    _check_table(trials, [score_column, label_column, column])
    t = float(threshold)
    if not math.isfinite(t):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    s_all, y_all = validate_trials(
        trials[score_column].to_numpy(), trials[label_column].to_numpy(), name=score_column
    )
    groups = assign_groups(trials, column, enroll_column).to_numpy()
    in_group = groups != CROSS_GROUP
    try:
        s_ref, y_ref = validate_trials(s_all[in_group], y_all[in_group], name=score_column)
    except ValueError as exc:
        raise ValueError(f"trials assigned to a group of {column!r}: {exc}") from exc
    o_eer, o_fmr, o_fnmr = _rates(s_ref, y_ref, t)

    rows = []
    names = sorted(set(groups[in_group].tolist()))
    if (~in_group).any():
        names.append(CROSS_GROUP)
    for name in names:
        m = groups == name
        s, y = s_all[m], y_all[m]
        n_tar = int(y.sum())
        n_non = int(y.size - n_tar)
        e, fmr_g, fnmr_g = _rates(s, y, t)
        if name == CROSS_GROUP:
            status = STATUS_CROSS
        elif y.size < min_trials or n_tar < min_targets or n_non < min_nontargets:
            status = STATUS_INSUFFICIENT
        else:
            status = STATUS_OK
        rows.append(
            {
                "group": name,
                "n_trials": int(y.size),
                "n_target": n_tar,
                "n_nontarget": n_non,
                "eer": e,
                "fmr": fmr_g,
                "fnmr": fnmr_g,
                "eer_ratio": _ratio(e, o_eer),
                "fmr_ratio": _ratio(fmr_g, o_fmr),
                "fnmr_ratio": _ratio(fnmr_g, o_fnmr),
                "status": status,
            }
        )
    table = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    table.attrs["overall"] = {
        "n_trials": int(y_ref.size),
        "eer": o_eer,
        "fmr": o_fmr,
        "fnmr": o_fnmr,
        "threshold": t,
    }
    return table


def bias_summary(
    trials: pd.DataFrame,
    columns: Sequence[str],
    threshold: float,
    *,
    enroll_columns: Mapping[str, str] | None = None,
    alpha: float = 0.5,
    min_trials: int = 100,
    min_targets: int = 30,
    min_nontargets: int = 30,
    score_column: str = "score",
    label_column: str = "label",
) -> dict[str, dict[str, Any]]:
    """Per grouping column: the :func:`group_report` table and its summary figures.

    Returns ``{column: {"table", "overall", "garbe", "fdr", "worst_ratio", "worst_group",
    "worst_metric", "n_groups_ok"}}``. GARBE / FDR use FMR and FNMR of the "ok" groups
    (NaN with fewer than two). ``worst_ratio`` = the largest of eer_ratio, fmr_ratio,
    fnmr_ratio over the "ok" groups, with its group and metric names (NaN / None when no
    group is ok). ``enroll_columns`` maps a column to its enrollment-side column.
    """
    if isinstance(columns, str):
        columns = [columns]
    enroll_columns = dict(enroll_columns or {})
    unknown = set(enroll_columns) - set(columns)
    if unknown:
        raise ValueError(f"enroll_columns names columns not in columns: {sorted(unknown)}")
    out: dict[str, dict[str, Any]] = {}
    for col in columns:
        table = group_report(
            trials,
            col,
            threshold,
            enroll_column=enroll_columns.get(col),
            min_trials=min_trials,
            min_targets=min_targets,
            min_nontargets=min_nontargets,
            score_column=score_column,
            label_column=label_column,
        )
        ok = table[table["status"] == STATUS_OK]
        if len(ok) >= 2:
            fm = dict(zip(ok["group"], ok["fmr"], strict=True))
            fn = dict(zip(ok["group"], ok["fnmr"], strict=True))
            g, f = garbe(fm, fn, alpha), fdr(fm, fn, alpha)
        else:
            g = f = math.nan
        worst, worst_group, worst_metric = math.nan, None, None
        for metric in ("eer_ratio", "fmr_ratio", "fnmr_ratio"):
            vals = ok[metric].to_numpy(dtype=np.float64)
            if vals.size and not np.all(np.isnan(vals)):
                i = int(np.nanargmax(vals))
                if math.isnan(worst) or vals[i] > worst:
                    worst = float(vals[i])
                    worst_group = str(ok["group"].iloc[i])
                    worst_metric = metric
        out[col] = {
            "table": table,
            "overall": dict(table.attrs["overall"]),
            "garbe": g,
            "fdr": f,
            "worst_ratio": worst,
            "worst_group": worst_group,
            "worst_metric": worst_metric,
            "n_groups_ok": len(ok),
        }
    return out
