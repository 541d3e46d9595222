"""The promotion decision as a pure function: preconditions, the policy's gates on the
candidate's (and champion's) figures, and the verdict. No MLflow, no files: the same inputs
give the same verdict. Acting on it is :mod:`speakerops.registry.champion`; computing the
figures is :func:`speakerops.registry.promote.promote` (through :mod:`speakerops.eval`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from speakerops.core.policy import Policy
from speakerops.registry.checks import Verdict, check_absolute, check_relative, decide, precondition


def preconditions(
    policy: Policy, candidate: Mapping[str, Any], champion: Mapping[str, Any] | None, pinned: str
) -> list[dict]:
    """Checks decided before any scoring: the candidate (and champion) were evaluated on the
    pinned trial list (``trials_sha256``), and a champion exists where the policy requires one.
    ``candidate``/``champion``: ``{"version", "trials_sha256", ...}`` of each version."""
    checks = []
    tag = candidate.get("trials_sha256")
    if tag is None:
        checks.append(
            precondition(
                "trials.candidate",
                False,
                f"candidate v{candidate['version']} has no trials_sha256 tag: cannot tell which trial "
                "list it was evaluated on (fail closed)",
                None,
                pinned,
            )
        )
    else:
        ok = tag == pinned
        checks.append(
            precondition(
                "trials.candidate",
                ok,
                f"candidate v{candidate['version']} was evaluated on trial list {tag[:12]}…"
                + (
                    " = the pinned list" if ok else f", not the pinned {pinned[:12]}… (fail closed)"
                ),
                tag,
                pinned,
            )
        )
    if champion is None:
        ok = not policy.require_champion
        checks.append(
            precondition(
                "champion.present",
                ok,
                "no champion yet: "
                + (
                    "first promotion allowed (require_champion: false); relative gates skipped"
                    if ok
                    else "the policy requires one (require_champion: true) (fail closed)"
                ),
                None,
                "required" if policy.require_champion else "optional",
            )
        )
    else:
        ctag = champion.get("trials_sha256")
        ok = ctag == pinned
        checks.append(
            precondition(
                "trials.champion",
                ok,
                f"champion v{champion['version']} "
                + (
                    "has no trials_sha256 tag (fail closed)"
                    if ctag is None
                    else f"was evaluated on trial list {ctag[:12]}…"
                    + (
                        " = the pinned list"
                        if ok
                        else f", not the pinned {pinned[:12]}…: candidate and champion are not "
                        "comparable (fail closed)"
                    )
                ),
                ctag,
                pinned,
            )
        )
    return checks


def calibration_precondition(
    version: str, calibration: Mapping[str, Any] | None, has_llrs: bool
) -> dict:
    """The candidate ships a calibration (scores -> LLRs), so its shipped threshold exists."""
    return precondition(
        "calibration.candidate",
        has_llrs,
        f"candidate v{version} "
        + (
            f"ships a {calibration.get('kind')} calibration (scores -> LLRs)"
            if has_llrs
            else "ships no calibration: no LLRs, no shipped threshold (fail closed)"
        ),
        (calibration or {}).get("kind"),
        "present",
    )


def promotion_verdict(
    policy: Policy,
    checks: list[dict],
    candidate_figures: Mapping[str, Any] | None = None,
    candidate_details: Mapping[str, str] | None = None,
    champion_figures: Mapping[str, Any] | None = None,
    difference: Mapping[str, Any] | None = None,
    champion_label: str = "champion",
    channels: Mapping[str, Mapping[str, Any]] | None = None,
) -> Verdict:
    """The verdict: ``checks`` (the preconditions) followed, when the candidate was assessed
    (``candidate_figures`` given), by the policy's absolute and relative gates and its channel
    gates (``channels``: the figures of :func:`speakerops.registry.channels.assess_channels`)."""
    checks = list(checks)
    if candidate_figures is not None:
        checks += check_absolute(candidate_figures, policy, candidate_details)
        checks += check_relative(
            candidate_figures, champion_figures, difference, policy, champion_label
        )
        checks += channel_checks(policy, channels or {}, champion_label)
    return decide(checks)


def channel_checks(
    policy: Policy, channels: Mapping[str, Mapping[str, Any]], champion_label: str = "champion"
) -> list[dict]:
    """The policy's relative gates on each channel condition (``channels:``); a channel that
    was not assessed (the config does not prepare it, ``data.eval_channels``) is a skipped
    check that says so."""
    checks = []
    for name, gates in policy.channels.items():
        got = channels.get(name)
        if got is None:
            for g in gates:
                checks.append(
                    {
                        "gate": g.name,
                        "kind": "relative",
                        "channel": name,
                        "metric": g.metric,
                        "threshold": g.margin,
                        "op": "superior" if g.superiority else "non-inferior",
                        "decided_on": "low" if g.higher_is_better else "high",
                        "value": None,
                        "low": math.nan,
                        "high": math.nan,
                        "passed": True,
                        "skipped": True,
                        "candidate": None,
                        "champion": None,
                        "reason": f"{name}: {g.metric}: the config prepares no {name} list "
                        "(data.eval_channels): channel gate skipped",
                    }
                )
            continue
        checks += check_relative(
            got["candidate"], got.get("champion"), got.get("difference"), policy,
            champion_label, gates,
        )  # fmt: skip
    return checks


def outcome(
    verdict: Verdict, version: str, champion_version: str | None, dry_run: bool
) -> dict[str, Any]:
    """The verdict's fields of `verdict.json`: checks, pass/fail, reasons, the champion after."""
    return {
        "checks": verdict.checks,
        "passed": verdict.passed,
        "verdict": "pass" if verdict.passed else "fail",
        "reasons": verdict.reasons,
        "version": version,  # `speakerops gate` compatibility
        "champion_after": version if (verdict.passed and not dry_run) else champion_version,
        "dry_run": bool(dry_run),
    }
