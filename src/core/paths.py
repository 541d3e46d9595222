"""Where things live. Every location comes from the composed `paths.*` (conf/config.yaml):
`paths.registry_dir` holds the embedded MLflow store (sqlite + artifacts), the Optuna storage
and the audit log; `paths.artifacts_dir` the stage outputs. `MLFLOW_TRACKING_URI` points the
same code at a team server instead of the embedded store."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig


def registry_dir(cfg: DictConfig) -> Path:
    """`paths.registry_dir` of the composed config."""
    return Path(cfg.paths.registry_dir)


def artifacts_dir(cfg: DictConfig) -> Path:
    """`paths.artifacts_dir` of the composed config."""
    return Path(cfg.paths.artifacts_dir)


def tracking_uri(registry: str | Path) -> str:
    """MLFLOW_TRACKING_URI when set, else the embedded sqlite store in `registry`
    (`paths.registry_dir`)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    path = Path(registry).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"


def artifact_location(registry: str | Path) -> str | None:
    """Artifact root for new experiments in the embedded store (None: the server decides).

    A sqlite tracking URI alone would put artifacts in ./mlruns; the embedded store keeps them
    in `<registry>/artifacts`."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    return (Path(registry).resolve() / "artifacts").as_uri()
