"""Composing the Hydra tree (`conf/`) for every command, or loading a composed `params.yaml`."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from speakerops.core.schema import ConfigError, one_line, validate


def conf_dir() -> Path:
    """`$SPEAKEROPS_CONF`, else `./conf`, else the `conf/` beside this package's source tree."""
    for candidate in (
        os.environ.get("SPEAKEROPS_CONF"),
        "conf",
        Path(__file__).resolve().parents[2] / "conf",
    ):
        if candidate and (Path(candidate) / "config.yaml").is_file():
            return Path(candidate).resolve()
    raise FileNotFoundError(
        "no conf/config.yaml found: run from the project root or set SPEAKEROPS_CONF"
    )


def compose(
    overrides: list[str] | None = None, config_file: str | Path | None = None
) -> DictConfig:
    """The composed configuration.

    With `config_file` (a composed `params.yaml`, as DVC stages use) the file is loaded and the
    overrides (`a.b=c` dotlist) are merged on top; otherwise Hydra composes `conf/config.yaml`
    with the overrides (groups, `+key=value`, `~key` all work).
    """
    overrides = list(overrides or [])
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: composed config not found (run `speakerops params`)")
        cfg = OmegaConf.load(path)
        if overrides:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
        return validate(cfg)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        try:
            cfg = hydra_compose(config_name="config", overrides=overrides)
        except (HydraException, yaml.YAMLError) as exc:  # a bad override, option or file
            raise ConfigError(one_line(exc)) from None
    return validate(cfg)


def write_params(cfg: DictConfig, path: str | Path = "params.yaml") -> Path:
    """Write the composed config as DVC's `params.yaml`, resolved, as DVC's Hydra composition does."""
    path = Path(path)
    cfg = cfg.copy()
    # `runtime.*` says where a job runs, not what it computes: kept as its interpolation, so
    # each machine (and each DVC stage) resolves its own thread count.
    runtime = OmegaConf.to_container(cfg.runtime, resolve=False) if "runtime" in cfg else None
    OmegaConf.resolve(cfg)
    if runtime is not None:
        cfg.runtime = runtime
    header = (
        "# Composed from conf/ by `speakerops params` (or `dvc exp run`): do not edit by hand.\n"
    )
    path.write_text(header + OmegaConf.to_yaml(cfg))
    return path


def flatten(cfg: DictConfig) -> dict[str, str]:
    """Dotted-key view of a resolved config, for logging as MLflow params."""
    out: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out
