"""speakerops.eval.assess.assess: figures, speaker-bootstrap intervals (paired for two
systems) and per-group bias, against the finished building blocks. Simulated scores: fast."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from speakerops.eval import metrics as M
from speakerops.eval.assess import AssessSettings, assess
from speakerops.eval.bias import bias_summary
from speakerops.eval.bootstrap import speaker_bootstrap, verification_metric_fns
from speakerops.eval.trials import TrialSet, trial_table


def world(seed: int = 0, n_spk: int = 36, per: int = 4, weak_group: str | None = None):
    """Speakers with gender (alternating) and accent (3 values); all target pairs and 8
    random non-targets per utterance; scores with a per-speaker offset; ``weak_group``'s
    target scores are pulled down."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_spk):
        for k in range(per):
            rows.append(
                {
                    "utt_id": f"s{s:02d}-{k}",
                    "path": f"/x/s{s:02d}-{k}.wav",
                    "speaker": f"s{s:02d}",
                    "duration": 2.0 + k,
                    "gender": "fm"[s % 2],
                    "accent": ["north", "south", "east"][s % 3],
                    "split": "eval",
                }
            )
    manifest = pd.DataFrame(rows)
    utts = manifest["utt_id"].to_numpy()
    spk = manifest["speaker"].to_numpy()
    pairs = set()
    for i in range(len(utts)):
        for j in range(i + 1, len(utts)):
            if spk[i] == spk[j]:
                pairs.add((utts[i], utts[j], 1))
        for j in rng.choice(np.flatnonzero(spk != spk[i]), 8, replace=False):
            a, b = sorted((utts[i], utts[j]))
            pairs.add((a, b, 0))
    trials = pd.DataFrame(sorted(pairs), columns=["enroll", "test", "label"])
    table = trial_table(trials, manifest)
    y = table["label"].to_numpy().astype(bool)
    offset = dict(zip(sorted(set(spk)), rng.normal(0, 0.5, n_spk), strict=True))
    s = rng.normal(0, 1, len(y)) + 2.2 * y + y * table["enroll_speaker"].map(offset).to_numpy()
    if weak_group:
        s = s - 1.8 * (y & (table["gender"] == weak_group).to_numpy())
    return TrialSet("eval", Path("trials_eval.csv"), "0" * 64, table), s


SETTINGS = AssessSettings(
    p_targets=(0.01, 0.05),
    operating_point={"p_target": 0.2, "c_miss": 1.0, "c_fa": 1.0},
    bias_columns=("gender", "accent", "language"),
    min_trials=40,
    min_targets=10,
    min_nontargets=10,
    ratio_metrics=("eer_ratio", "fmr_ratio", "fnmr_ratio"),
    n_boot=150,
    seed=5,
    same_group_pairs=True,  # every setting explicit: AssessSettings has no defaults of its own
    garbe_alpha=0.5,
    confidence=0.95,
)


def test_single_system_intervals_equal_speaker_bootstrap_and_points_equal_metrics() -> None:
    trials, s = world()
    llr = 1.3 * s - 0.7
    res, diff = assess(trials, {"m": (s, llr)}, SETTINGS)
    assert diff is None
    figs = res["m"].figures
    y = trials.labels
    direct = speaker_bootstrap(
        s,
        y,
        trials.table["enroll_speaker"].to_numpy(),
        verification_metric_fns((0.01, 0.05), with_llrs=True),
        n_boot=SETTINGS.n_boot,
        seed=SETTINGS.seed,
        extra={"llrs": llr},
    )
    for name, iv in direct.items():
        assert figs[name]["value"] == iv.point, name
        assert figs[name]["low"] == pytest.approx(iv.low, abs=1e-12), name
        assert figs[name]["high"] == pytest.approx(iv.high, abs=1e-12), name
    theta = SETTINGS.threshold
    assert theta == pytest.approx(math.log(4))
    assert figs["fmr"]["value"] == np.mean(llr[~y] >= theta)
    assert figs["fnmr"]["value"] == np.mean(llr[y] < theta)
    assert figs["eer"]["value"] == M.eer(s, y)
    again, _ = assess(trials, {"m": (s, llr)}, SETTINGS)
    assert again["m"].figures == figs  # deterministic for the seed


def test_bias_figures_equal_bias_summary_and_group_dcf_equals_act_dcf() -> None:
    trials, s = world(weak_group="f")
    llr = 1.3 * s - 0.7
    res, _ = assess(trials, {"m": (s, llr)}, SETTINGS)
    m = res["m"]
    df = trials.table.assign(score=llr)
    ref = bias_summary(
        df,
        ["gender", "accent"],
        SETTINGS.threshold,
        enroll_columns={"gender": "enroll_gender", "accent": "enroll_accent"},
        min_trials=40,
        min_targets=10,
        min_nontargets=10,
    )
    for col in ("gender", "accent"):
        for k in ("worst_ratio", "garbe", "fdr"):
            assert m.figures[f"bias.{col}.{k}"]["value"] == ref[col][k], (col, k)
            lo, hi = m.figures[f"bias.{col}.{k}"]["low"], m.figures[f"bias.{col}.{k}"]["high"]
            assert lo <= hi
        assert m.bias[col]["worst_group"] == ref[col]["worst_group"]
    assert m.bias["gender"]["worst_group"] == "f"
    assert m.figures["bias.worst_ratio"]["value"] == max(
        ref["gender"]["worst_ratio"], ref["accent"]["worst_ratio"]
    )
    # per-group detection cost at the shipped threshold = act_dcf on the group's LLRs
    f_rows = ((df["gender"] == "f") & (df["enroll_gender"] == "f")).to_numpy()
    row = next(r for r in m.bias["gender"]["table"] if r["group"] == "f")
    assert row["dcf"] == M.act_dcf(llr[f_rows], trials.labels[f_rows], 0.2)
    assert "worst group gender='f'" in m.details()["bias.gender.worst_ratio"]
    # a configured column the manifest lacks is reported, never dropped
    assert m.bias["language"] == {"status": "column 'language' is not in the manifest"}


def test_paired_difference_uses_the_same_speaker_resamples() -> None:
    trials, s = world(seed=1)
    y = trials.labels
    rng = np.random.default_rng(9)
    better = s + 0.8 * y + 0.3 * rng.normal(size=s.size)
    same, diff0 = assess(trials, {"a": (s, s), "b": (s, s)}, SETTINGS)
    for name, d in diff0.items():
        if not math.isnan(d["value"]):
            assert (d["value"], d["low"], d["high"]) == (0.0, 0.0, 0.0), name
    res, diff = assess(trials, {"a": (better, better), "b": (s, s)}, SETTINGS)
    a, b, d = res["a"].figures["eer"], res["b"].figures["eer"], diff["eer"]
    assert d["value"] == pytest.approx(a["value"] - b["value"])
    assert d["high"] < 0  # clearly better on every resample's 97.5th percentile
    # pairing removes the shared speaker variance: narrower than the two intervals combined
    assert d["high"] - d["low"] < (a["high"] - a["low"]) + (b["high"] - b["low"])
    assert res["b"].figures == same["a"].figures  # the same draws whatever the pair


def test_insufficient_groups_are_reported_and_settings_validate() -> None:
    trials, s = world(n_spk=12)
    strict = AssessSettings(**{**SETTINGS.__dict__, "min_trials": 10_000})
    res, _ = assess(trials, {"m": (s, s)}, strict)
    b = res["m"].bias["gender"]
    assert {r["status"] for r in b["table"]} == {"insufficient trials", "cross-group"}
    assert math.isnan(res["m"].figures["bias.gender.garbe"]["value"])
    assert "fewer than 2 groups" in res["m"].details()["bias.gender.garbe"]
    no_llr, _ = assess(trials, {"m": (s, None)}, SETTINGS)
    assert "cllr" not in no_llr["m"].figures and "bias.garbe" not in no_llr["m"].figures
    assert "no calibration" in no_llr["m"].bias["gender"]["status"]
    with pytest.raises(ValueError, match="ratio_metrics"):
        AssessSettings.from_config({"bias": {"ratio_metrics": ["auc_ratio"]}})
    with pytest.raises(ValueError, match="pairing"):
        AssessSettings.from_config({"bias": {"pairing": "both"}})
    with pytest.raises(ValueError, match="p_target"):
        AssessSettings.from_config({}, {"p_target": 0.0})


def test_a_column_with_one_ok_group_stays_out_of_the_aggregates() -> None:
    """A disparity needs two groups: a column with a single "ok" group has its own finite worst
    ratio, but bias.worst_ratio / garbe / fdr (over columns) leave it out."""
    trials, s = world(weak_group="f")
    t = trials.table
    t["band"] = np.where(t["speaker"].isin(["s00", "s01"]), "y", "x")
    t["enroll_band"] = np.where(t["enroll_speaker"].isin(["s00", "s01"]), "y", "x")
    llr = 1.3 * s - 0.7
    only = AssessSettings(**{**SETTINGS.__dict__, "bias_columns": ("band",)})
    res, _ = assess(trials, {"m": (s, llr)}, only)
    figs, band = res["m"].figures, res["m"].bias["band"]
    assert band["n_groups_ok"] == 1 and math.isfinite(band["worst_ratio"])
    assert figs["bias.band.worst_ratio"]["value"] == band["worst_ratio"]
    for k in ("worst_ratio", "garbe", "fdr"):
        assert math.isnan(figs[f"bias.{k}"]["value"]), k
    both = AssessSettings(**{**SETTINGS.__dict__, "bias_columns": ("band", "gender")})
    res2, _ = assess(trials, {"m": (s, llr)}, both)
    assert res2["m"].figures["bias.worst_ratio"]["value"] == res2["m"].bias["gender"]["worst_ratio"]
