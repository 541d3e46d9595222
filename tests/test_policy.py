"""speakerops.core.policy and speakerops.registry.checks: the policy file and the gate decisions (fail closed), and the
append-only audit log. No models, no store: fast."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from speakerops.core.jsonio import dumps
from speakerops.core.keys import Keyring
from speakerops.core.policy import load_policy, operating_point
from speakerops.registry import audit
from speakerops.registry.checks import check_absolute, check_relative, decide

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(text)
    return p


def test_repo_policy_parses_with_its_operating_point_and_gates() -> None:
    pol = load_policy(REPO / "registry" / "policy.yaml")
    assert pol.operating_point == {"p_target": 0.01, "c_miss": 1.0, "c_fa": 1.0}
    assert pol.threshold == pytest.approx(math.log(99))
    names = {g.name for g in pol.absolute}
    assert {"eer.max", "min_dcf_0.01.max", "cal_loss.max", "bias.worst_ratio.max"} <= names
    assert next(g for g in pol.absolute if g.metric == "bias.worst_ratio").use == "low"
    assert {g.metric for g in pol.relative} >= {"eer", "cllr"}
    assert len(pol.sha256) == 64


def test_legacy_policy_with_only_absolute_gates_still_loads(tmp_path: Path) -> None:
    pol = load_policy(write(tmp_path, "absolute:\n  eer: {max: 0.1}\n"))
    assert [(g.metric, g.op, g.limit) for g in pol.absolute] == [("eer", "max", 0.1)]
    assert pol.relative == [] and pol.require_champion is False
    assert pol.operating_point["p_target"] == 0.01


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("relative: {eer: {margin: 0.1}}\n", "absolute"),
        ("absolute: {eer: {ceiling: 0.1}}\n", "unknown bound"),
        ("absolute: {eer: {max: high}}\n", "expected a number"),
        ("absolute: {eer: {max: 0.1, use: mean}}\n", "use="),
        ("absolute: {eer: {max: 0.1}}\nrelative: {eer: {margin: -1}}\n", "margin must be >= 0"),
        ("absolute: {eer: {max: 0.1}}\nrelative: {eer: 0.1}\n", "expected {margin"),
        ("absolute: {eer: {max: 0.1}}\noperating_point: {p_target: 1.5}\n", "p_target"),
        ("absolute: {eer: {max: 0.1}}\nrequire_champion: maybe\n", "true or false"),
        ("absolute: {eer: {max: 0.1}}\ngates: {}\n", "unknown policy keys"),
        ("absolute: [eer]\n", "absolute"),
    ],
)
def test_malformed_policies_are_errors_naming_the_problem(
    tmp_path: Path, text: str, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        load_policy(write(tmp_path, text))


def test_missing_policy_file_is_an_error_and_default_operating_point(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="policy not found"):
        load_policy(tmp_path / "nope.yaml")
    assert operating_point(tmp_path / "nope.yaml")["p_target"] == 0.01


def test_absolute_gates_point_and_bounds_and_fail_closed(tmp_path: Path) -> None:
    pol = load_policy(
        write(
            tmp_path,
            "absolute:\n"
            "  eer: {max: 0.10}\n"
            "  cllr: {max: 0.5, use: high}\n"
            "  bias.fdr: {min: 0.8}\n"
            "  bias.gender.garbe: {max: 0.3}\n"
            "  not_a_metric: {max: 1}\n",
        )
    )
    figures = {
        "eer": {"value": 0.05, "low": 0.03, "high": 0.12},  # point passes, high would not
        "cllr": {"value": 0.40, "low": 0.30, "high": 0.55},  # decided on high: refused
        "bias.fdr": 0.79,  # a plain number is accepted too
        "bias.gender.garbe": {"value": math.nan, "low": math.nan, "high": math.nan},
    }
    checks = {
        c["gate"]: c for c in check_absolute(figures, pol, {"bias.gender.garbe": "one group"})
    }
    assert checks["eer.max"]["passed"] and "[0.0300, 0.1200]" in checks["eer.max"]["reason"]
    assert not checks["cllr.max"]["passed"] and "high bound 0.5500" in checks["cllr.max"]["reason"]
    assert not checks["bias.fdr.min"]["passed"] and "floor 0.8" in checks["bias.fdr.min"]["reason"]
    nan = checks["bias.gender.garbe.max"]
    assert not nan["passed"] and "not assessable (one group)" in nan["reason"]
    missing = checks["not_a_metric.max"]
    assert not missing["passed"] and "fail closed" in missing["reason"]
    assert not decide(list(checks.values())).passed
    assert decide([checks["eer.max"]]).passed
    assert not decide([]).passed  # no checks at all never passes


def test_relative_gates_use_the_paired_interval_and_need_a_champion(tmp_path: Path) -> None:
    pol = load_policy(
        write(
            tmp_path,
            "absolute: {eer: {max: 1}}\n"
            "relative:\n  eer: {margin: 0.01}\n  bias.fdr: {margin: 0.05, higher_is_better: true}\n",
        )
    )
    cand = {"eer": {"value": 0.05}, "bias.fdr": {"value": 0.9}}
    champ = {"eer": {"value": 0.06}, "bias.fdr": {"value": 0.9}}
    ok = {
        "eer": {"value": -0.01, "low": -0.02, "high": 0.005},
        "bias.fdr": {"value": 0.0, "low": -0.04, "high": 0.04},
    }
    assert all(c["passed"] for c in check_relative(cand, champ, ok, pol))
    worse = {
        "eer": {"value": 0.0, "low": -0.01, "high": 0.02},  # upper bound beyond the margin
        "bias.fdr": {"value": -0.05, "low": -0.09, "high": 0.0},  # lower bound below −margin
    }
    checks = check_relative(cand, champ, worse, pol)
    assert [c["passed"] for c in checks] == [False, False]
    assert "high bound +0.0200 > margin 0.01" in checks[0]["reason"]
    assert "low bound -0.0900 < −margin -0.05" in checks[1]["reason"]
    # no champion: skipped when optional, refused when required
    skipped = check_relative(cand, None, None, pol)
    assert all(c["passed"] and c["skipped"] for c in skipped)
    pol.require_champion = True
    required = check_relative(cand, None, None, pol)
    assert not any(c["passed"] for c in required) and "requires one" in required[0]["reason"]
    # a metric missing for one side refuses
    pol.require_champion = False
    gap = check_relative(cand, {"eer": {"value": 0.06}}, ok, pol)
    assert gap[0]["passed"] and not gap[1]["passed"] and "missing" in gap[1]["reason"]


def test_dumps_is_deterministic_and_strict_json() -> None:
    a = dumps({"b": 1.0, "a": [math.nan, math.inf, 2]})
    assert a == dumps({"a": [math.nan, math.inf, 2], "b": 1.0})
    assert json.loads(a) == {"a": [None, None, 2], "b": 1.0}


def test_audit_log_is_append_only_and_chained(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SPEAKEROPS_USER", "alice")
    log = tmp_path / "audit.jsonl"
    ring = Keyring(tmp_path / "keyring.json", bytes(range(32)))
    r1 = audit.append_audit(
        log, {"action": "promote", "verdict": "pass", "reasons": []}, keyring=ring
    )
    r2 = audit.append_audit(log, {"action": "rollback", "verdict": "rolled back"}, keyring=ring)
    assert (r1["seq"], r2["seq"]) == (1, 2) and r1["user"] == "alice"
    assert r1["prev_sha256"] == audit.GENESIS and r2["prev_sha256"] != audit.GENESIS
    assert r1["timestamp"].endswith("Z")
    assert audit.verify_audit_log(log, keyring=ring) == 2
    assert [r["action"] for r in audit.read_audit_log(log)] == ["promote", "rollback"]
    lines = log.read_text().splitlines()
    log.write_text(lines[0].replace("pass", "fail") + "\n" + lines[1] + "\n")
    with pytest.raises(ValueError, match="chain broken"):
        audit.verify_audit_log(log, keyring=ring)
    log.write_text(lines[1] + "\n")  # the first record deleted
    with pytest.raises(ValueError, match="chain broken"):
        audit.verify_audit_log(log, keyring=ring)


def _forge(lines: list[str], index: int, change: dict) -> list[str]:
    """Edit record `index` and recompute the plain sha256 chain after it (what a forger
    without the audit key can do)."""
    recs = [json.loads(ln) for ln in lines]
    recs[index].update(change)
    out: list[str] = []
    prev = audit.GENESIS
    for rec in recs:
        rec["prev_sha256"] = prev
        line = json.dumps(rec, sort_keys=True, default=str)
        prev = audit._line_sha(line)
        out.append(line)
    return out


def test_audit_log_refuses_forged_reordered_and_truncated_logs(tmp_path: Path) -> None:
    """Today's plain sha256 chain verified a forged line with the chain recomputed and a log
    whose tail was deleted; the keyed chain + the anchored head refuse both."""
    log = tmp_path / "audit.jsonl"
    ring = Keyring(tmp_path / "keyring.json", bytes(range(32)))
    recs = [
        audit.append_audit(log, {"action": "promote", "verdict": v}, keyring=ring)
        for v in ("pass", "refused", "pass")
    ]
    anchor = {"speaker-encoder": recs[-1]["head"]}
    assert audit.verify_audit_log(log, keyring=ring, anchors=anchor) == 3
    lines = log.read_text().splitlines()

    log.write_text("\n".join(_forge(lines, 1, {"verdict": "pass"})) + "\n")
    with pytest.raises(audit.AuditError, match=":2: MAC does not verify"):
        audit.verify_audit_log(log, keyring=ring)

    log.write_text("\n".join(_forge([lines[1], lines[0], lines[2]], 0, {})) + "\n")
    with pytest.raises(audit.AuditError, match="sequence number 2 where 1"):
        audit.verify_audit_log(log, keyring=ring)

    log.write_text("\n".join(lines[:2]) + "\n")  # the tail deleted: the chain still holds
    assert audit.verify_audit_log(log, keyring=ring) == 2
    with pytest.raises(audit.AuditError, match="the tail was deleted"):
        audit.verify_audit_log(log, keyring=ring, anchors=anchor)

    log.write_text("\n".join(lines) + "\n")
    other = Keyring(tmp_path / "other.json", bytes(range(32)))  # another store's audit key
    with pytest.raises(audit.AuditError, match="MAC does not verify"):
        audit.verify_audit_log(log, keyring=other)
    # an append after the anchor (anchoring interrupted) still verifies: its MAC is valid
    audit.append_audit(log, {"action": "rollback", "verdict": "rolled back"}, keyring=ring)
    assert audit.verify_audit_log(log, keyring=ring, anchors=anchor) == 4


def test_current_user_prefers_the_ci_actor(monkeypatch) -> None:
    monkeypatch.delenv("SPEAKEROPS_USER", raising=False)
    monkeypatch.setenv("GITHUB_ACTOR", "ci-bot")
    monkeypatch.setenv("USER", "someone")
    assert audit.current_user() == "ci-bot"
    monkeypatch.setenv("GITHUB_REPOSITORY", "o/r")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    assert audit.ci_context()["run_url"].endswith("/o/r/actions/runs/42")


def test_countermeasure_operating_point_parses_and_bad_ones_are_named(tmp_path: Path) -> None:
    base = "absolute:\n  eer: {max: 0.1}\ncountermeasure:\n  operating_point: "
    assert load_policy(write(tmp_path, "absolute:\n  eer: {max: 0.1}\n")).cm_operating_point == {
        "rule": "eer"
    }
    pol = load_policy(write(tmp_path, base + "{rule: bonafide_rejection, rate: 0.05}\n"))
    assert pol.cm_operating_point == {"rule": "bonafide_rejection", "rate": 0.05}
    text = "{rule: bonafide_rejection, rate: 0.02, split: deployment}\n"
    assert load_policy(write(tmp_path, base + text)).cm_operating_point == {
        "rule": "bonafide_rejection",
        "rate": 0.02,
        "split": "deployment",
    }
    for text, match in (
        ("{rule: median}", "expected {rule: eer}"),
        ("{rule: bonafide_rejection}", "needs exactly `rate`"),
        ("{rule: bonafide_rejection, rate: 1.5}", r"rate must be in \(0, 1\)"),
        ("{rule: eer, rate: 0.1}", "takes no other keys"),
        ("{rule: eer, split: deployment}", "deployment list is bona fide only"),
        (
            "{rule: bonafide_rejection, rate: 0.1, split: eval}",
            r"split must be one of \['calibration', 'deployment'\]",
        ),
    ):
        with pytest.raises(ValueError, match=match):
            load_policy(write(tmp_path, base + text + "\n"))
