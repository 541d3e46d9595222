"""MLflow client setup. One policy: library code never sets MLflow's global tracking URI.

Code talks to the store through an explicit `MlflowClient` (:func:`client`), or passes the
URI to the API that takes one (Lightning's `MLFlowLogger`). Where only MLflow's fluent API
will do (`mlflow.start_run`, `log_model`, `register_model`, `download_artifacts`),
:func:`fluent_store` points it at the store for the duration of a `with` block and restores
what was there before, environment variables included.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient
from mlflow.tracking._model_registry import utils as _registry_state
from mlflow.tracking._tracking_service import utils as _tracking_state

from speakerops.core.env import offline_env
from speakerops.core.paths import artifact_location, tracking_uri

_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_READY: set[str] = set()  # embedded stores this process has created or found migrated
SQLITE = "sqlite:///"


def init_store(uri: str) -> str:
    """Create and migrate an embedded sqlite store once, under an exclusive lock on
    ``<db>.lock``, before anything else connects: two processes that open the same fresh
    store at once (two `speakerops train` started together) race in MLflow's table creation
    and one dies (``table _alembic_tmp_experiments already exists``). Other URIs (a server)
    are returned as they are."""
    if not uri.startswith(SQLITE) or uri in _READY:
        return uri
    db = Path(uri[len(SQLITE) :])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments(max_results=1)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _READY.add(uri)
    return uri


def client(registry: str | Path) -> MlflowClient:
    """A client on the store of `registry` (`paths.registry_dir`, or MLFLOW_TRACKING_URI)."""
    return client_for(tracking_uri(registry))


def client_for(uri: str) -> MlflowClient:
    """A client on an explicit tracking + registry URI."""
    offline_env()
    init_store(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(name: str, registry: str | Path) -> str:
    """The id of experiment `name` in the store, created (artifacts under
    `<registry>/artifacts` in the embedded store) when it does not exist."""
    c = client(registry)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return c.create_experiment(name, artifact_location=artifact_location(registry))


@contextmanager
def fluent_store(uri: str) -> Iterator[str]:
    """Within the block MLflow's fluent API reads and writes the store at `uri`; on exit the
    previous global URIs are put back. The environment is left as it was throughout (MLflow's
    setters export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI; that would make `paths`
    mistake the store for a team server, and outlive the block)."""
    offline_env()
    init_store(uri)
    saved_env = {k: os.environ.get(k) for k in _ENV}
    saved = (_tracking_state._tracking_uri, _registry_state._registry_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    _restore_env(saved_env)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(saved[0])
        _registry_state._registry_uri = saved[1]
        _restore_env(saved_env)


def _restore_env(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def ui_command(registry: str | Path, host: str, port: int) -> list[str]:
    """The `mlflow ui` command line on the store of `registry` (`speakerops ui` runs it)."""
    argv = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(registry)]
    argv += ["--host", str(host), "--port", str(int(port))]
    artifacts = artifact_location(registry)
    if artifacts:
        argv += ["--default-artifact-root", artifacts]
    return argv
