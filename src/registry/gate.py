"""The promotion policy (`registry/policy.yaml`) and the gates it defines.

A policy has (see the file itself for a commented example):

* ``operating_point``: ``{p_target, c_miss, c_fa}``. The product ships the Bayes decision on
  calibrated LLRs, accept iff llr >= θ with θ = log(C_fa·(1−P) / (C_miss·P)); FMR, FNMR and
  the per-group figures are measured at this one θ.
* ``require_champion``: when true a promotion with no current ``champion`` is refused; when
  false (bootstrapping a new registry) the first promotion skips the relative gates and says so.
* ``absolute``: ``metric: {max: x}`` or ``{min: x}``, optionally ``use: value | high | low``
  (decide on the point estimate, the default, or on a bound of its bootstrap interval).
* ``relative``: ``metric: {margin: m}`` (optionally ``higher_is_better: true``): candidate vs
  champion on the same trial list, decided on the paired speaker-bootstrap interval of
  d = candidate − champion: non-inferior iff high(d) <= m (or low(d) >= −m when higher is
  better).

Gated metric names are the figures of :mod:`speakerops.eval.evaluate` (``eer``,
``min_dcf_0.01``, ``act_dcf_0.01``, ``cllr``, ``min_cllr``, ``cal_loss``, ``fmr``, ``fnmr``,
``bias.<column>.worst_ratio``/``garbe``/``fdr`` and ``bias.worst_ratio``/``garbe``/``fdr``
over all columns). Everything fails closed: a metric that is missing or not assessable (NaN)
refuses, with the reason.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from speakerops.eval.metrics import bayes_threshold

DEFAULT_OPERATING_POINT = {"p_target": 0.01, "c_miss": 1.0, "c_fa": 1.0}
_USE = ("value", "high", "low")


@dataclass(frozen=True)
class AbsoluteGate:
    metric: str
    op: str  # "max" | "min"
    limit: float
    use: str = "value"

    @property
    def name(self) -> str:
        return f"{self.metric}.{self.op}"


@dataclass(frozen=True)
class RelativeGate:
    metric: str
    margin: float
    higher_is_better: bool = False

    @property
    def name(self) -> str:
        return f"{self.metric}.vs_champion"


@dataclass
class Policy:
    """A parsed, validated policy file."""

    path: str
    sha256: str
    operating_point: dict[str, float]
    require_champion: bool
    absolute: list[AbsoluteGate]
    relative: list[RelativeGate]
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def threshold(self) -> float:
        """The shipped LLR threshold θ at the operating point."""
        op = self.operating_point
        return bayes_threshold(op["p_target"], op["c_miss"], op["c_fa"])

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "operating_point": dict(self.operating_point),
            "llr_threshold": self.threshold,
            "require_champion": self.require_champion,
        }


def _number(value: Any, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: expected a number, got {value!r}") from exc
    if not math.isfinite(out):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    return out


def _operating_point(raw: Any, where: str) -> dict[str, float]:
    if raw is None:
        return dict(DEFAULT_OPERATING_POINT)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: `operating_point` must be a mapping {{p_target, c_miss, c_fa}}")
    unknown = set(raw) - set(DEFAULT_OPERATING_POINT)
    if unknown:
        raise ValueError(f"{where}: operating_point has unknown keys {sorted(unknown)}")
    op = {
        k: _number(raw.get(k, v), f"{where}: operating_point.{k}")
        for k, v in DEFAULT_OPERATING_POINT.items()
    }
    bayes_threshold(op["p_target"], op["c_miss"], op["c_fa"])  # validates the values
    return op


def load_policy(path: str | Path) -> Policy:
    """Read and validate the policy YAML; a missing or malformed policy is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: promotion policy not found")
    text = path.read_bytes()
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: a policy is a mapping with `absolute:` (and `relative:`)")
    known = {"version", "operating_point", "require_champion", "absolute", "relative"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{path}: unknown policy keys {sorted(unknown)}; known: {sorted(known)}")
    if not isinstance(raw.get("absolute"), Mapping) or not raw["absolute"]:
        raise ValueError(
            f"{path}: policy needs an `absolute:` mapping of metric -> {{max|min: value}}"
        )
    absolute = []
    for metric, bounds in raw["absolute"].items():
        where = f"{path}: absolute.{metric}"
        if not isinstance(bounds, Mapping) or not bounds:
            raise ValueError(f"{where}: expected {{max: x}} or {{min: x}}, got {bounds!r}")
        use = str(bounds.get("use", "value"))
        if use not in _USE:
            raise ValueError(f"{where}: use={use!r}; expected one of {_USE}")
        for kind, limit in bounds.items():
            if kind == "use":
                continue
            if kind not in ("max", "min"):
                raise ValueError(f"policy: unknown bound {kind!r} for {metric} (use max or min)")
            absolute.append(AbsoluteGate(str(metric), kind, _number(limit, f"{where}.{kind}"), use))
    relative = []
    rel_raw = raw.get("relative") or {}
    if not isinstance(rel_raw, Mapping):
        raise ValueError(f"{path}: `relative:` must map metric -> {{margin: m}}")
    for metric, spec in rel_raw.items():
        where = f"{path}: relative.{metric}"
        if not isinstance(spec, Mapping) or "margin" not in spec:
            raise ValueError(f"{where}: expected {{margin: m}}, got {spec!r}")
        unknown = set(spec) - {"margin", "higher_is_better"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        margin = _number(spec["margin"], f"{where}.margin")
        if margin < 0:
            raise ValueError(f"{where}.margin must be >= 0, got {margin}")
        relative.append(
            RelativeGate(str(metric), margin, bool(spec.get("higher_is_better", False)))
        )
    require = raw.get("require_champion", False)
    if not isinstance(require, bool):
        raise ValueError(f"{path}: require_champion must be true or false, got {require!r}")
    return Policy(
        path=str(path),
        sha256=hashlib.sha256(text).hexdigest(),
        operating_point=_operating_point(raw.get("operating_point"), str(path)),
        require_champion=require,
        absolute=absolute,
        relative=relative,
        raw=dict(raw),
    )


def operating_point(path: str | Path | None) -> dict[str, float]:
    """The policy's operating point (the default P_target 0.01 when the file is absent)."""
    if path is None or not Path(path).is_file():
        return dict(DEFAULT_OPERATING_POINT)
    return load_policy(path).operating_point


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


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.4f}"


def _interval_text(low: float, high: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return ""
    return f" [{low:.4f}, {high:.4f}]"


def check_absolute(
    figures: Mapping[str, Any],
    policy: Policy | Mapping,
    details: Mapping[str, str] | None = None,
) -> list[dict]:
    """One check per absolute gate; a missing or NaN metric fails (closed).

    ``figures``: metric -> number or {value, low, high}; ``details``: metric -> a note for
    the reason (e.g. which group is the worst).
    """
    gates = policy.absolute if isinstance(policy, Policy) else _legacy_gates(policy)
    checks = []
    for g in gates:
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
) -> list[dict]:
    """One check per relative gate (paired-bootstrap interval of candidate − champion).

    With no champion: refused when the policy requires one, otherwise recorded as skipped."""
    checks = []
    for g in policy.relative:
        base = {
            "gate": g.name,
            "kind": "relative",
            "metric": g.metric,
            "threshold": g.margin,
            "op": "non-inferior",
            "decided_on": "low" if g.higher_is_better else "high",
        }
        cand, _, _ = _figure(candidate, g.metric)
        if champion is None:
            ok = not policy.require_champion
            reason = f"{g.metric}: no champion to compare with " + (
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
            ok, reason = False, f"{g.metric}: missing for the {who} (fail closed)"
        elif math.isnan(low) or math.isnan(high) or math.isnan(d):
            ok, reason = False, f"{g.metric}: difference not assessable (fail closed)"
        else:
            if g.higher_is_better:
                ok = low >= -g.margin
                rule = f"low bound {low:+.4f} {'>=' if ok else '<'} −margin {-g.margin:g}"
            else:
                ok = high <= g.margin
                rule = f"high bound {high:+.4f} {'<=' if ok else '>'} margin {g.margin:g}"
            reason = (
                f"{g.metric}: candidate {cand:.4f} vs {champion_label} {champ:.4f}, "
                f"difference {d:+.4f} [{low:+.4f}, {high:+.4f}]; non-inferiority {rule}"
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


def _legacy_gates(policy: Mapping) -> list[AbsoluteGate]:
    """Absolute gates of a policy given as a plain dict (``{"absolute": {...}}``)."""
    out = []
    for metric, bounds in (policy.get("absolute") or {}).items():
        use = str(bounds.get("use", "value"))
        for kind, limit in bounds.items():
            if kind == "use":
                continue
            if kind not in ("max", "min"):
                raise ValueError(f"policy: unknown bound {kind!r} for {metric} (use max or min)")
            out.append(AbsoluteGate(str(metric), kind, float(limit), use))
    return out


def dumps(obj: Any) -> str:
    """Deterministic JSON (sorted keys; NaN written as null)."""
    return json.dumps(_clean(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else obj
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _clean(obj.item())
    return obj
