"""The champion's drift reference, resolved through the registry: ``models:/<name>@<alias>``
-> the version's run -> its ``reference`` artifacts (format: :mod:`speakerops.registry.reference`,
stored there at registration)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from speakerops.core.keys import Keyring
from speakerops.core.mlflow import client_for
from speakerops.core.names import CHAMPION
from speakerops.registry.reference import REFERENCE_ARTIFACT_PATH, Reference, load_reference


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The argument, else env ``MLFLOW_TRACKING_URI``; the embedded store has no default here
    (callers pass the one of ``paths.registry_dir``: ``core.paths.tracking_uri``)."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise ValueError(
            "drift.reference.tracking_uri: no MLflow store given (null and MLFLOW_TRACKING_URI "
            "unset); `speakerops drift` uses the store of paths.registry_dir"
        )
    return uri


def load_champion_reference(
    model_name: str,
    alias: str = CHAMPION,
    tracking_uri: str | None = None,
    *,
    keyring: Keyring,
) -> tuple[Reference, str]:
    """Resolve ``models:/<model_name>@<alias>`` and load its run's ``reference`` artifacts.

    Returns ``(reference, version)``; the reference carries the model name, version and
    run id. Raises a clear error when the alias or the artifacts are missing.
    """
    uri = resolve_tracking_uri(tracking_uri)
    client = client_for(uri)
    try:
        mv = client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        raise LookupError(
            f"no model version '{model_name}@{alias}' in the registry at {uri}: {exc.message}"
        ) from exc
    if not mv.run_id:
        raise LookupError(
            f"{model_name} version {mv.version} (@{alias}) has no run, so no reference"
        )
    tmp = Path(tempfile.mkdtemp(prefix="speakerops-ref-"))
    try:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=mv.run_id,
                artifact_path=REFERENCE_ARTIFACT_PATH,
                dst_path=str(tmp),
                tracking_uri=uri,
            )
        except (MlflowException, OSError) as exc:
            raise LookupError(
                f"{model_name} version {mv.version} (@{alias}, run {mv.run_id}) has no "
                f"'{REFERENCE_ARTIFACT_PATH}' artifacts: {exc}"
            ) from exc
        ref = load_reference(local, keyring=keyring)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ref.path = None  # the downloaded copy is gone; everything is in memory
    ref.model_name = model_name
    ref.model_version = str(mv.version)
    ref.run_id = mv.run_id
    return ref, str(mv.version)
