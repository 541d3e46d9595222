"""The ``drift`` config group: its defaults live once, in ``conf/drift/default.yaml``; this
module reads them and turns whatever a caller passes into a complete, validated drift config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from speakerops.core.config import find_conf_file

_NUM = "numerical"
_CAT = "categorical"


def _defaults_file() -> dict[str, Any]:
    path = find_conf_file("drift/default.yaml")  # the project's, else the packaged one
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of drift settings")
    return data


def drift_defaults() -> dict[str, Any]:
    """A fresh copy of ``conf/drift/default.yaml`` (the one place the drift defaults live)."""
    return _defaults_file()


def drift_config(cfg: DictConfig | Mapping | None = None) -> DictConfig:
    """A complete drift config: ``cfg.drift`` when ``cfg`` is the whole tree, else ``cfg``
    itself, merged over :func:`drift_defaults` (keys given win; the ``columns`` and
    ``scores.tests`` tables are taken as given when present, so a column can be removed)."""
    if cfg is None:
        node: Any = {}
    elif isinstance(cfg, DictConfig):
        node = cfg.drift if "drift" in cfg else cfg
        node = OmegaConf.to_container(node, resolve=True)
    elif isinstance(cfg, Mapping):
        node = dict(cfg.get("drift", cfg))
    else:
        raise TypeError(f"drift config must be a DictConfig or a mapping, got {type(cfg).__name__}")
    base = drift_defaults()
    if isinstance(node, Mapping) and "columns" in node and node["columns"] is not None:
        base["columns"] = {}
    if isinstance(node, Mapping) and node.get("scores") and node["scores"].get("tests") is not None:
        base["scores"]["tests"] = {}
    merged = OmegaConf.merge(OmegaConf.create(base), OmegaConf.create(dict(node or {})))
    _validate(merged)
    return merged


def _validate(d: DictConfig) -> None:
    if d.embedding.method not in ("model", "mmd"):
        raise ValueError(
            f"drift.embedding.method must be 'model' or 'mmd', got {d.embedding.method!r}"
        )
    if d.reference.source not in ("mlflow", "path"):
        raise ValueError(
            f"drift.reference.source must be 'mlflow' or 'path', got {d.reference.source!r}"
        )
    for group, table in (("columns", d.columns), ("scores.tests", d.scores.tests)):
        for name, spec in table.items():
            if spec.get("type") not in (_NUM, _CAT):
                raise ValueError(
                    f"drift.{group}.{name}.type must be '{_NUM}' or '{_CAT}', got {spec.get('type')!r}"
                )
            if not spec.get("stattest"):
                raise ValueError(f"drift.{group}.{name}.stattest is empty")
    if int(d.scores.cohort_top_k) < 1:
        raise ValueError("drift.scores.cohort_top_k must be >= 1")
