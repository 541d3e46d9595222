"""Composing the Hydra tree for every command, or loading a composed `params.yaml`.

The tree has layers, highest priority first (:func:`conf_layers`):

1. the project's own `conf/` (`$SPEAKEROPS_CONF`, else `./conf`), when present;
2. speakerops' packaged defaults: `speakerops/conf/` inside an installed wheel (Hydra's
   `pkg://speakerops.conf`), the checkout's `conf/` in a source checkout (there 1 and 2 are the
   same folder, so the clone composes exactly one tree).

Hydra searches the layers in order, file by file: a project's `conf/model/ecapa512.yaml`
replaces the packaged one, a new `conf/model/mynet.yaml` adds an option, and every group the
project leaves alone comes from the package. The project's top-level settings go in
`conf/project/default.yaml` (the packaged `config.yaml` pulls it in as
`optional project@_global_: default`, after the groups and before `experiment`); a `conf/config.yaml` of the project's own replaces the
packaged one entirely.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import yaml
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import DictConfig, OmegaConf

from speakerops.core.schema import ConfigError, one_line, validate

PACKAGED_CONF_MODULE = "speakerops.conf"  # pkg://speakerops.conf inside an installed wheel
POLICY_FILE = Path("registry") / "policy.yaml"  # the default promotion policy, per project
_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def packaged_conf_dir() -> Path:
    """speakerops' default config tree: `speakerops/conf/` in an installed wheel (pyproject's
    package-data), else the source checkout's `conf/`."""
    for candidate in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"speakerops' packaged config is missing: no conf/config.yaml in {_PACKAGE_DIR} or "
        f"beside it (a broken install: reinstall the wheel)"
    )


def packaged_policy() -> Path:
    """The default promotion policy that ships with speakerops (`speakerops init` copies it to
    the project's `registry/policy.yaml`): `speakerops/conf/registry/policy.yaml` in a wheel,
    the checkout's `registry/policy.yaml` in a source checkout."""
    conf = packaged_conf_dir()
    for candidate in (conf / POLICY_FILE, conf.parent / POLICY_FILE):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"speakerops' packaged policy is missing beside {conf}")


def project_conf_dir() -> Path:
    """Where the project's own config lives (it may not exist yet): `$SPEAKEROPS_CONF`, else
    `./conf`. Files a command writes into the tree (sweep presets) go here."""
    return Path(os.environ.get("SPEAKEROPS_CONF") or "conf").absolute()


def conf_layers() -> list[Path]:
    """The config tree's folders, highest priority first: the project's (when it exists and is
    not the packaged tree itself), then the packaged defaults."""
    packaged = packaged_conf_dir()
    project = project_conf_dir()
    if os.environ.get("SPEAKEROPS_CONF") and not project.is_dir():
        raise FileNotFoundError(f"SPEAKEROPS_CONF={project}: no such folder")
    if project.is_dir() and project.resolve() != packaged.resolve():
        return [project, packaged]
    return [packaged]


def conf_dir() -> Path:
    """The top layer of the tree: the project's `conf/` when present, else the packaged one."""
    return conf_layers()[0]


def find_conf_file(relative: str | Path) -> Path:
    """The file Hydra would use for `relative` (e.g. `drift/default.yaml`): the first layer
    that has it."""
    layers = conf_layers()
    for layer in layers:
        if (layer / relative).is_file():
            return layer / relative
    raise FileNotFoundError(f"{relative}: in none of the config layers {[str(p) for p in layers]}")


def conf_groups() -> set[str]:
    """Every config group (a folder of the tree) over all layers."""
    return {p.name for layer in conf_layers() for p in layer.iterdir() if p.is_dir()}


def conf_options(group: str) -> list[str]:
    """The options of a config group over all layers (`model` -> ecapa512, ...)."""
    return sorted({p.stem for layer in conf_layers() for p in (layer / group).glob("*.yaml")})


def _uri(layer: Path) -> str:
    """Hydra's name for a layer: `pkg://speakerops.conf` for the tree inside an installed wheel."""
    inside_wheel = layer.resolve() == (_PACKAGE_DIR / "conf").resolve()
    return f"pkg://{PACKAGED_CONF_MODULE}" if inside_wheel else f"file://{layer}"


class PackagedDefaults(SearchPathPlugin):
    """Hydra search-path plugin: the layers below the primary config folder (the project's
    `conf/`), i.e. speakerops' packaged defaults. Hydra looks up the primary config itself in
    the whole search path, so a project without a `conf/config.yaml` gets the packaged one."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for layer in conf_layers()[1:]:
            search_path.append("speakerops", _uri(layer))


@functools.cache
def _register_search_path() -> None:
    Plugins.instance().register(PackagedDefaults)


def compose(
    overrides: list[str] | None = None, config_file: str | Path | None = None
) -> DictConfig:
    """The composed configuration.

    With `config_file` (a composed `params.yaml`, as DVC stages use) the file is loaded and the
    overrides (`a.b=c` dotlist) are merged on top; otherwise Hydra composes the layered tree
    (:func:`conf_layers`) with the overrides (groups, `+key=value`, `~key` all work).
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
    layers = conf_layers()
    _register_search_path()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(layers[0]), version_base="1.3"):
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
