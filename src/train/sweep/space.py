"""The search space of a sweep: the `sweep` node checked, the trial's values and overrides, and
the configured Optuna sampler and pruner.

`sweep.params` maps a config key to a distribution (`float`/`int`: low, high, log, step;
`categorical`: choices); a key naming a config group (e.g. `augment`) searches its options.
`sweep.sampler.type` / `sweep.pruner.type` pick the Optuna class, `sweep.sampler.<type>` /
`sweep.pruner.<type>` hold its keyword arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from speakerops.core.config import conf_options
from speakerops.core.schema import RULES
from speakerops.train.sweep.callbacks import metric_callbacks

SAMPLERS = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "gp": "GPSampler",
    "cmaes": "CmaEsSampler",
    "qmc": "QMCSampler",
}
PRUNERS = {
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "threshold": "ThresholdPruner",
    "none": "NopPruner",
}


def sweep_config(cfg: DictConfig) -> DictConfig:
    """The `sweep` node, checked; a clear error when no hparams_search was selected."""
    node = cfg.get("sweep")
    if node is None:
        options = conf_options("hparams_search")
        raise ValueError(
            "no sweep settings: pass hparams_search=<name> (conf/hparams_search/: "
            f"{', '.join(options) or 'none'})"
        )
    for key in ("study_name", "metric", "direction", "n_trials", "params"):
        if node.get(key) is None:
            raise ValueError(f"sweep.{key} is missing in the hparams_search config")
    metric_callbacks(str(node.metric))  # a malformed val_min_dcf_<p> fails here, not in a trial
    if node.direction not in ("minimize", "maximize"):
        raise ValueError(f"sweep.direction must be minimize or maximize, got {node.direction!r}")
    if int(node.n_trials) < 1 or int(node.get("n_jobs") or 1) < 1:
        raise ValueError("sweep.n_trials and sweep.n_jobs must be >= 1")
    devices = cfg.trainer.get("devices", 1)
    n_devices = len(devices) if OmegaConf.is_list(devices) else devices  # [0] is one device
    if str(n_devices) != "1" or int(cfg.trainer.get("num_nodes") or 1) != 1:
        raise ValueError(
            "sweep trials train in one process each (trainer.devices=1): run trials in parallel "
            "with sweep.n_jobs instead of DDP"
        )
    if not node.params:
        raise ValueError("sweep.params is empty: nothing to search")
    for name, spec in node.params.items():
        kind = spec.get("type")
        if kind not in ("float", "int", "categorical"):
            raise ValueError(
                f"sweep.params.{name}.type must be float, int or categorical, got {kind!r}"
            )
        if kind == "categorical" and not spec.get("choices"):
            raise ValueError(f"sweep.params.{name}: a categorical needs choices")
        if kind != "categorical" and (spec.get("low") is None or spec.get("high") is None):
            raise ValueError(f"sweep.params.{name}: a {kind} needs low and high")
        check_against_schema(str(name), spec)
    return node


def check_against_schema(name: str, spec: DictConfig) -> None:
    """A searched value must be one its key allows (`speakerops.core.schema`): refused before
    the study starts, not trial by trial."""
    rule = RULES.get(name)
    if rule is None:
        return
    if spec.type == "categorical":
        values = {f"choices[{i}]": v for i, v in enumerate(spec.choices)}
    else:
        values = {"low": spec.low, "high": spec.high}
    for where, value in values.items():
        if spec.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not rule.accepts(value):
            raise ValueError(
                f"sweep.params.{name}.{where}={value!r}: {name} expects {rule.describe()}"
            )


def make_sampler(sweep: DictConfig, worker: int = 0) -> optuna.samplers.BaseSampler:
    """`sweep.sampler.type` (tpe | random | gp | cmaes | qmc) with `sweep.sampler.<type>` kwargs;
    seed = sweep.sampler.seed + worker, so parallel workers do not draw the same points."""
    node = sweep.get("sampler") or {}
    kind = node.get("type", "tpe")
    if kind not in SAMPLERS:
        raise ValueError(f"sweep.sampler.type {kind!r} is not one of {sorted(SAMPLERS)}")
    kwargs = OmegaConf.to_container(node.get(kind) or OmegaConf.create({}), resolve=True)
    seed = node.get("seed")
    return getattr(optuna.samplers, SAMPLERS[kind])(
        seed=None if seed is None else int(seed) + worker, **kwargs
    )


def make_pruner(sweep: DictConfig) -> optuna.pruners.BasePruner:
    """`sweep.pruner.type` (median | percentile | successive_halving | hyperband | threshold |
    none) with `sweep.pruner.<type>` kwargs."""
    node = sweep.get("pruner") or {}
    kind = node.get("type", "median")
    if kind not in PRUNERS:
        raise ValueError(f"sweep.pruner.type {kind!r} is not one of {sorted(PRUNERS)}")
    kwargs = OmegaConf.to_container(node.get(kind) or OmegaConf.create({}), resolve=True)
    return getattr(optuna.pruners, PRUNERS[kind])(**kwargs)


def suggest(trial: optuna.Trial, params: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's values for the search space `{key: {type, low, high, log, step, choices}}`."""
    values: dict[str, Any] = {}
    for name, spec in params.items():
        kind = spec["type"]
        if kind == "categorical":
            values[name] = trial.suggest_categorical(name, list(spec["choices"]))
        elif kind == "int":
            values[name] = trial.suggest_int(
                name,
                int(spec["low"]),
                int(spec["high"]),
                step=int(spec.get("step") or 1),
                log=bool(spec.get("log", False)),
            )
        else:
            step = spec.get("step")
            values[name] = trial.suggest_float(
                name,
                float(spec["low"]),
                float(spec["high"]),
                step=None if step is None else float(step),
                log=bool(spec.get("log", False)),
            )
    return values


def as_overrides(values: Mapping[str, Any]) -> list[str]:
    """`{"optim.lr": 0.003}` -> `["optim.lr=0.003"]` (repr keeps floats exact)."""
    return [f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()]
