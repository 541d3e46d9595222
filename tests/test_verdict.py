"""speakerops.registry.verdict: the promotion decision as a pure function of the figures and
the policy (no models, no store: fast)."""

from __future__ import annotations

from pathlib import Path

from speakerops.core.policy import load_policy
from speakerops.registry.verdict import (
    calibration_precondition,
    outcome,
    preconditions,
    promotion_verdict,
)

PINNED = "a" * 64


def _policy(tmp_path: Path, require_champion: bool = False):
    p = tmp_path / "policy.yaml"
    p.write_text(
        "absolute:\n  eer: {max: 0.10}\n"
        "relative:\n  eer: {margin: 0.01}\n"
        f"require_champion: {'true' if require_champion else 'false'}\n"
    )
    return load_policy(p)


def test_preconditions_refuse_other_trial_lists_and_a_missing_required_champion(tmp_path):
    pol = _policy(tmp_path, require_champion=True)
    cand = {"version": "2", "trials_sha256": PINNED}
    ok = preconditions(pol, cand, {"version": "1", "trials_sha256": PINNED}, PINNED)
    assert [(c["gate"], c["passed"]) for c in ok] == [
        ("trials.candidate", True),
        ("trials.champion", True),
    ]
    other = preconditions(pol, cand, {"version": "1", "trials_sha256": "b" * 64}, PINNED)
    assert not other[1]["passed"] and "not comparable" in other[1]["reason"]
    untagged = preconditions(pol, {"version": "2", "trials_sha256": None}, None, PINNED)
    assert [c["passed"] for c in untagged] == [False, False]
    assert "no trials_sha256 tag" in untagged[0]["reason"]
    assert "requires one" in untagged[1]["reason"]


def test_the_verdict_adds_the_gates_only_for_an_assessed_candidate(tmp_path):
    pol = _policy(tmp_path)
    pre = preconditions(pol, {"version": "2", "trials_sha256": PINNED}, None, PINNED)
    refused = promotion_verdict(pol, pre[:1] + [dict(pre[0], passed=False, reason="x")])
    assert not refused.passed and len(refused.checks) == 2  # no gates without figures
    figures = {"eer": {"value": 0.05, "low": 0.04, "high": 0.06}}
    cal = calibration_precondition("2", {"kind": "linear"}, True)
    v = promotion_verdict(pol, [*pre, cal], figures, {}, None, None)
    assert [c["gate"] for c in v.checks] == [
        "trials.candidate",
        "champion.present",
        "calibration.candidate",
        "eer.max",
        "eer.vs_champion",
    ]
    assert v.passed and v.checks[-1]["skipped"]  # no champion, not required: skipped
    again = promotion_verdict(pol, [*pre, cal], figures, {}, None, None)
    assert again.to_dict() == v.to_dict()  # pure: the same inputs, the same verdict
    worse = promotion_verdict(pol, [*pre, cal], {"eer": {"value": 0.2}}, {}, None, None)
    eer_reason = next(c["reason"] for c in worse.checks if c["gate"] == "eer.max")
    assert not worse.passed and worse.reasons == [eer_reason]
    uncalibrated = calibration_precondition("2", None, False)
    assert not uncalibrated["passed"] and "ships no calibration" in uncalibrated["reason"]


def test_outcome_moves_the_champion_only_on_a_real_pass(tmp_path):
    pol = _policy(tmp_path)
    pre = preconditions(pol, {"version": "2", "trials_sha256": PINNED}, None, PINNED)
    passed = promotion_verdict(pol, pre, {"eer": 0.05}, {}, None, None)
    assert outcome(passed, "2", "1", dry_run=False)["champion_after"] == "2"
    assert outcome(passed, "2", "1", dry_run=True)["champion_after"] == "1"
    failed = promotion_verdict(pol, pre, {"eer": 0.5}, {}, None, None)
    out = outcome(failed, "2", None, dry_run=False)
    assert (out["verdict"], out["passed"], out["champion_after"]) == ("fail", False, None)
