"""The pair gate (registry/policy.yaml `countermeasure:`): a candidate speaker model +
countermeasure refused when its countermeasure is worse on an unseen attack, naming it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from speakerops.cli import main
from speakerops.core.policy import load_policy
from speakerops.registry.cm_gate import pair_verdict

from .conftest import REPO


def iv(value: float, spread: float = 0.02) -> dict:
    return {"value": value, "low": value - spread, "high": value + spread}


CHAMPION = {
    "hashes": {"cm_eval": "a", "sasv_trials_eval": "b", "cm_calibration": "c"},
    "cm": {
        "eer_unseen": iv(0.12),
        "min_t_dcf": iv(0.4),
        "eer_per_attack": {"A03": iv(0.10), "A05": iv(0.15), "A06": iv(0.11)},
    },
    "speaker_alone": {
        "sasv_eer": iv(0.30),
        "sv_eer": iv(0.05),
        "spf_eer": iv(0.45),
        "min_a_dcf": iv(0.8),
    },
    "pair": {"sasv_eer": iv(0.10), "sv_eer": iv(0.06), "spf_eer": iv(0.12), "min_a_dcf": iv(0.4)},
}


def paired(cand: dict, champ: dict, spread: float = 0.03) -> dict:
    """candidate − champion of every figure, as `spoof_eval.paired_difference` gives it."""
    out: dict = {"hashes": cand["hashes"]}
    for part in ("cm", "speaker_alone", "pair"):
        out[part] = {}
        for k, v in cand[part].items():
            if k == "eer_per_attack":
                out[part][k] = {
                    a: iv(x["value"] - champ[part][k][a]["value"], spread) for a, x in v.items()
                }
            else:
                out[part][k] = iv(v["value"] - champ[part][k]["value"], spread)
    return out


def test_a_pair_worse_on_an_unseen_attack_is_refused_naming_it(tmp_path: Path) -> None:
    policy = load_policy(REPO / "registry" / "policy.yaml")
    assert {g.metric for g in policy.cm_absolute} >= {
        "cm.eer_unseen",
        "cm.eer_attack",
        "pair.sasv_eer",
    }
    assert pair_verdict(policy, CHAMPION)["passed"]  # the first pair: absolute gates only
    assert pair_verdict(policy, CHAMPION, CHAMPION, paired(CHAMPION, CHAMPION))["passed"]

    worse = copy.deepcopy(CHAMPION)
    worse["cm"]["eer_per_attack"]["A06"] = iv(0.25)  # the replay attack gets through more often
    verdict = pair_verdict(policy, worse, CHAMPION, paired(worse, CHAMPION))
    assert not verdict["passed"] and verdict["refused"] == ["cm.eer_attack[A06].vs_champion"]
    row = next(r for r in verdict["checks"] if r["check"] == "cm.eer_attack[A06].vs_champion")
    assert row["value"] == pytest.approx(0.14) and "A06" in row["reason"]
    # decided on the paired interval, not the points: a point within the margin whose upper
    # bound is not refuses; the same point with a tight paired interval passes
    slightly = copy.deepcopy(CHAMPION)
    slightly["cm"]["eer_per_attack"]["A06"] = iv(0.14)  # +0.03, margin 0.05
    assert pair_verdict(policy, slightly, CHAMPION, paired(slightly, CHAMPION, 0.01))["passed"]
    wide = pair_verdict(policy, slightly, CHAMPION, paired(slightly, CHAMPION, 0.025))
    assert wide["refused"] == ["cm.eer_attack[A06].vs_champion"]
    # two reports alone carry no scores: the relative gates fail closed, saying what to run
    alone = pair_verdict(policy, CHAMPION, CHAMPION)
    assert not alone["passed"] and all(r.endswith(".vs_champion") for r in alone["refused"])
    assert "speakerops promote" in next(r for r in alone["checks"] if not r["passed"])["reason"]

    useless = copy.deepcopy(CHAMPION)
    useless["pair"]["sasv_eer"] = iv(0.31)  # the countermeasure does not help the speaker model
    assert "pair.helps" in pair_verdict(policy, useless)["refused"]
    # the reason carries the paired interval of pair − alone when the report has it, and a
    # policy can ask for that interval to lie below zero (an absolute gate on its upper bound)
    helped = copy.deepcopy(CHAMPION) | {"pair_vs_alone": {"sasv_eer": iv(-0.20, 0.05)}}
    row = next(r for r in pair_verdict(policy, helped)["checks"] if r["check"] == "pair.helps")
    assert row["passed"] and "paired difference [-0.2500, -0.1500]" in row["reason"]
    strict_text = (
        (REPO / "registry" / "policy.yaml")
        .read_text()
        .replace(
            "    pair.sasv_eer: {max: 0.35, use: low}\n",
            "    pair.sasv_eer: {max: 0.35, use: low}\n    pair_vs_alone.sasv_eer: {max: 0.0, use: high}\n",
        )
    )
    (tmp_path / "strict.yaml").write_text(strict_text)
    strict = load_policy(tmp_path / "strict.yaml")
    assert pair_verdict(strict, helped)["passed"]
    unsure = copy.deepcopy(CHAMPION) | {"pair_vs_alone": {"sasv_eer": iv(-0.02, 0.05)}}
    assert pair_verdict(strict, unsure)["refused"] == ["pair_vs_alone.sasv_eer.max"]
    assert pair_verdict(strict, CHAMPION)["refused"] == [
        "pair_vs_alone.sasv_eer.max"
    ]  # not reported
    missing = copy.deepcopy(CHAMPION)
    del missing["cm"]["eer_per_attack"]
    assert "cm.eer_attack.max" in pair_verdict(policy, missing)["refused"]  # fails closed
    other_lists = copy.deepcopy(CHAMPION) | {"hashes": {"cm_eval": "z"}}
    assert pair_verdict(policy, other_lists, CHAMPION)["refused"] == ["lists.same"]

    # the command: exit 1, the report names the attack
    (tmp_path / "cand.json").write_text(json.dumps(worse))
    (tmp_path / "champ.json").write_text(json.dumps(CHAMPION))
    (tmp_path / "diff.json").write_text(json.dumps(paired(worse, CHAMPION)))
    argv = ["spoof", "gate", f"candidate={tmp_path / 'cand.json'}", f"champion={tmp_path / 'champ.json'}",
            f"difference={tmp_path / 'diff.json'}",
            f"spoof.eval_dir={tmp_path}", f"register.policy={REPO / 'registry' / 'policy.yaml'}"]  # fmt: skip
    assert main(argv) == 1
    report = (tmp_path / "pair_gate.md").read_text()
    assert report.startswith("# Pair gate: REFUSED (cm.eer_attack[A06].vs_champion)")


def test_a_malformed_countermeasure_section_is_refused(tmp_path: Path) -> None:
    text = (REPO / "registry" / "policy.yaml").read_text() + "  extra: 1\n"
    (tmp_path / "policy.yaml").write_text(text)
    with pytest.raises(ValueError, match="`countermeasure:` holds `absolute:` and `relative:`"):
        load_policy(tmp_path / "policy.yaml")
