"""The packaged model: an MLflow pyfunc whose input is audio and whose output is embeddings.

Input (pandas DataFrame, one row per item): either a `path` column (audio file at any sample
rate) or `waveform` (1-D float array) with `sample_rate`. Output: float32 array [N, D].
The encoder file inside (safetensors + JSON, `speakerops.models.encoder_file`) carries the
feature settings, sample rate, calibration and the AS-norm cohort (encrypted and bound to the
weights, `speakerops.eval.sealed`: embedding needs no key, AS-norm scoring needs the store's
keyring). Its sha256 is the registered version's
`encoder_sha256` tag; every load from the registry checks the downloaded file against it
(a local file or model folder is checked against the file's sidecar).
"""

from __future__ import annotations

import json
from importlib.metadata import distribution, distributions, version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from speakerops.core.mlflow import client_for, fluent_store
from speakerops.core.uris import parse_model_uri
from speakerops.models.encoder import SpeakerEncoder
from speakerops.models.encoder_file import SUFFIX, IntegrityError, sidecar

ENCODER_ARTIFACT = "encoder"
ENCODER_SHA256_ARTIFACT = "encoder_sha256"
ENCODER_SHA256_TAG = "encoder_sha256"


PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")  # models from code: no pickle


def package_requirement() -> str:
    """speakerops as pip can install it where this model is served: where the running package
    was installed from (PEP 610 `direct_url.json`: the wheel file, or the checkout folder of an
    editable install) as `speakerops @ <url>`; installed from an index, `speakerops==<version>`."""
    # every metadata folder on the path, not only the first: a build's `speakerops.egg-info`
    # left in the working directory comes before the installed dist-info and has no PEP 610 file
    for dist in distributions(name="speakerops"):
        direct = dist.read_text("direct_url.json")
        url = json.loads(direct).get("url") if direct else None
        if url:
            return f"speakerops @ {url}"
    return f"speakerops=={distribution('speakerops').version}"


def pip_requirements() -> list[str]:
    """What a serving environment needs (given explicitly: inference took 80-100 s here)."""
    pins = ["torch", "torchaudio", "numpy", "pandas", "soundfile", "hydra-core", "mlflow"]
    return [package_requirement()] + [f"{p}=={version(p)}" for p in pins]


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
    """Log the encoder (and its sha256 sidecar) as a pyfunc model in the active MLflow run, its
    code as a file (`pyfunc_model.py`, MLflow's models from code: no pickled python_model);
    returns its model URI."""
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=str(PYFUNC_CODE),
        artifacts={
            ENCODER_ARTIFACT: str(encoder_path),
            ENCODER_SHA256_ARTIFACT: str(sidecar(encoder_path)),
        },
        pip_requirements=pip_requirements(),
    )
    return info.model_uri


def load_encoder(model_uri: str, tracking_uri: str | None = None):
    """A `SpeakerEncoder` from a registry URI (`models:/name@alias`, `models:/name/3`), a
    `runs:/` URI, or a local encoder file / pyfunc folder. A URI into the store needs the
    store's `tracking_uri` (from `paths.registry_dir`: `core.paths.tracking_uri`).

    A registry URI's encoder file must have the sha256 recorded on its version at registration
    (tag `encoder_sha256`); anything else is checked against the file's sidecar. A mismatch, a
    truncated, corrupt or old-format (pickled) file is refused with a ValueError naming it."""
    local = Path(model_uri)
    if local.is_file():
        return SpeakerEncoder.load(local)
    if local.is_dir() and (local / "MLmodel").is_file():
        return _encoder_from_model_dir(local)
    uri = _store(model_uri, tracking_uri)
    registry = parse_model_uri(model_uri).is_registry
    expected = registered_sha256(model_uri, uri) if registry else None
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
    try:
        return _encoder_from_model_dir(Path(path), expected)
    except IntegrityError as exc:
        raise IntegrityError(f"model={model_uri}: {exc}") from None


def registered_sha256(model_uri: str, tracking_uri: str | None = None) -> str:
    """The encoder sha256 recorded on a registered version (`models:/name/N` or `@alias`)."""
    uri = _store(model_uri, tracking_uri)
    try:
        name, version = resolve_model_version(model_uri, uri)
        tags = client_for(uri).get_model_version(name, version).tags
    except Exception as exc:
        raise ValueError(
            f"model={model_uri}: cannot resolve it in the MLflow store {uri} ({exc})"
        ) from exc
    sha = tags.get(ENCODER_SHA256_TAG)
    if not sha:
        raise ValueError(
            f"model={model_uri}: version {version} has no {ENCODER_SHA256_TAG} tag (registered "
            "before encoder files were hash-checked); re-register it"
        )
    return sha


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


def _encoder_from_model_dir(model_dir: Path, sha256: str | None = None):
    candidates = sorted(model_dir.glob(f"artifacts/**/*{SUFFIX}")) or sorted(
        model_dir.glob(f"**/*{SUFFIX}")
    )
    if not candidates:
        old = sorted(model_dir.glob("**/*.pt"))
        if old:
            raise ValueError(
                f"{old[0]}: an old-format (pickled) encoder, never loaded; convert it with "
                f"`speakerops models convert {old[0]} <new>{SUFFIX}` and register the result"
            )
        raise ValueError(f"{model_dir}: no encoder file inside the model")
    return SpeakerEncoder.load(candidates[0], sha256)
