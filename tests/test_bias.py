"""speakerops.eval.bias: per-group tables, GARBE / FDR, cross-group and small groups."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from speakerops.eval import bias as B
from speakerops.eval.metrics import eer, eer_threshold

# the per-group minimums are always given (conf/ holds the configured ones): 100/30/30 here
MIN = {"min_trials": 100, "min_targets": 30, "min_nontargets": 30}


def make_trials(degrade=None, n=600, seed=0, tiny_group=True, cross=200):
    """Groups A, B, C, each with n target + n non-target same-group trials; the group in
    `degrade` has closer target/non-target distributions. Optional tiny group D (12 trials)
    and `cross` non-target trials between speakers of different groups."""
    rng = np.random.default_rng(seed)
    parts = []
    for g in ("A", "B", "C"):
        d = 1.2 if g == degrade else 3.0
        tar = rng.normal(d / 2, 1.0, n)
        non = rng.normal(-d / 2, 1.0, n)
        parts.append(
            pd.DataFrame(
                {
                    "score": np.r_[tar, non],
                    "label": np.r_[np.ones(n, int), np.zeros(n, int)],
                    "gender": g,
                    "enroll_gender": g,
                }
            )
        )
    if tiny_group:
        parts.append(
            pd.DataFrame(
                {
                    "score": np.r_[rng.normal(1.5, 1, 6), rng.normal(-1.5, 1, 6)],
                    "label": [1] * 6 + [0] * 6,
                    "gender": "D",
                    "enroll_gender": "D",
                }
            )
        )
    if cross:
        parts.append(
            pd.DataFrame(
                {
                    "score": rng.normal(-3.0, 1.0, cross),
                    "label": 0,
                    "gender": rng.choice(["A", "B"], cross),
                    "enroll_gender": "C",
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def test_hand_computed_garbe_and_fdr():
    fmr = [0.01, 0.02, 0.03]
    fnmr = [0.1, 0.1, 0.4]
    # Gini(FMR): Σ_i Σ_j |x_i − x_j| = 2·(0.01 + 0.02 + 0.01) = 0.08, mean 0.02, n = 3:
    #   0.08 / (2·9·0.02) = 0.2222, × n/(n−1) = 1.5 -> 1/3.
    # Gini(FNMR): 2·(0 + 0.3 + 0.3) = 1.2, mean 0.2: 1.2 / 3.6 = 1/3, × 1.5 -> 1/2.
    assert B.gini(fmr) == pytest.approx(1 / 3)
    assert B.gini(fnmr) == pytest.approx(1 / 2)
    assert B.garbe(fmr, fnmr) == pytest.approx(0.5 / 3 + 0.5 / 2)  # 0.41667
    assert B.garbe(fmr, fnmr, alpha=0.25) == pytest.approx(0.25 / 3 + 0.75 / 2)  # 0.45833
    # FDR: max|ΔFMR| = 0.02, max|ΔFNMR| = 0.3 -> 1 − (0.5·0.02 + 0.5·0.3) = 0.84
    assert B.fdr(fmr, fnmr) == pytest.approx(0.84)
    assert B.fdr(fmr, fnmr, alpha=1.0) == pytest.approx(0.98)
    # two groups, one with all the errors: Gini = 2/1 · 2·0.2 / (2·4·0.1) = 1
    assert B.gini([0.2, 0.0]) == pytest.approx(1.0)
    # equal groups: perfectly fair
    assert B.garbe([0.05] * 4, [0.1] * 4) == 0.0
    assert B.fdr([0.05] * 4, [0.1] * 4) == 1.0
    assert B.gini([0.0, 0.0]) == 0.0
    # mappings are matched by key, not by order
    assert B.garbe({"x": 0.01, "y": 0.03}, {"y": 0.4, "x": 0.1}) == pytest.approx(
        B.garbe([0.01, 0.03], [0.1, 0.4])
    )


def test_summary_input_errors():
    with pytest.raises(ValueError, match="at least 2 groups"):
        B.garbe([0.1], [0.2])
    with pytest.raises(ValueError, match="groups"):
        B.fdr([0.1, 0.2], [0.2, 0.3, 0.1])
    with pytest.raises(ValueError, match="alpha"):
        B.garbe([0.1, 0.2], [0.1, 0.2], alpha=1.5)
    with pytest.raises(ValueError, match="different groups"):
        B.fdr({"a": 0.1, "b": 0.2}, {"a": 0.1, "c": 0.2})
    with pytest.raises(ValueError, match="non-finite"):
        B.garbe([0.1, np.nan], [0.1, 0.2])


def test_hand_computed_group_report():
    # group x: tar 0.9, 0.2 ; non 0.6, 0.1.  group y: tar 0.8, 0.7 ; non 0.75, 0.3. t = 0.5
    # x: FNMR 1/2 (0.2 < 0.5), FMR 1/2 (0.6 >= 0.5). y: FNMR 0, FMR 1/2.
    # overall: FNMR 1/4, FMR 2/4 -> ratios x: fnmr 2, fmr 1; y: fnmr 0, fmr 1.
    df = pd.DataFrame(
        {
            "score": [0.9, 0.2, 0.6, 0.1, 0.8, 0.7, 0.75, 0.3],
            "label": [1, 1, 0, 0, 1, 1, 0, 0],
            "grp": ["x"] * 4 + ["y"] * 4,
        }
    )
    t = B.group_report(df, "grp", 0.5, min_trials=1, min_targets=1, min_nontargets=1)
    assert list(t.columns) == B.REPORT_COLUMNS
    assert t["group"].tolist() == ["x", "y"]
    assert t["n_trials"].tolist() == [4, 4]
    assert t["fnmr"].tolist() == [0.5, 0.0]
    assert t["fmr"].tolist() == [0.5, 0.5]
    assert t["fnmr_ratio"].tolist() == [2.0, 0.0]
    assert t["fmr_ratio"].tolist() == [1.0, 1.0]
    assert t["status"].tolist() == ["ok", "ok"]
    # per-group EER is the metrics-module EER of the group's trials
    assert t["eer"].iloc[0] == eer(df.score[:4], df.label[:4])
    overall = t.attrs["overall"]
    assert overall["fnmr"] == 0.25 and overall["fmr"] == 0.5 and overall["n_trials"] == 8
    assert t["eer_ratio"].iloc[1] == pytest.approx(t["eer"].iloc[1] / overall["eer"])
    # a score exactly on the threshold is accepted
    t2 = B.group_report(df, "grp", 0.6, min_trials=1, min_targets=1, min_nontargets=1)
    assert t2["fmr"].tolist() == [0.5, 0.5]


def test_degraded_group_flagged_and_garbe_higher():
    bal = make_trials(degrade=None)
    deg = make_trials(degrade="C")
    thr = eer_threshold(deg.score, deg.label)[1]
    rep = B.group_report(deg, "gender", thr, enroll_column="enroll_gender", **MIN)
    by = rep.set_index("group")
    assert by.loc["C", "status"] == "ok"
    assert by.loc["C", "eer_ratio"] > 1.5
    assert max(by.loc["C", "fmr_ratio"], by.loc["C", "fnmr_ratio"]) > 1.5
    for g in ("A", "B"):
        assert by.loc[g, "eer_ratio"] < 1.0
    s_deg = B.bias_summary(deg, ["gender"], thr, enroll_columns={"gender": "enroll_gender"}, **MIN)
    thr_b = eer_threshold(bal.score, bal.label)[1]
    s_bal = B.bias_summary(
        bal, ["gender"], thr_b, enroll_columns={"gender": "enroll_gender"}, **MIN
    )
    d, b = s_deg["gender"], s_bal["gender"]
    assert d["garbe"] > b["garbe"] + 0.2
    assert d["fdr"] < b["fdr"] - 0.1
    assert d["worst_group"] == "C" and d["worst_ratio"] > 1.5
    assert d["worst_metric"] in {"eer_ratio", "fmr_ratio", "fnmr_ratio"}
    assert d["n_groups_ok"] == 3
    ok = d["table"][d["table"].status == "ok"]
    assert d["garbe"] == pytest.approx(B.garbe(ok.fmr.tolist(), ok.fnmr.tolist()))


def test_insufficient_and_cross_group_rows_are_reported():
    df = make_trials(degrade="C")
    thr = 0.0
    rep = B.group_report(df, "gender", thr, enroll_column="enroll_gender", **MIN)
    assert rep["group"].tolist() == ["A", "B", "C", "D", "cross-group"]
    by = rep.set_index("group")
    assert by.loc["D", "status"] == "insufficient trials"
    assert by.loc["D", "n_trials"] == 12 and by.loc["D", "n_target"] == 6
    assert not math.isnan(by.loc["D", "fmr"])  # still computed, just flagged
    cg = by.loc["cross-group"]
    assert cg["status"] == "cross-group" and cg["n_trials"] == 200 and cg["n_target"] == 0
    assert math.isnan(cg["eer"]) and math.isnan(cg["fnmr"]) and not math.isnan(cg["fmr"])
    # overall reference excludes the (easy) cross-group non-targets
    assert rep.attrs["overall"]["n_trials"] == len(df) - 200
    s = B.bias_summary(df, ["gender"], thr, enroll_columns={"gender": "enroll_gender"}, **MIN)[
        "gender"
    ]
    assert s["n_groups_ok"] == 3
    assert s["worst_group"] in {"A", "B", "C"}
    # without enroll_column the test-side value is taken: the cross trials join A and B
    rep2 = B.group_report(df, "gender", thr, **MIN)
    assert "cross-group" not in rep2["group"].tolist()
    assert rep2.set_index("group").loc["A", "n_nontarget"] > by.loc["A", "n_nontarget"]


def test_no_qualifying_group_gives_nan_summaries_and_missing_values():
    df = make_trials(n=40, cross=0)
    df.loc[df.index[:5], "gender"] = None
    out = B.bias_summary(df, "gender", 0.0, min_trials=100, min_targets=30, min_nontargets=30)
    s = out["gender"]
    assert s["n_groups_ok"] == 0
    assert math.isnan(s["garbe"]) and math.isnan(s["fdr"]) and math.isnan(s["worst_ratio"])
    assert s["worst_group"] is None
    assert "missing" in s["table"]["group"].tolist()
    assert (s["table"]["status"] == "insufficient trials").all()


def test_exactly_one_qualifying_group_gives_nan_garbe_and_a_finite_worst_ratio():
    """One group with enough trials: GARBE / FDR compare groups, so they are undefined (NaN);
    the worst ratio is that group's largest ratio to the overall rates, finite. The degraded
    small groups (B, C) would be the worst were they counted."""
    df = make_trials(degrade="B", n=60, cross=0)
    small = df[df.gender.isin(["B", "C"])].groupby(["gender", "label"]).head(20)
    df = pd.concat([df[df.gender == "A"], small, df[df.gender == "D"]], ignore_index=True)
    s = B.bias_summary(df, "gender", 0.0, min_trials=100, min_targets=30, min_nontargets=30)[
        "gender"
    ]
    by = s["table"].set_index("group")
    assert s["n_groups_ok"] == 1 and by.loc["A", "status"] == "ok"
    assert (by.drop(index="A")["status"] == "insufficient trials").all()
    assert math.isnan(s["garbe"]) and math.isnan(s["fdr"])
    ratios = by.loc["A", ["eer_ratio", "fmr_ratio", "fnmr_ratio"]].astype(float)
    assert math.isfinite(s["worst_ratio"]) and s["worst_ratio"] == ratios.max()
    assert s["worst_group"] == "A" and s["worst_metric"] == ratios.idxmax()
    assert by.loc["B", "eer_ratio"] > s["worst_ratio"]  # excluded, not merely milder


def test_table_errors():
    df = make_trials(n=20, cross=0)
    with pytest.raises(ValueError, match="missing column"):
        B.group_report(df, "age", 0.0, **MIN)
    with pytest.raises(ValueError, match="threshold"):
        B.group_report(df, "gender", float("nan"), **MIN)
    bad = df.copy()
    bad.loc[0, "score"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        B.group_report(bad, "gender", 0.0, **MIN)
    with pytest.raises(ValueError, match="empty"):
        B.group_report(df.iloc[:0], "gender", 0.0, **MIN)
    with pytest.raises(ValueError, match="not in columns"):
        B.bias_summary(df, ["gender"], 0.0, enroll_columns={"age": "enroll_age"}, **MIN)
