"""The promotion gate: `registry/policy.yaml` decides whether a version becomes `champion`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml


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


def load_policy(path: str | Path) -> dict:
    """Read the policy YAML; a missing or malformed policy is an error (fail closed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: promotion policy not found")
    policy = yaml.safe_load(path.read_text()) or {}
    if not isinstance(policy.get("absolute"), dict) or not policy["absolute"]:
        raise ValueError(
            f"{path}: policy needs an `absolute:` mapping of metric -> {{max|min: value}}"
        )
    return policy


def check_absolute(metrics: dict, policy: dict) -> Verdict:
    """Each absolute gate `metric: {max: x}` / `{min: x}`; a missing metric fails (closed)."""
    checks = []
    for metric, bounds in policy["absolute"].items():
        value = metrics.get(metric)
        for kind, limit in bounds.items():
            if value is None:
                ok, reason = False, f"{metric}: missing from the candidate's metrics (fail closed)"
            elif kind == "max":
                ok = float(value) <= float(limit)
                reason = f"{metric} = {float(value):.4f} {'<=' if ok else '>'} ceiling {limit}"
            elif kind == "min":
                ok = float(value) >= float(limit)
                reason = f"{metric} = {float(value):.4f} {'>=' if ok else '<'} floor {limit}"
            else:
                raise ValueError(f"policy: unknown bound {kind!r} for {metric} (use max or min)")
            checks.append(
                {
                    "gate": f"{metric}.{kind}",
                    "value": value,
                    "threshold": limit,
                    "passed": ok,
                    "reason": reason,
                }
            )
    return Verdict(all(c["passed"] for c in checks), checks)


def gate_version(
    model_name: str,
    version: str,
    metrics: dict,
    policy_path: str | Path,
    out_dir: str | Path | None = None,
) -> Verdict:
    """Apply the policy to a registered version; on pass move alias `champion` to it."""
    from mlflow.tracking import MlflowClient

    from speakerops.registry.register import CHAMPION

    verdict = check_absolute(metrics, load_policy(policy_path))
    client = MlflowClient()
    client.set_model_version_tag(
        model_name, version, "gate", "passed" if verdict.passed else "refused"
    )
    client.set_model_version_tag(
        model_name, version, "gate_reasons", "; ".join(c["reason"] for c in verdict.checks)[:5000]
    )
    if verdict.passed:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "gate.json").write_text(
            json.dumps(
                {"model_name": model_name, "version": version, **verdict.to_dict()},
                indent=2,
                default=str,
            )
        )
    return verdict
