"""The best trial as an experiment preset, written into the generated (git-ignored) part of the
Hydra tree: `conf/experiment/generated/<study>_best.yaml`, so that
`speakerops train experiment=generated/<study>_best` trains it again and `git status` stays clean
after a sweep (`conf/experiment/generated/README.md` is the only tracked file there)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from speakerops.core.config import conf_groups, project_conf_dir


def preset_path(study_name: str) -> tuple[Path, str]:
    """Where the best preset of `study_name` goes, and its `experiment=` option."""
    option = f"generated/{study_name}_best"
    return project_conf_dir() / "experiment" / f"{option}.yaml", option


def write_preset(best_params: Mapping[str, Any], path: Path, header: str) -> Path:
    """`# @package _global_` experiment preset: nested keys; a searched config group (a key
    naming a folder of conf/) becomes a defaults-list override."""
    groups = conf_groups()
    defaults = [{f"override /{k}": v} for k, v in best_params.items() if k in groups]
    values = OmegaConf.create({})
    for key, value in best_params.items():
        if key not in groups:
            OmegaConf.update(values, key, value, force_add=True)
    body = OmegaConf.to_container(values)
    text = "# @package _global_\n" + "".join(f"# {line}\n" for line in header.splitlines())
    if defaults:
        text += OmegaConf.to_yaml(OmegaConf.create({"defaults": defaults}))
    if body:
        text += OmegaConf.to_yaml(OmegaConf.create(body))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
