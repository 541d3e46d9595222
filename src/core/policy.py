"""The promotion policy file (`registry/policy.yaml`): YAML -> validated dataclasses.

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
  better). ``{superiority: true}`` (margin 0 unless given) asks for more: the candidate is
  better, high(d) < −m (or low(d) > m when higher is better).
* ``channels``: ``<name>: {relative: {...}}``: relative gates on a channel condition of the
  eval list (the same trial pairs through a simulated channel, ``data.eval_channels``).

* ``countermeasure``: the pair gates (:mod:`speakerops.registry.cm_gate`) and the CM's
  ``operating_point`` rule (``{rule: eer}`` or ``{rule: bonafide_rejection, rate: r}``, on the
  calibration split or, ``split: deployment``, on the deployment's bona fide audio): how
  `speakerops spoof evaluate` picks the CM threshold the service refuses spoofs at.

Gated metric names are the figures of :mod:`speakerops.eval.assess`; the checks themselves
live in :mod:`speakerops.registry.checks`. This module is pure (no stage imports): parsing and
the Bayes threshold of an operating point, nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from speakerops.core.jsonio import sha256_bytes

# The policy format's value for an omitted `operating_point` (and for a missing policy file):
# the field's usual P_target 0.01 with unit costs. registry/policy.yaml states it explicitly.
DEFAULT_OPERATING_POINT = {"p_target": 0.01, "c_miss": 1.0, "c_fa": 1.0}
USES = ("value", "high", "low")
# The countermeasure's operating point: the rule that picks its score threshold on the CM
# calibration split (seen attacks, never eval) when `speakerops spoof evaluate` scores it:
# `eer` (bona fide rejection = spoof acceptance there) or `bonafide_rejection` with `rate`
# (the threshold rejecting that fraction of bona fide audio).
CM_RULES = ("eer", "bonafide_rejection")
# where the rule is applied: the CM calibration split (seen attacks) or, with `split:
# deployment`, the eval speakers' own bona fide recordings that no test item uses
# (`cm_deployment.csv`: the deployment's audio, bona fide only)
CM_THRESHOLD_SPLITS = ("calibration", "deployment")
DEFAULT_CM_OPERATING_POINT: dict[str, Any] = {"rule": "eer"}
_KNOWN = {
    "version",
    "operating_point",
    "require_champion",
    "absolute",
    "relative",
    "countermeasure",
    "channels",
}


def check_prior(p_target: float, c_miss: float, c_fa: float) -> None:
    """Refuse an operating point outside 0 < P_target < 1, C_miss > 0, C_fa > 0."""
    if not (0.0 < float(p_target) < 1.0):
        raise ValueError(f"p_target must be in (0, 1), got {p_target!r}")
    if not (float(c_miss) > 0.0 and float(c_fa) > 0.0):
        raise ValueError(f"c_miss and c_fa must be > 0, got c_miss={c_miss!r}, c_fa={c_fa!r}")


def bayes_threshold(p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Bayes decision threshold on LLRs: θ = log(C_fa·(1−P) / (C_miss·P))."""
    check_prior(p_target, c_miss, c_fa)
    p = float(p_target)
    return math.log(c_fa * (1.0 - p) / (c_miss * p))


@dataclass(frozen=True)
class AbsoluteGate:
    metric: str
    op: str  # "max" | "min"
    limit: float
    use: str  # "value" | "high" | "low"

    @property
    def name(self) -> str:
        return f"{self.metric}.{self.op}"


@dataclass(frozen=True)
class RelativeGate:
    metric: str
    margin: float
    higher_is_better: bool
    superiority: bool = False  # better than the champion, not only non-inferior
    channel: str | None = None  # a channel condition's list (`channels:`), None: the eval list

    @property
    def name(self) -> str:
        return f"{self.channel + '.' if self.channel else ''}{self.metric}.vs_champion"


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
    # the speaker model + countermeasure pair (`countermeasure:`; speakerops.registry.cm_gate)
    cm_absolute: list[AbsoluteGate] = field(default_factory=list)
    cm_relative: list[RelativeGate] = field(default_factory=list)
    # how the countermeasure's threshold is chosen (`countermeasure.operating_point`)
    cm_operating_point: dict[str, Any] = field(
        default_factory=lambda: dict(DEFAULT_CM_OPERATING_POINT)
    )
    # relative gates on channel conditions of the eval list (`channels:`), by channel
    channels: dict[str, list[RelativeGate]] = field(default_factory=dict)

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
    check_prior(op["p_target"], op["c_miss"], op["c_fa"])
    return op


def _cm_operating_point(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return dict(DEFAULT_CM_OPERATING_POINT)
    where = f"{where}: countermeasure.operating_point"
    if not isinstance(raw, Mapping) or raw.get("rule") not in CM_RULES:
        raise ValueError(
            f"{where}: expected {{rule: eer}} or {{rule: bonafide_rejection, rate: r}}, got {raw!r}"
        )
    split = raw.get("split", "calibration")
    if split not in CM_THRESHOLD_SPLITS:
        raise ValueError(f"{where}.split must be one of {list(CM_THRESHOLD_SPLITS)}, got {split!r}")
    extra = {"split": split} if "split" in raw else {}
    if raw["rule"] == "eer":
        if set(raw) - {"rule", "split"}:
            raise ValueError(f"{where}: rule eer takes no other keys, got {sorted(raw)}")
        if split == "deployment":
            raise ValueError(
                f"{where}: rule eer needs spoofs, and the deployment list is bona fide only: "
                "use {rule: bonafide_rejection, rate: r, split: deployment}"
            )
        return {"rule": "eer", **extra}
    if set(raw) - {"split"} != {"rule", "rate"}:
        raise ValueError(
            f"{where}: rule bonafide_rejection needs exactly `rate`, got {sorted(raw)}"
        )
    rate = _number(raw["rate"], f"{where}.rate")
    if not 0.0 < rate < 1.0:
        raise ValueError(f"{where}.rate must be in (0, 1), got {rate}")
    return {"rule": "bonafide_rejection", "rate": rate, **extra}


def _absolute(raw: Any, path: Path) -> list[AbsoluteGate]:
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(
            f"{path}: policy needs an `absolute:` mapping of metric -> {{max|min: value}}"
        )
    gates = []
    for metric, bounds in raw.items():
        where = f"{path}: absolute.{metric}"
        if not isinstance(bounds, Mapping) or not bounds:
            raise ValueError(f"{where}: expected {{max: x}} or {{min: x}}, got {bounds!r}")
        use = str(bounds.get("use", "value"))
        if use not in USES:
            raise ValueError(f"{where}: use={use!r}; expected one of {USES}")
        for kind, limit in bounds.items():
            if kind == "use":
                continue
            if kind not in ("max", "min"):
                raise ValueError(f"policy: unknown bound {kind!r} for {metric} (use max or min)")
            gates.append(AbsoluteGate(str(metric), kind, _number(limit, f"{where}.{kind}"), use))
    return gates


def _relative(raw: Any, path: Path, channel: str | None = None) -> list[RelativeGate]:
    raw = raw or {}
    prefix = f"channels.{channel}.relative" if channel else "relative"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: `{prefix}:` must map metric -> {{margin: m}}")
    gates = []
    for metric, spec in raw.items():
        where = f"{path}: {prefix}.{metric}"
        superiority = isinstance(spec, Mapping) and spec.get("superiority", False)
        if not isinstance(superiority, bool):
            raise ValueError(f"{where}.superiority must be true or false, got {superiority!r}")
        if not isinstance(spec, Mapping) or ("margin" not in spec and not superiority):
            raise ValueError(
                f"{where}: expected {{margin: m}} or {{superiority: true}}, got {spec!r}"
            )
        unknown = set(spec) - {"margin", "higher_is_better", "superiority"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        margin = _number(spec.get("margin", 0.0), f"{where}.margin")
        if margin < 0:
            raise ValueError(f"{where}.margin must be >= 0, got {margin}")
        better = bool(spec.get("higher_is_better", False))
        gates.append(RelativeGate(str(metric), margin, better, superiority, channel))
    return gates


def _channels(raw: Any, path: Path) -> dict[str, list[RelativeGate]]:
    raw = raw or {}
    if not isinstance(raw, Mapping) or any(
        not isinstance(v, Mapping) or set(v) != {"relative"} for v in raw.values()
    ):
        raise ValueError(f"{path}: `channels:` maps a channel name -> {{relative: {{...}}}}")
    return {str(name): _relative(spec["relative"], path, str(name)) for name, spec in raw.items()}


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
    unknown = set(raw) - _KNOWN
    if unknown:
        raise ValueError(f"{path}: unknown policy keys {sorted(unknown)}; known: {sorted(_KNOWN)}")
    absolute = _absolute(raw.get("absolute"), path)
    relative = _relative(raw.get("relative"), path)
    cm = raw.get("countermeasure") or {}
    if not isinstance(cm, Mapping) or set(cm) - {"absolute", "relative", "operating_point"}:
        raise ValueError(
            f"{path}: `countermeasure:` holds `absolute:` and `relative:` gates and an "
            "`operating_point:`"
        )
    cm_absolute = _absolute(cm["absolute"], path) if cm.get("absolute") else []
    cm_relative = _relative(cm.get("relative"), path)
    require = raw.get("require_champion", False)
    if not isinstance(require, bool):
        raise ValueError(f"{path}: require_champion must be true or false, got {require!r}")
    return Policy(
        path=str(path),
        sha256=sha256_bytes(text),
        operating_point=_operating_point(raw.get("operating_point"), str(path)),
        require_champion=require,
        absolute=absolute,
        relative=relative,
        raw=dict(raw),
        cm_absolute=cm_absolute,
        cm_relative=cm_relative,
        cm_operating_point=_cm_operating_point(cm.get("operating_point"), str(path)),
        channels=_channels(raw.get("channels"), path),
    )


def operating_point(path: str | Path | None) -> dict[str, float]:
    """The policy's operating point (the default P_target 0.01 when the file is absent)."""
    if path is None or not Path(path).is_file():
        return dict(DEFAULT_OPERATING_POINT)
    return load_policy(path).operating_point


def cm_operating_point(path: str | Path | None) -> dict[str, Any]:
    """The policy's countermeasure operating-point rule (the format's default ``{rule: eer}``
    when the file is absent, as :func:`operating_point`)."""
    if path is None or not Path(path).is_file():
        return dict(DEFAULT_CM_OPERATING_POINT)
    return load_policy(path).cm_operating_point
