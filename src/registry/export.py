"""`speakerops export`: a packaged encoder (registry URI or local file) as ONNX or TorchScript
(:mod:`speakerops.models.export`), and, for a registered version, the exported file logged to
the version's run (artifact `export/<file>`) with its sha256 as the version's tag
`export.<format>.sha256`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from speakerops.core.jsonio import sha256_file
from speakerops.core.mlflow import client_for
from speakerops.core.paths import artifacts_dir, tracking_uri
from speakerops.core.uris import parse_model_uri
from speakerops.models.export import FORMATS, export_encoder
from speakerops.registry.package import (
    load_encoder,
    registered_sha256,
    resolve_model_version,
)

EXPORT_ARTIFACT_DIR = "export"


def export_model(
    cfg: DictConfig, model: str, fmt: str, output: str | Path | None = None
) -> dict[str, Any]:
    """Export `model` in `fmt`; returns what was written (and logged)."""
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r}: expected one of {', '.join(FORMATS)}")
    uri = tracking_uri(cfg.paths.registry_dir)
    ref = parse_model_uri(model)
    encoder = load_encoder(model, tracking_uri=uri)
    name, version = resolve_model_version(model, uri)
    if ref.is_registry:
        source_sha = registered_sha256(model, uri)
    elif Path(model).is_file():
        source_sha = sha256_file(model)
    else:
        source_sha = None
    stem = f"{name}-v{version}" if ref.is_registry else name
    path = Path(output) if output else artifacts_dir(cfg) / "export" / f"{stem}{FORMATS[fmt]}"
    result = export_encoder(encoder, fmt, path, source_sha)
    if ref.is_registry:
        client = client_for(uri)
        run_id = client.get_model_version(name, version).run_id
        client.log_artifact(run_id, str(path), EXPORT_ARTIFACT_DIR)
        client.log_artifact(run_id, f"{path}.sha256", EXPORT_ARTIFACT_DIR)
        client.set_model_version_tag(name, version, f"export.{fmt}.sha256", result["sha256"])
        artifact = f"runs:/{run_id}/{EXPORT_ARTIFACT_DIR}/{path.name}"
        client.set_model_version_tag(name, version, f"export.{fmt}.artifact", artifact)
        result.update(model_name=name, version=version, artifact=artifact)
    return result
