"""The registry's stage entry points as the command line and DVC call them.

`run_gate`: the DVC `gate` stage, the promotion of the version `register` just wrote
(`register.out_dir/registered.json`), its verdict in `register.gate_dir/gate.json`.
`run_promote`: a promotion that audits its own failure (an attempt that could not be
evaluated is recorded, then re-raised).
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from speakerops.core.jsonio import dumps
from speakerops.registry.champion import record_error
from speakerops.registry.promote import PromotionResult, promote


def run_gate(cfg: DictConfig) -> PromotionResult:
    """Promote the registered challenger under `register.policy` and write `gate.json`."""
    registered_file = Path(cfg.register.out_dir) / "registered.json"
    if not registered_file.is_file():
        raise FileNotFoundError(f"{registered_file}: nothing registered yet (run `register`)")
    registered = json.loads(registered_file.read_text())
    gate_dir = Path(cfg.register.get("gate_dir") or cfg.register.out_dir)
    result = promote(cfg, registered["model_uri"], out_dir=gate_dir / "promotion", action="gate")
    (gate_dir / "gate.json").write_text(dumps(result.verdict))
    return result


class PromotionFailed(RuntimeError):
    """A promotion that could not be evaluated; the message says why (and whether the
    attempt could be audited)."""


def run_promote(
    cfg: DictConfig, candidate: str, dry_run: bool = False, out_dir: str | Path | None = None
) -> PromotionResult:
    """`promote(...)`; on any failure the attempt is audited (unless a dry run) and
    `PromotionFailed` is raised with the reason."""
    try:
        return promote(cfg, candidate, dry_run=dry_run, out_dir=out_dir)
    except Exception as exc:  # noqa: BLE001 - every failure to evaluate is audited
        message = str(exc)
        if not dry_run:
            try:
                record_error(cfg, candidate, message)
            except Exception as log_exc:  # noqa: BLE001
                message += f" (and the attempt could not be audited: {log_exc})"
        raise PromotionFailed(message) from exc
