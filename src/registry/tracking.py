"""Where MLflow lives: the embedded store under `registry/` unless MLFLOW_TRACKING_URI says otherwise.

Embedded default: `sqlite:///<registry_dir>/mlflow.db` with artifacts in
`<registry_dir>/artifacts` (a sqlite tracking URI alone would put artifacts in ./mlruns).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

OFFLINE_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1"}
MODEL_NAME = "speaker-encoder"


def offline_env() -> None:
    """Turn off the telemetry of MLflow and DVC (the network is closed; never phone home)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def child_env() -> dict[str, str]:
    """Environment for child processes (DVC and the stage commands it runs): telemetry off and
    this interpreter's bin folder first on PATH, so `speakerops` and `dvc` resolve to this
    install even when its virtual environment is not activated."""
    env = dict(os.environ, **OFFLINE_ENV)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def tracking_uri(registry_dir: str | Path = "registry") -> str:
    """MLFLOW_TRACKING_URI when set, else the embedded sqlite store in `registry_dir`."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    path = Path(registry_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"


def artifact_location(registry_dir: str | Path = "registry") -> str | None:
    """Artifact root for new experiments in the embedded store (None: the server decides)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    return (Path(registry_dir).resolve() / "artifacts").as_uri()


def setup_mlflow(experiment: str, registry_dir: str | Path = "registry") -> str:
    """Point MLflow at the store and select (creating if needed) `experiment`; returns its id."""
    import mlflow

    offline_env()
    mlflow.set_tracking_uri(tracking_uri(registry_dir))
    mlflow.set_registry_uri(tracking_uri(registry_dir))
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return mlflow.create_experiment(
            experiment, artifact_location=artifact_location(registry_dir)
        )
    mlflow.set_experiment(experiment)
    return exp.experiment_id
