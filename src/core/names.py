"""Names shared across stages: registry aliases and metric keys.

The registered model's name is configuration (`register.model_name`), not a constant here.
"""

from __future__ import annotations

from collections.abc import Iterable

CHAMPION = "champion"  # the alias serving and drift read; moved only by a passed gate
CHALLENGER = "challenger"  # the alias `register` puts on each new version


def p_key(p_target: float) -> str:
    """How a P_target is spelled inside a metric key: 0.01 -> `0.01`."""
    return f"{float(p_target):g}"


def min_dcf_key(p_target: float) -> str:
    return f"min_dcf_{p_key(p_target)}"


def act_dcf_key(p_target: float) -> str:
    return f"act_dcf_{p_key(p_target)}"


def metric_keys(p_targets: Iterable[float], calibrated: bool = True) -> list[str]:
    """The headline figure keys for `evaluate.p_targets`: `eer`, `min_dcf_<P>`... and, with
    calibrated LLRs, `act_dcf_<P>`..., `cllr`, `min_cllr`, `cal_loss`."""
    ps = list(p_targets)
    keys = ["eer", *(min_dcf_key(p) for p in ps)]
    if calibrated:
        keys += [*(act_dcf_key(p) for p in ps), "cllr", "min_cllr", "cal_loss"]
    return keys
