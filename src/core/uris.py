"""The one parser of model references: ``models:/name/3``, ``models:/name@alias``,
``runs:/<run_id>/<path>`` and a local file or folder.

Pure: no MLflow import; resolving an alias to a version is the registry's job
(:func:`speakerops.registry.package.resolve_model_version`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MODELS_SCHEME = "models:/"
RUNS_SCHEME = "runs:/"


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference; ``kind`` is ``registry``, ``run`` or ``path``."""

    uri: str
    kind: str
    name: str | None
    version: str | None
    alias: str | None
    run_id: str | None
    artifact_path: str | None

    @property
    def is_registry(self) -> bool:
        return self.kind == "registry"


def parse_model_uri(uri: str) -> ModelRef:
    """Parse a model reference; a malformed ``models:/`` or ``runs:/`` URI is an error
    naming the URI and the expected form. Anything else is a local path (not checked here)."""
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"model={uri!r}: expected models:/<name>/<N>, models:/<name>@<alias>, "
                         "runs:/<run_id>/<path> or a file path")  # fmt: skip
    if uri.startswith(MODELS_SCHEME):
        rest = uri[len(MODELS_SCHEME) :]
        name, sep, alias = rest.partition("@")
        if sep:
            if not name or not alias:
                raise ValueError(f"{uri!r}: expected models:/<name>@<alias>")
            return ModelRef(uri, "registry", name, None, alias, None, None)
        name, _, version = rest.rpartition("/")
        if not name or not version.isdigit():
            raise ValueError(f"{uri!r}: expected models:/<name>/<version number>")
        return ModelRef(uri, "registry", name, version, None, None, None)
    if uri.startswith(RUNS_SCHEME):
        run_id, _, path = uri[len(RUNS_SCHEME) :].partition("/")
        if not run_id or not path:
            raise ValueError(f"{uri!r}: expected runs:/<run_id>/<artifact path>")
        return ModelRef(uri, "run", None, None, None, run_id, path)
    return ModelRef(uri, "path", Path(uri).stem, None, None, None, None)


def registered_model_uri(
    name: str, version: str | int | None = None, alias: str | None = None
) -> str:
    """``models:/name/N`` (or ``models:/name@alias``)."""
    if (version is None) == (alias is None):
        raise ValueError(f"model {name!r}: give exactly one of a version or an alias")
    return (
        f"{MODELS_SCHEME}{name}@{alias}"
        if alias is not None
        else f"{MODELS_SCHEME}{name}/{version}"
    )


def run_artifact_uri(run_id: str, artifact_path: str) -> str:
    """``runs:/<run_id>/<artifact_path>``."""
    return f"{RUNS_SCHEME}{run_id}/{artifact_path}"
