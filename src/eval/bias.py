"""Per-group (demographic) performance and the GARBE / FDR fairness summaries: the ONE bias
engine, used by the per-group tables and, on row indices, by every bootstrap replicate.

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
N_tar,g, EER_g = ROCCH-EER of g's trials (:func:`speakerops.eval.metrics.eer`) and, given an
operating point ``cost = (P_target, C_miss, C_fa)`` on LLRs, DCF_g = the actual detection
cost there (:func:`speakerops.eval.metrics.act_dcf`). Ratios are to the same figures over all
trials assigned to a group (``cross-group`` excluded): ratio = group / overall (1.0 when both
are 0, inf when only the overall is 0).

A group with fewer than ``min_trials`` trials, ``min_targets`` targets or ``min_nontargets``
non-targets gets status ``"insufficient trials"``: it is reported with whatever figures are
computable, and left out of GARBE, FDR and the worst-ratio search (:func:`disparity`).

**Resamples.** :func:`column_figures` and :func:`disparity` take ``rows`` (trial indices,
repeats allowed): a bootstrap replicate computes the same figures on its resample over the
groups that were "ok" on the full list; a group with no targets or no non-targets in a
resample is left out of that resample's summaries.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .fairness import fdr, garbe, gini
from .metrics import act_dcf, eer
from .trials import validate_trials

__all__ = [
    "BIAS_FIGURES",
    "CROSS_GROUP",
    "MISSING_GROUP",
    "RATIO_METRICS",
    "STATUS_CROSS",
    "STATUS_INSUFFICIENT",
    "STATUS_OK",
    "GroupCodes",
    "across_columns",
    "assign_groups",
    "bias_summary",
    "column_figures",
    "disparity",
    "fdr",
    "garbe",
    "gini",
    "group_codes",
    "group_report",
    "rates",
]

CROSS_GROUP = "cross-group"
MISSING_GROUP = "missing"
STATUS_OK = "ok"
STATUS_INSUFFICIENT = "insufficient trials"
STATUS_CROSS = "cross-group"
BIAS_FIGURES = ("worst_ratio", "garbe", "fdr")
RATIO_METRICS = ("eer_ratio", "fmr_ratio", "fnmr_ratio", "dcf_ratio")
TABLE_RATIOS = ("eer_ratio", "fmr_ratio", "fnmr_ratio")  # what a table without a cost holds

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
COST_COLUMNS = [*REPORT_COLUMNS[:7], "dcf", *REPORT_COLUMNS[7:10], "dcf_ratio", "status"]

Cost = tuple[float, float, float]  # (p_target, c_miss, c_fa)


# --------------------------------------------------------------------------- the engine


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


@dataclass(frozen=True)
class GroupCodes:
    """The groups of one column: ``names`` sorted, ``codes[i]`` = index of trial i's group in
    ``names``, −1 for a ``cross-group`` trial."""

    names: tuple[str, ...]
    codes: np.ndarray

    @property
    def in_group(self) -> np.ndarray:
        return self.codes >= 0


def group_codes(trials: pd.DataFrame, column: str, enroll_column: str | None = None) -> GroupCodes:
    """:func:`assign_groups` as integer codes."""
    groups = assign_groups(trials, column, enroll_column).to_numpy()
    names = tuple(sorted(set(groups[groups != CROSS_GROUP].tolist())))
    lookup = {g: i for i, g in enumerate(names)}
    return GroupCodes(names, np.array([lookup.get(g, -1) for g in groups], dtype=np.int64))


def _ratio(x: float, ref: float) -> float:
    if math.isnan(x) or math.isnan(ref):
        return math.nan
    if ref > 0:
        return x / ref
    return 1.0 if x == 0 else math.inf


def rates(
    scores: np.ndarray, labels: np.ndarray, threshold: float, cost: Cost | None = None
) -> dict[str, float]:
    """``eer``, ``fmr``, ``fnmr`` at ``threshold`` (and ``dcf`` at ``cost``) of a trial subset
    (float scores, bool labels); NaN where a class is absent."""
    s, y = scores, labels
    n_tar = int(y.sum())
    n_non = y.size - n_tar
    both = bool(n_tar and n_non)
    out = {
        "eer": eer(s, y) if both else math.nan,
        "fmr": float(np.count_nonzero(s[~y] >= threshold) / n_non) if n_non else math.nan,
        "fnmr": float(np.count_nonzero(s[y] < threshold) / n_tar) if n_tar else math.nan,
    }
    if cost is not None:
        out["dcf"] = act_dcf(s, y, *cost) if both else math.nan
    return out


def column_figures(
    scores: np.ndarray,
    labels: np.ndarray,
    groups: GroupCodes,
    threshold: float,
    *,
    cost: Cost | None = None,
    rows: np.ndarray | None = None,
    only: Collection[str] | None = None,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """``(overall, {group: figures})`` of one column on all trials or on ``rows``.

    overall = :func:`rates` over the trials assigned to a group; each group's entry holds
    ``n_trials``, ``n_target``, ``n_nontarget``, its :func:`rates` and their ratios to the
    overall ones (``<figure>_ratio``). ``only`` restricts the groups computed.
    """
    codes = groups.codes
    if rows is not None:
        scores, labels, codes = scores[rows], labels[rows], codes[rows]
    m = codes >= 0
    overall = rates(scores[m], labels[m], threshold, cost)
    per: dict[str, dict[str, float]] = {}
    for k, name in enumerate(groups.names):
        if only is not None and name not in only:
            continue
        g = codes == k
        y = labels[g]
        n_tar = int(y.sum())
        vals = rates(scores[g], y, threshold, cost)
        per[name] = {
            "n_trials": int(y.size),
            "n_target": n_tar,
            "n_nontarget": int(y.size - n_tar),
            **vals,
            **{f"{f}_ratio": _ratio(v, overall[f]) for f, v in vals.items()},
        }
    return overall, per


def disparity(
    per_group: Mapping[str, Mapping[str, float]],
    ok: Sequence[str],
    ratio_metrics: Sequence[str],
    alpha: float,
) -> dict[str, Any]:
    """GARBE, FDR and the worst group ratio over the ``ok`` groups that have both targets and
    non-targets: ``{garbe, fdr, worst_ratio, worst_group, worst_metric}``. GARBE / FDR are
    NaN with fewer than two such groups; ``worst_ratio`` = the largest of ``ratio_metrics``
    over them (first group and metric on ties; NaN / None when there is none)."""
    use = [
        g for g in ok if g in per_group and 0 < per_group[g]["n_target"] < per_group[g]["n_trials"]
    ]
    if len(use) >= 2:
        fm = {g: per_group[g]["fmr"] for g in use}
        fn = {g: per_group[g]["fnmr"] for g in use}
        g_, f_ = garbe(fm, fn, alpha), fdr(fm, fn, alpha)
    else:
        g_ = f_ = math.nan
    worst, worst_group, worst_metric = math.nan, None, None
    for metric in ratio_metrics:
        for g in use:
            v = per_group[g][metric]
            if not math.isnan(v) and (math.isnan(worst) or v > worst):
                worst, worst_group, worst_metric = float(v), g, metric
    return {
        "garbe": g_,
        "fdr": f_,
        "worst_ratio": worst,
        "worst_group": worst_group,
        "worst_metric": worst_metric,
    }


def across_columns(figures: Mapping[str, float], columns: Sequence[str]) -> dict[str, float]:
    """``bias.worst_ratio`` / ``bias.garbe`` = max over columns, ``bias.fdr`` = min, of the
    ``bias.<column>.<figure>`` entries of the columns given; NaN values skipped, NaN when no
    column is left (not assessable: gates on it fail closed)."""
    out = {}
    for name, pick in (("worst_ratio", max), ("garbe", max), ("fdr", min)):
        vals = [figures[f"bias.{c}.{name}"] for c in columns if f"bias.{c}.{name}" in figures]
        vals = [v for v in vals if not math.isnan(v)]
        out[f"bias.{name}"] = pick(vals) if vals else math.nan
    return out


# --------------------------------------------------------------------------- tables


def group_report(
    trials: pd.DataFrame,
    column: str,
    threshold: float,
    *,
    min_trials: int,
    min_targets: int,
    min_nontargets: int,
    enroll_column: str | None = None,
    cost: Cost | None = None,
    score_column: str = "score",
    label_column: str = "label",
) -> pd.DataFrame:
    """One row per group of ``column``: counts, EER, FMR/FNMR at ``threshold`` (and DCF at
    ``cost``), ratios, status.

    Columns: group, n_trials, n_target, n_nontarget, eer, fmr, fnmr, [dcf,] eer_ratio,
    fmr_ratio, fnmr_ratio, [dcf_ratio,] status ("ok" | "insufficient trials" |
    "cross-group"). Groups are sorted by name, the ``cross-group`` row last. The overall
    reference figures are in ``table.attrs["overall"]`` (dict: n_trials, eer, fmr, fnmr,
    threshold[, dcf]).
    """
    _check_table(trials, [score_column, label_column, column])
    t = float(threshold)
    if not math.isfinite(t):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    s_all, y_all = validate_trials(
        trials[score_column].to_numpy(), trials[label_column].to_numpy(), name=score_column
    )
    groups = group_codes(trials, column, enroll_column)
    in_group = groups.in_group
    try:
        validate_trials(s_all[in_group], y_all[in_group], name=score_column)
    except ValueError as exc:
        raise ValueError(f"trials assigned to a group of {column!r}: {exc}") from exc
    overall, per = column_figures(s_all, y_all, groups, t, cost=cost)
    rows = []
    for name, fig in per.items():
        small = (
            fig["n_trials"] < min_trials
            or fig["n_target"] < min_targets
            or fig["n_nontarget"] < min_nontargets
        )
        rows.append({"group": name, **fig, "status": STATUS_INSUFFICIENT if small else STATUS_OK})
    if (~in_group).any():
        y = y_all[~in_group]
        vals = rates(s_all[~in_group], y, t, cost)
        rows.append(
            {
                "group": CROSS_GROUP,
                "n_trials": int(y.size),
                "n_target": int(y.sum()),
                "n_nontarget": int(y.size - y.sum()),
                **vals,
                **{f"{f}_ratio": _ratio(v, overall[f]) for f, v in vals.items()},
                "status": STATUS_CROSS,
            }
        )
    table = pd.DataFrame(rows, columns=REPORT_COLUMNS if cost is None else COST_COLUMNS)
    table.attrs["overall"] = {
        "n_trials": int(in_group.sum()),
        "eer": overall["eer"],
        "fmr": overall["fmr"],
        "fnmr": overall["fnmr"],
        "threshold": t,
        **({"dcf": overall["dcf"]} if cost is not None else {}),
    }
    return table


def bias_summary(
    trials: pd.DataFrame,
    columns: Sequence[str],
    threshold: float,
    *,
    min_trials: int,
    min_targets: int,
    min_nontargets: int,
    enroll_columns: Mapping[str, str] | None = None,
    alpha: float = 0.5,
    ratio_metrics: Sequence[str] = TABLE_RATIOS,
    cost: Cost | None = None,
    score_column: str = "score",
    label_column: str = "label",
) -> dict[str, dict[str, Any]]:
    """Per grouping column: the :func:`group_report` table and its summary figures.

    Returns ``{column: {"table", "overall", "garbe", "fdr", "worst_ratio", "worst_group",
    "worst_metric", "n_groups_ok"}}`` (:func:`disparity` over the "ok" groups).
    ``enroll_columns`` maps a column to its enrollment-side column; ``dcf_ratio`` in
    ``ratio_metrics`` needs ``cost``.
    """
    if isinstance(columns, str):
        columns = [columns]
    enroll_columns = dict(enroll_columns or {})
    unknown = set(enroll_columns) - set(columns)
    if unknown:
        raise ValueError(f"enroll_columns names columns not in columns: {sorted(unknown)}")
    bad = set(ratio_metrics) - set(RATIO_METRICS if cost is not None else TABLE_RATIOS)
    if bad:
        raise ValueError(f"ratio_metrics {sorted(bad)}: not a figure of this table")
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
            cost=cost,
            score_column=score_column,
            label_column=label_column,
        )
        ok = table[table["status"] == STATUS_OK]
        per = {r["group"]: r for r in ok.to_dict("records")}
        d = disparity(per, list(per), ratio_metrics, alpha)
        out[col] = {
            "table": table,
            "overall": dict(table.attrs["overall"]),
            "garbe": d["garbe"],
            "fdr": d["fdr"],
            "worst_ratio": d["worst_ratio"],
            "worst_group": d["worst_group"],
            "worst_metric": d["worst_metric"],
            "n_groups_ok": len(ok),
        }
    return out
