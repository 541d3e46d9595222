"""The pair gate: a speaker model + countermeasure candidate against the policy's
`countermeasure:` gates (``registry/policy.yaml``) and, when there is one, the champion pair.

Inputs are `speakerops spoof evaluate` reports (``spoof_eval.json``). Checks, each a row of the
verdict with its value, limit and reason; everything fails closed (a missing figure, reports
scored on different lists):

* absolute gates on the candidate: a metric ``cm.eer_unseen``, ``cm.min_t_dcf``,
  ``pair.<m>`` / ``speaker_alone.<m>`` (m: sasv_eer, sv_eer, spf_eer, min_a_dcf) at the
  interval bound ``use`` selects; ``cm.eer_attack`` is one check per unseen attack
  (``cm.eer_attack[A06].max``), so a refusal names the attack;
* the countermeasure must help: the pair's SASV-EER below the speaker model's alone (the
  reason gives the paired interval of the difference, ``pair_vs_alone``; a policy that wants
  the interval below zero adds the absolute gate ``pair_vs_alone.sasv_eer: {max: 0, use: high}``);
* relative gates against the champion pair (same list hashes), decided on the paired
  speaker-bootstrap interval of d = candidate − champion (the same resampled speakers for both,
  :func:`speakerops.eval.spoof_eval.paired_difference`), like the speaker gates:
  non-inferiority, upper bound of d <= margin (lower bound >= −margin when higher is better),
  per attack for ``cm.eer_attack``. Without the paired difference (two reports alone carry no
  scores) the relative gates fail closed and say what to run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from speakerops.core.policy import AbsoluteGate, Policy, RelativeGate

PER_ATTACK = "cm.eer_attack"


def _figure(report: Mapping[str, Any], metric: str) -> Mapping[str, Any] | None:
    part, _, name = metric.partition(".")
    node = report.get(part, {})
    return node.get(name) if isinstance(node, Mapping) else None


def _figures(report: Mapping[str, Any], metric: str) -> dict[str, Mapping[str, Any] | None]:
    """{check name suffix: interval} of a metric (one per attack for cm.eer_attack)."""
    if metric == PER_ATTACK:
        attacks = report.get("cm", {}).get("eer_per_attack") or {}
        return {f"[{a}]": iv for a, iv in sorted(attacks.items())} or {"": None}
    return {"": _figure(report, metric)}


def _row(name: str, value: float | None, limit: float, passed: bool, reason: str) -> dict:
    return {"check": name, "value": value, "limit": limit, "passed": passed, "reason": reason}


def _absolute(gate: AbsoluteGate, report: Mapping[str, Any]) -> list[dict]:
    rows = []
    for suffix, iv in _figures(report, gate.metric).items():
        name = f"{gate.metric}{suffix}.{gate.op}"
        value = None if iv is None else iv.get(gate.use)
        if value is None or not math.isfinite(float(value)):
            rows.append(_row(name, None, gate.limit, False, f"{gate.metric}{suffix}: not reported"))
            continue
        ok = value <= gate.limit if gate.op == "max" else value >= gate.limit
        rel = "<=" if gate.op == "max" else ">="
        rows.append(_row(name, float(value), gate.limit, bool(ok),
                         f"{gate.metric}{suffix} ({gate.use}) = {value:.4f}, must be {rel} {gate.limit}"))  # fmt: skip
    return rows


def _relative(
    gate: RelativeGate,
    cand: Mapping[str, Any],
    champ: Mapping[str, Any],
    diff: Mapping[str, Any] | None,
) -> list[dict]:
    rows = []
    theirs = _figures(champ, gate.metric)
    paired = _figures(diff, gate.metric) if diff is not None else {}
    for suffix, iv in _figures(cand, gate.metric).items():
        name = f"{gate.metric}{suffix}.vs_champion"
        ref, d = theirs.get(suffix), paired.get(suffix)
        if iv is None or ref is None:
            rows.append(
                _row(name, None, gate.margin, False, f"{gate.metric}{suffix}: missing in a report")
            )
            continue
        if d is None or not all(math.isfinite(float(d.get(k, math.nan))) for k in ("low", "high")):
            rows.append(_row(name, None, gate.margin, False,
                             f"{gate.metric}{suffix}: no paired speaker-bootstrap interval of "
                             "candidate − champion (promote the pair with `speakerops promote`, "
                             "which scores both pairs on the same lists)"))  # fmt: skip
            continue
        bound = -float(d["low"]) if gate.higher_is_better else float(d["high"])
        ok = bound <= gate.margin
        side = "lower" if gate.higher_is_better else "upper"
        rows.append(_row(name, float(d["value"]), gate.margin, bool(ok),
                         f"{gate.metric}{suffix}: candidate {iv['value']:.4f} vs champion "
                         f"{ref['value']:.4f}, paired difference {float(d['value']):+.4f} "
                         f"[{float(d['low']):+.4f}, {float(d['high']):+.4f}], {side} bound "
                         f"must be within margin {gate.margin}"))  # fmt: skip
    return rows


def pair_verdict(
    policy: Policy,
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any] | None = None,
    difference: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The verdict (module doc): ``passed``, ``checks`` and the ``refused`` check names.
    ``difference``: candidate − champion with paired intervals (same keys as a report)."""
    if not policy.cm_absolute:
        raise ValueError(f"{policy.path}: no `countermeasure.absolute` gates to apply")
    rows = [r for g in policy.cm_absolute for r in _absolute(g, candidate)]
    alone, pair = _figure(candidate, "speaker_alone.sasv_eer"), _figure(candidate, "pair.sasv_eer")
    if alone is None or pair is None:
        rows.append(
            _row(
                "pair.helps", None, 0.0, False, "SASV-EER of the pair or the speaker model missing"
            )
        )
    else:
        d = float(pair["value"]) - float(alone["value"])
        iv = _figure(candidate, "pair_vs_alone.sasv_eer")
        paired = "" if iv is None else f", paired difference [{float(iv['low']):+.4f}, {float(iv['high']):+.4f}]"  # fmt: skip
        rows.append(_row("pair.helps", d, 0.0, d < 0,
                         f"SASV-EER pair {pair['value']:.4f} vs speaker model alone {alone['value']:.4f}{paired}"))  # fmt: skip
    if champion is not None:
        if candidate.get("hashes") != champion.get("hashes") or (
            difference is not None and difference.get("hashes") != candidate.get("hashes")
        ):
            rows.append(_row("lists.same", None, 0.0, False,
                             "candidate and champion were evaluated on different spoof lists"))  # fmt: skip
        else:
            rows += [
                r for g in policy.cm_relative for r in _relative(g, candidate, champion, difference)
            ]
    refused = [r["check"] for r in rows if not r["passed"]]
    return {"passed": not refused, "checks": rows, "refused": refused, "policy": policy.summary()}


def report_markdown(verdict: Mapping[str, Any]) -> str:
    """The verdict as a Markdown report (one table row per check)."""
    head = "PASSED" if verdict["passed"] else f"REFUSED ({', '.join(verdict['refused'])})"
    lines = [f"# Pair gate: {head}", "", "| check | passed | reason |", "|---|---|---|"]
    lines += [
        f"| {r['check']} | {'yes' if r['passed'] else '**no**'} | {r['reason']} |"
        for r in verdict["checks"]
    ]
    return "\n".join(lines) + "\n"
