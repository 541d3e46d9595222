"""The packaged model: an MLflow pyfunc whose input is audio and whose output is embeddings.

Input (pandas DataFrame, one row per item): either a `path` column (audio file at any sample
rate) or `waveform` (1-D float array) with `sample_rate`. Output: float32 array [N, D].
The encoder file inside carries the feature settings, sample rate, calibration and cohort.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from speakerops.core.mlflow import client_for, fluent_store
from speakerops.core.uris import parse_model_uri
from speakerops.models.encoder import SpeakerEncoder

ENCODER_ARTIFACT = "encoder"


def pip_requirements() -> list[str]:
    """What a serving environment needs (given explicitly: inference took 80-100 s here)."""
    from importlib.metadata import version

    pins = ["torch", "torchaudio", "numpy", "pandas", "soundfile", "hydra-core", "mlflow"]
    return [f"speakerops=={version('speakerops')}"] + [f"{p}=={version(p)}" for p in pins]


class EncoderPyfunc(PythonModel):
    """pyfunc wrapper around `SpeakerEncoder`."""

    def load_context(self, context) -> None:
        self.encoder = SpeakerEncoder.load(context.artifacts[ENCODER_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        if isinstance(model_input, dict):
            model_input = pd.DataFrame(model_input)
        if not isinstance(model_input, pd.DataFrame):
            raise TypeError(
                "input must be a DataFrame with a `path` column or `waveform` + `sample_rate`"
            )
        rows = []
        if "path" in model_input.columns:
            for p in model_input["path"]:
                rows.append(self.encoder.embed_file(p))
        elif {"waveform", "sample_rate"} <= set(model_input.columns):
            for wav, sr in zip(model_input["waveform"], model_input["sample_rate"], strict=True):
                rows.append(self.encoder.embed(np.asarray(wav, np.float32), int(sr)))
        else:
            raise ValueError(
                f"input columns {list(model_input.columns)}: need `path`, or `waveform` and `sample_rate`"
            )
        return np.stack(rows).astype(np.float32)


def log_encoder_model(encoder_path: str | Path, name: str = "model") -> str:
    """Log the encoder as a pyfunc model in the active MLflow run; returns its model URI."""
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=EncoderPyfunc(),
        artifacts={ENCODER_ARTIFACT: str(encoder_path)},
        pip_requirements=pip_requirements(),
    )
    return info.model_uri


def load_encoder(model_uri: str, tracking_uri: str | None = None):
    """A `SpeakerEncoder` from a registry URI (`models:/name@alias`, `models:/name/3`), a
    `runs:/` URI, or a local encoder file / pyfunc folder. A URI into the store needs the
    store's `tracking_uri` (from `paths.registry_dir`: `core.paths.tracking_uri`)."""
    local = Path(model_uri)
    if local.is_file():
        return SpeakerEncoder.load(local)
    if local.is_dir() and (local / "MLmodel").is_file():
        return _encoder_from_model_dir(local)
    uri = _store(model_uri, tracking_uri)
    try:
        # scoped, not only passed: resolving a registered version's logged-model source reads
        # MLflow's global store (MLflow 3.17)
        with fluent_store(uri):
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri, tracking_uri=uri, registry_uri=uri
            )
    except Exception as exc:
        raise ValueError(
            f"model={model_uri}: cannot resolve it in the MLflow store {uri} ({exc})"
        ) from exc
    return _encoder_from_model_dir(Path(path))


def resolve_model_version(model_uri: str, tracking_uri: str | None = None) -> tuple[str, str]:
    """(model name, version) of `models:/name/N` or `models:/name@alias`; anything else (a
    local file or folder, a `runs:/` URI) gives (its name, "local")."""
    ref = parse_model_uri(model_uri)
    if not ref.is_registry:
        return Path(model_uri).stem, "local"
    if ref.alias is not None:
        client = client_for(_store(model_uri, tracking_uri))
        return ref.name, str(client.get_model_version_by_alias(ref.name, ref.alias).version)
    return ref.name, ref.version


def _store(model_uri: str, tracking_uri: str | None) -> str:
    if not tracking_uri:
        raise ValueError(
            f"model={model_uri}: not a local file or folder, and no MLflow store given "
            "(pass the tracking URI of paths.registry_dir)"
        )
    return tracking_uri


def _encoder_from_model_dir(model_dir: Path):
    candidates = sorted(model_dir.glob("artifacts/**/*.pt")) or sorted(model_dir.glob("**/*.pt"))
    if not candidates:
        raise ValueError(f"{model_dir}: no encoder file inside the model")
    return SpeakerEncoder.load(candidates[0])
