"""The gate checks of a promotion: absolute and relative gates of the policy, preconditions,
and the verdict. The policy file itself is parsed by :mod:`speakerops.core.policy`.

Gated metric names are the figures of :mod:`speakerops.eval.assess` (``eer``,
``min_dcf_0.01``, ``act_dcf_0.01``, ``cllr``, ``min_cllr``, ``cal_loss``, ``fmr``, ``fnmr``,
``bias.<column>.worst_ratio``/``garbe``/``fdr`` and ``bias.worst_ratio``/``garbe``/``fdr``
over all columns). Everything fails closed: a metric that is missing or not assessable (NaN)
refuses, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from speakerops.core.policy import Policy, RelativeGate

# --------------------------------------------------------------------------- checks


@dataclass
class Verdict:
    """A gate decision with the reasons for it, one line per check."""

    passed: bool
    checks: list[dict] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [c["reason"] for c in self.checks if not c["passed"]]

    def to_dict(self) -> dict:
        return asdict(self) | {"reasons": self.reasons}


def _figure(figures: Mapping[str, Any], metric: str) -> tuple[float | None, float, float]:
    """(value, low, high) of a figure given as a number or {value, low, high}."""
    f = figures.get(metric)
    if f is None:
        return None, math.nan, math.nan
    if isinstance(f, Mapping):
        v = f.get("value")
        return (
            None if v is None else float(v),
            float(f.get("low", math.nan)),
            float(f.get("high", math.nan)),
        )
    return float(f), math.nan, math.nan


def _interval_text(low: float, high: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return ""
    return f" [{low:.4f}, {high:.4f}]"


def check_absolute(
    figures: Mapping[str, Any],
    policy: Policy,
    details: Mapping[str, str] | None = None,
) -> list[dict]:
    """One check per absolute gate; a missing or NaN metric fails (closed).

    ``figures``: metric -> number or {value, low, high}; ``details``: metric -> a note for
    the reason (e.g. which group is the worst).
    """
    checks = []
    for g in policy.absolute:
        value, low, high = _figure(figures, g.metric)
        decided = {"value": value, "high": high, "low": low}[g.use]
        note = (details or {}).get(g.metric)
        word = "ceiling" if g.op == "max" else "floor"
        if value is None:
            ok = False
            reason = f"{g.metric}: missing from the candidate's metrics (fail closed)"
        elif decided is None or math.isnan(decided):
            ok = False
            reason = f"{g.metric}: not assessable{' (' + note + ')' if note else ''} (fail closed)"
        else:
            ok = decided <= g.limit if g.op == "max" else decided >= g.limit
            sym = ("<=" if ok else ">") if g.op == "max" else (">=" if ok else "<")
            on = "" if g.use == "value" else f" ({g.use} bound {decided:.4f})"
            reason = (
                f"{g.metric} = {value:.4f}{_interval_text(low, high)}{on} {sym} {word} {g.limit:g}"
                + (f"; {note}" if note else "")
            )
        checks.append(
            {
                "gate": g.name,
                "kind": "absolute",
                "metric": g.metric,
                "value": value,
                "low": low,
                "high": high,
                "threshold": g.limit,
                "op": g.op,
                "decided_on": g.use,
                "passed": bool(ok),
                "reason": reason,
            }
        )
    return checks


def check_relative(
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    difference: Mapping[str, Any] | None,
    policy: Policy,
    champion_label: str = "champion",
    gates: list[RelativeGate] | None = None,
) -> list[dict]:
    """One check per relative gate (paired-bootstrap interval of candidate − champion):
    ``gates``, or the policy's relative gates on the eval list.

    With no champion: refused when the policy requires one, otherwise recorded as skipped."""
    checks = []
    for g in policy.relative if gates is None else gates:
        base = {
            "gate": g.name,
            "kind": "relative",
            "metric": g.metric,
            "threshold": g.margin,
            "op": "superior" if g.superiority else "non-inferior",
            "decided_on": "low" if g.higher_is_better else "high",
        }
        if g.channel:
            base["channel"] = g.channel
        label = f"{g.channel}: {g.metric}" if g.channel else g.metric
        cand, _, _ = _figure(candidate, g.metric)
        if champion is None:
            ok = not policy.require_champion
            reason = f"{label}: no champion to compare with " + (
                "and the policy requires one (fail closed)"
                if not ok
                else "(require_champion: false): relative gate skipped"
            )
            checks.append(
                base
                | {"value": None, "low": math.nan, "high": math.nan, "passed": ok}
                | {"reason": reason, "skipped": ok, "candidate": cand, "champion": None}
            )
            continue
        champ, _, _ = _figure(champion, g.metric)
        d, low, high = _figure(difference or {}, g.metric)
        if cand is None or champ is None or d is None:
            who = "candidate" if cand is None else champion_label if champ is None else "pair"
            ok, reason = False, f"{label}: missing for the {who} (fail closed)"
        elif math.isnan(low) or math.isnan(high) or math.isnan(d):
            ok, reason = False, f"{label}: difference not assessable (fail closed)"
        else:
            if g.superiority and g.higher_is_better:
                ok = low > g.margin
                rule = f"low bound {low:+.4f} {'>' if ok else '<='} margin {g.margin:g}"
            elif g.superiority:
                ok = high < -g.margin
                rule = f"high bound {high:+.4f} {'<' if ok else '>='} −margin {0.0 - g.margin:g}"
            elif g.higher_is_better:
                ok = low >= -g.margin
                rule = f"low bound {low:+.4f} {'>=' if ok else '<'} −margin {-g.margin:g}"
            else:
                ok = high <= g.margin
                rule = f"high bound {high:+.4f} {'<=' if ok else '>'} margin {g.margin:g}"
            reason = (
                f"{label}: candidate {cand:.4f} vs {champion_label} {champ:.4f}, "
                f"difference {d:+.4f} [{low:+.4f}, {high:+.4f}]; "
                f"{'superiority' if g.superiority else 'non-inferiority'} {rule}"
            )
        checks.append(
            base
            | {"value": d, "low": low, "high": high, "passed": bool(ok), "reason": reason}
            | {"candidate": cand, "champion": champ}
        )
    return checks


def precondition(
    name: str, ok: bool, reason: str, value: Any = None, threshold: Any = None
) -> dict:
    """A check that is not a metric: trial-list hashes, champion presence, calibration."""
    return {
        "gate": name,
        "kind": "precondition",
        "metric": None,
        "value": value,
        "low": math.nan,
        "high": math.nan,
        "threshold": threshold,
        "op": "equals",
        "decided_on": "value",
        "passed": bool(ok),
        "reason": reason,
    }


def decide(checks: list[dict]) -> Verdict:
    """Pass iff there is at least one check and every check passes."""
    return Verdict(bool(checks) and all(c["passed"] for c in checks), checks)
