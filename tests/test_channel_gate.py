"""The two-list gate: relative gates on a channel condition of the eval list (`channels:` in the
policy), with superiority ("better on telephone") beside the eval list's non-inferiority ("no
worse on wideband"); pure functions, no store: fast."""

from __future__ import annotations

from pathlib import Path

import pytest

from speakerops.core.policy import load_policy
from speakerops.registry.verdict import promotion_verdict

REPO = Path(__file__).resolve().parents[1]
POLICY = (
    "absolute:\n  eer: {max: 0.10}\n"
    "relative:\n  eer: {margin: 0.01}\n"
    "channels:\n  telephone:\n    relative:\n      eer: {superiority: true}\n"
)


def _policy(tmp_path: Path, text: str = POLICY):
    p = tmp_path / "policy.yaml"
    p.write_text(text)
    return load_policy(p)


def _tel(cand: float, champ: float, low: float, high: float) -> dict:
    d = {"value": cand - champ, "low": low, "high": high}
    return {"telephone": {"candidate": {"eer": cand}, "champion": {"eer": champ},
                          "difference": {"eer": d}}}  # fmt: skip


WIDE = ({"eer": 0.02}, {}, {"eer": 0.02}, {"eer": {"value": 0.0, "low": -0.004, "high": 0.005}})


def test_the_committed_policy_gates_the_telephone_list_on_superiority() -> None:
    pol = load_policy(REPO / "registry" / "policy.yaml")
    (gate,) = pol.channels["telephone"]
    assert (gate.name, gate.superiority, gate.margin) == ("telephone.eer.vs_champion", True, 0.0)


def test_better_on_telephone_and_no_worse_on_wideband_passes_only_both(tmp_path: Path) -> None:
    pol = _policy(tmp_path)
    better = promotion_verdict(pol, [], *WIDE, "champion v1", _tel(0.05, 0.08, -0.05, -0.01))
    assert better.passed, better.reasons
    tel = [c for c in better.checks if c.get("channel") == "telephone"]
    assert [c["op"] for c in tel] == ["superior"] and "superiority high bound -0.0100 <" in tel[0][
        "reason"
    ]
    # better on the point estimate but the interval reaches 0: not shown better -> refused
    unsure = promotion_verdict(pol, [], *WIDE, "champion v1", _tel(0.05, 0.08, -0.05, 0.002))
    assert not unsure.passed
    assert unsure.reasons == [
        "telephone: eer: candidate 0.0500 vs champion v1 0.0800, difference -0.0300 "
        "[-0.0500, +0.0020]; superiority high bound +0.0020 >= −margin 0"
    ]
    # better on telephone, worse on wideband beyond the margin -> refused on the eval list
    worse = (*WIDE[:3], {"eer": {"value": 0.01, "low": 0.004, "high": 0.02}})
    wide_fail = promotion_verdict(pol, [], *worse, "champion v1", _tel(0.05, 0.08, -0.05, -0.01))
    assert [c["gate"] for c in wide_fail.checks if not c["passed"]] == ["eer.vs_champion"]


def test_a_channel_the_config_does_not_prepare_is_a_skipped_check(tmp_path: Path) -> None:
    v = promotion_verdict(_policy(tmp_path), [], *WIDE, "champion v1", None)
    (skipped,) = [c for c in v.checks if c.get("channel") == "telephone"]
    assert v.passed and skipped["skipped"] and "data.eval_channels" in skipped["reason"]
    # no champion yet: skipped like the eval list's relative gates
    first = promotion_verdict(_policy(tmp_path), [], {"eer": 0.02}, {}, None, None, "champion",
                              {"telephone": {"candidate": {}, "champion": None}})  # fmt: skip
    assert first.passed and all(c.get("skipped") for c in first.checks if c["kind"] == "relative")


@pytest.mark.parametrize(
    ("channels", "message"),
    [
        ("channels:\n  telephone: {eer: {margin: 0}}\n", r"`channels:` maps a channel name"),
        (
            "channels:\n  telephone:\n    relative:\n      eer: {superiority: yes please}\n",
            r"channels.telephone.relative.eer.superiority must be true or false",
        ),
        (
            "channels:\n  telephone:\n    relative:\n      eer: {}\n",
            r"channels.telephone.relative.eer: expected \{margin: m\} or \{superiority: true\}",
        ),
    ],
)
def test_bad_channel_gates_are_refused_naming_the_key(
    tmp_path: Path, channels: str, message: str
) -> None:
    text = "absolute:\n  eer: {max: 0.10}\n" + channels
    with pytest.raises(ValueError, match=message):
        _policy(tmp_path, text)
