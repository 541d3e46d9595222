"""Defaults of the ``drift`` config group (mirrors ``conf/drift/default.yaml``) and the
helper that turns whatever a caller passes into a complete drift config."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

_NUM = "numerical"
_CAT = "categorical"

DEFAULTS: dict[str, Any] = {
    "log_dir": "data/production_log",
    "output_dir": "outputs/drift",
    "run_name": None,
    "seed": 0,
    "progress": True,
    "threads": 1,
    "reference": {
        "source": "mlflow",
        "model_name": "speaker-encoder",
        "alias": "champion",
        "tracking_uri": None,
        "path": None,
        "model_version": None,
    },
    "window": {
        "start": None,
        "end": None,
        "last_days": 7,
        "model_version": None,
        "min_rows": 200,
    },
    "embedding": {
        "method": "model",
        "threshold": 0.55,
        "bootstrap": False,
        "quantile_probability": 0.95,
        "pca_components": None,
        "one_per_speaker": True,
        "max_rows": 100000,
        "min_rows": 100,
    },
    "columns": {
        "duration_s": {"type": _NUM, "stattest": "wasserstein", "threshold": 0.2},
        "snr_db": {"type": _NUM, "stattest": "wasserstein", "threshold": 0.2},
        "sample_rate": {"type": _CAT, "stattest": "jensenshannon", "threshold": 0.1},
        "channel": {"type": _CAT, "stattest": "jensenshannon", "threshold": 0.1},
    },
    "scores": {
        "cohort_top_k": 10,
        "max_cohort": 500,
        "tests": {
            "score_cohort_topk": {"type": _NUM, "stattest": "wasserstein", "threshold": 0.3},
            "score_random_pair": {"type": _NUM, "stattest": "wasserstein", "threshold": 0.3},
        },
    },
    "report": {"enabled": True, "max_rows": 300},
    "tickets": {
        "dir": "tickets",
        "github": {
            "repo": None,
            "token_env": "GITHUB_TOKEN",
            "api_url": "https://api.github.com",
            "labels": ["drift", "retraining"],
            "timeout_s": 30,
        },
    },
    "retrain": {
        "enabled": True,
        "labelled_manifest": None,
        "run_without_manifest": False,
        "command": ["dvc", "exp", "run", "--set-param", "data.extra_manifests=[{manifest}]"],
        "command_without_manifest": ["dvc", "exp", "run"],
        "cwd": None,
        "timeout_s": None,
        "gate_verdict": "artifacts/register/gate.json",
    },
}


def drift_config(cfg: DictConfig | Mapping | None = None) -> DictConfig:
    """A complete drift config: ``cfg.drift`` when ``cfg`` is the whole tree, else ``cfg``
    itself, merged over :data:`DEFAULTS` (keys given win; the ``columns`` and
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
    base = copy.deepcopy(DEFAULTS)
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
