"""`speakerops export`: ONNX and TorchScript files with the front end inside, parity with the
PyTorch encoder on real audio (max abs difference <= 1e-4 on the embedding), dynamic length,
metadata, and the exported file logged to the registered version with its sha256.

The parity tests build every zoo config (conf/model/) slimmed to a few narrow layers: the same
operators and code paths as the full model (exportability is a property of those), in a few
seconds each. `bench/bench_export.py` exports the full-size models and reports their parity and
real-time factors."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import mlflow
import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from speakerops.cli import main
from speakerops.core.config import compose, conf_options
from speakerops.core.jsonio import sha256_file
from speakerops.core.mlflow import client, ensure_experiment, fluent_store
from speakerops.core.paths import tracking_uri
from speakerops.models.encoder import FILENAME, SpeakerEncoder
from speakerops.models.export import TORCHSCRIPT_META, ExportError, export_encoder
from speakerops.models.features import FeatureConfig
from speakerops.models.zoo import build_backbone
from speakerops.registry.package import ENCODER_SHA256_TAG, log_encoder_model

from .conftest import shared

TOLERANCE = 1e-4
SLIM = {  # zoo config -> overrides that keep its operators, with few narrow layers
    "ecapa_small": [],
    "ecapa512": ["model.channels=32", "model.attention_channels=16"],
    "ecapa1024": ["model.channels=32", "model.attention_channels=16", "model.mfa_channels=96"],
    "ecapa_speechbrain": [
        "features=sb_fbank80",
        "model.layer_channels=[32,32,32,32,96]",
        "model.attention_channels=16",
        "model.se_channels=16",
    ],
    "resnet34": ["model.base_channels=8", "model.num_blocks=[1,1,1,1]"],
    "xvector": ["model.channels=64", "model.stats_channels=128"],
    "campplus": [
        "model.block_layers=[1,1,1]",
        "model.init_channels=32",
        "model.growth_rate=8",
        "model.fcm_channels=8",
    ],
    "edge": [
        "model.block_layers=[1,1,1]",
        "model.init_channels=32",
        "model.growth_rate=8",
        "model.fcm_channels=8",
    ],
}
CANNOT = {"ge2e": (["features=mel40_power"], "windowed inference")}  # config -> (overrides, why)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@cache
def encoder(name: str) -> SpeakerEncoder:
    overrides = SLIM[name] if name in SLIM else CANNOT[name][0]
    cfg = compose([f"model={name}", *overrides])
    torch.manual_seed(0)
    features = FeatureConfig(**OmegaConf.to_container(cfg.features, resolve=True))
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    return SpeakerEncoder(build_backbone(cfg.model), features, model_cfg).eval()


@cache
def speech() -> tuple[np.ndarray, np.ndarray]:
    """Two real utterances of different lengths (3 s and 5.3 s, neither the export example's)."""
    a, rate = sf.read(str(shared("librispeech", "test-other", "3005", "3005-163389-0005.flac")))
    b, _ = sf.read(str(shared("librispeech", "test-other", "1688", "1688-142285-0000.flac")))
    return a[: 3 * rate].astype(np.float32), b[: int(5.3 * rate)].astype(np.float32)


def test_every_zoo_model_is_covered() -> None:
    assert set(conf_options("model")) == set(SLIM) | set(CANNOT)


def _parity(name: str, run) -> None:
    enc = encoder(name)
    for wav in speech():
        with torch.no_grad():
            ref = enc(torch.from_numpy(wav)[None]).numpy()
        got = run(wav[None])
        assert got.shape == ref.shape == (1, enc.embedding_dim)
        diff = float(np.abs(got - ref).max())
        assert diff <= TOLERANCE, f"{name}: max abs difference {diff:.2e} at {wav.size} samples"


@pytest.mark.parametrize("name", sorted(SLIM))
def test_onnx_matches_the_pytorch_encoder_on_real_speech(name: str, tmp_path: Path) -> None:
    result = export_encoder(encoder(name), "onnx", tmp_path / f"{name}.onnx", "ab" * 32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(result["path"], options, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["wav"]
    _parity(name, lambda wav: session.run(None, {"wav": wav})[0])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["sample_rate"] == "16000" and meta["encoder_sha256"] == "ab" * 32
    assert json.loads(meta["features"]) == encoder(name).fbank.config.to_dict()
    assert result["sha256"] == sha256_file(result["path"])


@pytest.mark.parametrize("name", sorted(SLIM))
def test_torchscript_matches_the_pytorch_encoder_on_real_speech(name: str, tmp_path: Path) -> None:
    result = export_encoder(encoder(name), "torchscript", tmp_path / f"{name}.pt")
    files = {TORCHSCRIPT_META: ""}
    module = torch.jit.load(result["path"], _extra_files=files)
    _parity(name, lambda wav: module(torch.from_numpy(wav)).detach().numpy())
    assert json.loads(files[TORCHSCRIPT_META])["sample_rate"] == "16000"


@pytest.mark.parametrize("name", sorted(CANNOT))
def test_a_model_that_cannot_export_says_why(name: str, tmp_path: Path) -> None:
    for fmt in ("onnx", "torchscript"):
        with pytest.raises(ExportError, match=CANNOT[name][1]):
            export_encoder(encoder(name), fmt, tmp_path / f"{name}.{fmt}")
    assert not list(tmp_path.iterdir()), "nothing written"


def test_export_logs_the_file_to_the_registered_version(tmp_path: Path, capsys) -> None:
    enc = encoder("ecapa_small")
    enc.extras["calibration"] = {"kind": "linear", "a": 2.0, "b": -1.0}
    packaged = enc.save(tmp_path / "register" / FILENAME)
    registry = tmp_path / "registry"
    exp_id = ensure_experiment("export", registry)
    with fluent_store(tracking_uri(registry)):
        with mlflow.start_run(experiment_id=exp_id):
            model_uri = log_encoder_model(packaged)
        tags = {ENCODER_SHA256_TAG: sha256_file(packaged)}
        version = mlflow.register_model(model_uri, "speaker-encoder", tags=tags).version
    out = tmp_path / "enc.pt"  # TorchScript: the quick format (ONNX is covered above)
    args = ["export", f"model=models:/speaker-encoder/{version}", "format=torchscript"]
    args.append(f"output={out}")
    assert main([*args, f"paths.registry_dir={registry}"]) == 0
    printed = json.loads(capsys.readouterr().out)
    sha = sha256_file(out)
    assert printed["sha256"] == sha and printed["version"] == str(version)
    mv = client(registry).get_model_version("speaker-encoder", version)
    assert mv.tags["export.torchscript.sha256"] == sha
    logged = mlflow.artifacts.download_artifacts(
        artifact_uri=mv.tags["export.torchscript.artifact"], tracking_uri=tracking_uri(registry)
    )
    assert sha256_file(logged) == sha
    files = {TORCHSCRIPT_META: ""}
    torch.jit.load(str(out), _extra_files=files)
    meta = json.loads(files[TORCHSCRIPT_META])
    assert json.loads(meta["calibration"]) == enc.extras["calibration"]
    assert meta["encoder_sha256"] == tags[ENCODER_SHA256_TAG]
    assert main(["export", f"model={packaged}", "format=tflite"]) == 2  # a clear refusal
