"""Model files are data, never code: the safetensors encoder file, its sha256 checks, the one
explicit converter for old pickled files, and an encoder that never emits NaN/Inf."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from speakerops.cli import main
from speakerops.core.jsonio import sha256_file as file_sha256
from speakerops.data.audio import AudioError
from speakerops.models import encoder_file
from speakerops.models.ecapa import ECAPATDNN
from speakerops.models.encoder import FILENAME, SpeakerEncoder
from speakerops.models.encoder_file import IntegrityError
from speakerops.models.features import FeatureConfig
from speakerops.models.legacy import LEGACY_FORMAT, convert, read_checkpoint
from speakerops.models.zoo import backbones, build_backbone, model_spec, register_backbone

from .conftest import tone, write_wav

OLD_MODEL = {
    "_target_": "speakerops.models.ecapa.ECAPATDNN",
    "n_mels": 80,
    "channels": 32,
    "embedding_dim": 192,
    "attention_channels": 16,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_encoder(seed: int = 0) -> SpeakerEncoder:
    torch.manual_seed(seed)
    backbone = ECAPATDNN(80, 32, 192, attention_channels=16)
    return SpeakerEncoder(backbone, FeatureConfig(), OLD_MODEL).eval()


def cohort_extras() -> dict:
    rng = np.random.default_rng(0)
    return {
        "calibration": {"kind": "linear", "a": 2.0, "b": -1.0},
        "scoring": {
            "method": "asnorm",
            "top_n": 3,
            "cohort": rng.standard_normal((5, 192)).astype(np.float32),
            "cohort_speakers": [f"s{i}" for i in range(5)],
        },
        "train_speakers": ["s0", "s1"],
        "eval_metrics": {"eer": np.float64(0.125), "min_dcf_0.01": 0.5, "n_trials": 40},
    }


def write_old_format(path: Path, enc: SpeakerEncoder, extras: dict) -> Path:
    """An encoder file exactly as `SpeakerEncoder.save` wrote it before (torch.save pickle)."""
    torch.save(
        {
            "format": LEGACY_FORMAT,
            "model": OLD_MODEL,
            "features": enc.fbank.config.to_dict(),
            "state_dict": enc.backbone.state_dict(),
            "extras": extras,
        },
        path,
    )
    return path


class _RunsCode:
    """A pickle payload that runs a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path: Path, capsys) -> None:
    from speakerops.registry.package import load_encoder
    from speakerops.train.run import load_initial_weights

    marker = tmp_path / "pwned"
    evil = tmp_path / "encoder.pt"
    torch.save({"format": LEGACY_FORMAT, "model": OLD_MODEL, "payload": _RunsCode(marker)}, evil)
    with pytest.raises(ValueError, match="never loaded"):
        SpeakerEncoder.load(evil)
    with pytest.raises(ValueError, match="never loaded"):
        load_encoder(str(evil))
    with pytest.raises(ValueError, match=r"refused by torch.load\(weights_only=True\)"):
        convert(evil, tmp_path / "new.safetensors")
    with pytest.raises(ValueError, match=r"weights_only=True"):
        load_initial_weights(None, evil, OLD_MODEL)  # type: ignore[arg-type]
    assert main(["models", "convert", str(evil), str(tmp_path / "new.safetensors")]) == 2
    assert "weights_only=True" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "new.safetensors").exists()


def test_converted_old_encoder_gives_exactly_the_same_embeddings(tmp_path: Path, capsys) -> None:
    enc = small_encoder()
    old = write_old_format(tmp_path / "encoder.pt", enc, cohort_extras())
    with pytest.raises(ValueError, match="speakerops models convert"):
        SpeakerEncoder.load(old)  # never loaded by embed/evaluate/register
    new = tmp_path / FILENAME
    assert main(["models", "convert", str(old), str(new)]) == 0
    summary = capsys.readouterr().out
    assert '"arch": "ecapa_tdnn"' in summary
    back = SpeakerEncoder.load(new)
    for seconds in (0.5, 1.0, 3.0):
        wav = tone(seconds, freq=180.0 + 40 * seconds)
        assert np.array_equal(back.embed(wav, 16000), enc.embed(wav, 16000))
    assert back.model_cfg == {
        "arch": "ecapa_tdnn",
        **{k: v for k, v in OLD_MODEL.items() if k != "_target_"},
    }
    extras = cohort_extras()
    # the old file's plaintext biometrics (cohort ids + mean embeddings, training speaker ids)
    # are not carried over, and the summary says so and what to run
    assert "plaintext AS-norm cohort" in summary and "speakerops evaluate" in summary
    assert "scoring" not in back.extras and "train_speakers" not in back.extras
    assert back.extras["n_train_speakers"] == 2
    raw = new.read_bytes()
    for spk in extras["scoring"]["cohort_speakers"]:
        assert f'"{spk}"'.encode() not in raw
    assert extras["scoring"]["cohort"][0].tobytes() not in raw
    assert back.extras["calibration"] == extras["calibration"]
    assert back.extras["eval_metrics"] == {"eer": 0.125, "min_dcf_0.01": 0.5, "n_trials": 40}
    assert file_sha256(new) == encoder_file.sidecar(new).read_text().split()[0]


def test_the_file_is_safetensors_with_json_and_no_import_path(tmp_path: Path) -> None:
    from safetensors import safe_open

    enc = small_encoder()
    enc.extras.update(cohort_extras())
    enc.extras["sealed"] = b"\x00\x01opaque bytes"
    path = enc.save(tmp_path / FILENAME)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
    assert meta["format"] == "speakerops-encoder/2"
    assert '"arch": "ecapa_tdnn"' in meta["speakerops"] and "_target_" not in meta["speakerops"]
    assert "speakerops.models" not in meta["speakerops"]
    # the cohort is its own tensor, apart from the JSON (so it can be sealed on its own)
    assert "extras.scoring.cohort" in keys and "backbone.stem.0.weight" in keys
    assert SpeakerEncoder.load(path).extras["sealed"] == b"\x00\x01opaque bytes"
    with pytest.raises(ValueError, match=r"\*\.safetensors"):
        enc.save(tmp_path / "encoder.pt")


def test_header_lengths_that_look_like_a_pickle_opcode_still_load(tmp_path: Path) -> None:
    """A safetensors file starts with its header length: 0x80 there is not a pickle."""
    enc = small_encoder()
    for pad in range(0, 260, 7):
        enc.extras["pad"] = "x" * pad
        path = enc.save(tmp_path / FILENAME)
        if path.read_bytes()[0] == 0x80:
            assert SpeakerEncoder.load(path).extras["pad"] == "x" * pad
            return
    raise AssertionError("no header length ending in 0x80 was produced")


def _damaged(tmp_path: Path, damage) -> tuple[Path, str, str]:
    path = small_encoder().save(tmp_path / FILENAME)
    expected = file_sha256(path)
    data = bytearray(path.read_bytes())
    path.write_bytes(damage(data))
    return path, expected, file_sha256(path)


def _flip_one_bit(data: bytearray) -> bytes:
    data[len(data) // 2] ^= 0x10
    return bytes(data)


def _zero_4k(data: bytearray) -> bytes:
    mid = len(data) // 2
    data[mid : mid + 4096] = bytes(4096)
    return bytes(data)


def _truncate(data: bytearray) -> bytes:
    return bytes(data[: len(data) - 1000])


@pytest.mark.parametrize("damage", [_flip_one_bit, _zero_4k, _truncate])
def test_a_damaged_file_is_refused_naming_it_and_both_hashes(tmp_path: Path, damage) -> None:
    path, expected, actual = _damaged(tmp_path, damage)
    assert actual != expected
    with pytest.raises(IntegrityError) as info:
        SpeakerEncoder.load(path)
    assert str(info.value).startswith(
        f"{path}: sha256 {actual} does not match the expected {expected} "
        f"(sidecar {encoder_file.sidecar(path)})"
    )


def test_a_damaged_file_is_a_one_line_cli_error(tmp_path: Path, capsys) -> None:
    path, expected, actual = _damaged(tmp_path, _truncate)
    write_wav(tmp_path / "in" / "a.wav", tone(1.0))
    out = tmp_path / "e.npz"
    assert main(["embed", f"model={path}", f"input={tmp_path / 'in'}", f"output={out}"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert str(path) in err and expected in err and actual in err
    assert not out.exists()


def test_an_unchecked_or_unparsable_file_is_refused(tmp_path: Path) -> None:
    path = small_encoder().save(tmp_path / FILENAME)
    side = encoder_file.sidecar(path)
    side.unlink()
    with pytest.raises(IntegrityError, match="sidecar .* is missing"):
        SpeakerEncoder.load(path)
    # an expected hash given by the caller (e.g. a registry tag) stands in for the sidecar
    assert SpeakerEncoder.load(path, file_sha256(path)).embedding_dim == 192
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        SpeakerEncoder.load(junk, file_sha256(junk))
    nan = small_encoder()
    with torch.no_grad():
        nan.backbone.embedding.weight[0, 0] = float("nan")
    bad = nan.save(tmp_path / "nan.safetensors")
    with pytest.raises(ValueError, match="backbone.embedding.weight holds NaN"):
        SpeakerEncoder.load(bad)


def _register(tmp_path: Path, enc: SpeakerEncoder, alias: str = "champion") -> tuple[str, Path]:
    """Package and register an encoder the way the register stage does (real MLflow)."""
    import mlflow

    from speakerops.core.mlflow import client, ensure_experiment, fluent_store
    from speakerops.core.paths import tracking_uri
    from speakerops.registry.package import ENCODER_SHA256_TAG, log_encoder_model

    packaged = enc.save(tmp_path / "register" / FILENAME)
    registry = tmp_path / "registry"
    exp_id = ensure_experiment("files", registry)
    uri = tracking_uri(registry)
    tags = {ENCODER_SHA256_TAG: file_sha256(packaged)}
    with fluent_store(uri):
        with mlflow.start_run(experiment_id=exp_id):
            model_uri = log_encoder_model(packaged)
        version = mlflow.register_model(model_uri, "speaker-encoder", tags=tags)
    client(registry).set_registered_model_alias("speaker-encoder", alias, version.version)
    return uri, packaged


def test_a_bit_flip_in_the_champions_registered_artifact_is_refused(tmp_path: Path) -> None:
    from speakerops.registry.package import load_encoder

    enc = small_encoder()
    uri, packaged = _register(tmp_path, enc)
    wav = tone(1.0)
    loaded = load_encoder("models:/speaker-encoder@champion", tracking_uri=uri)
    assert np.array_equal(loaded.embed(wav), enc.embed(wav))
    stored = [
        p
        for p in (tmp_path / "registry" / "artifacts").rglob(FILENAME)
        if p.read_bytes() == packaged.read_bytes()
    ]
    assert stored, "the registered artifact is in the store"
    expected = file_sha256(packaged)
    for p in stored:  # the model's copy, as a tamperer or a bad disk would change it
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0x01
        p.write_bytes(bytes(data))
        # a tamperer who also rewrites the sidecar beside it changes nothing
        encoder_file.sidecar(p).write_text(f"{file_sha256(p)}  {p.name}\n")
    actual = file_sha256(stored[0])
    with pytest.raises(IntegrityError) as info:
        load_encoder("models:/speaker-encoder@champion", tracking_uri=uri)
    msg = str(info.value)
    assert msg.startswith("model=models:/speaker-encoder@champion: ")
    assert msg.endswith(
        f"{FILENAME}: sha256 {actual} does not match the expected {expected} "
        "(the expected hash given for it); the file is corrupt, truncated or was changed: refused"
    )


def test_the_registry_builds_classes_by_name_only() -> None:
    assert {"ecapa_tdnn", "campplus", "edge_campplus", "resnet34", "xvector"} <= set(backbones())
    assert model_spec(OLD_MODEL)[0] == "ecapa_tdnn"  # a hand-written target, checked
    with pytest.raises(ValueError, match="not a registered backbone"):
        build_backbone({"_target_": "os.system", "command": "true"})
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone({"arch": "nope"})
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("ecapa_tdnn")(type("Other", (torch.nn.Module,), {}))


def test_the_encoder_never_emits_nan(tmp_path: Path) -> None:
    enc = small_encoder()
    n = enc.min_samples
    assert n == 512 + 160  # two frames: 32 ms FFT window + one 10 ms hop
    assert np.all(np.isfinite(enc.embed(tone(1.0)[:n])))
    for seconds in (0.005, 0.03, (n - 1) / 16000):
        with pytest.raises(AudioError, match="snippet: .* shorter than the encoder's minimum"):
            enc.embed(tone(1.0)[: int(seconds * 16000)], 16000, name="snippet")
    with torch.no_grad():
        enc.backbone.embedding.bias.fill_(float("inf"))
    with pytest.raises(AudioError, match="snippet: the encoder produced a non-finite embedding"):
        enc.embed(tone(1.0), 16000, name="snippet")


def test_a_short_file_is_a_failure_row_not_a_nan_embedding(tmp_path: Path) -> None:
    from speakerops.eval.embed import embed_files

    enc = small_encoder()
    good = write_wav(tmp_path / "good.wav", tone(1.0))
    short = write_wav(tmp_path / "short.wav", tone(0.03))
    batch = embed_files(enc, [short, good], progress=False)
    assert batch.utt_ids == [str(good)] and np.all(np.isfinite(batch.embeddings))
    assert (
        batch.failures[0][0] == str(short)
        and "shorter than the encoder's minimum" in batch.failures[0][1]
    )


def test_lightning_checkpoints_load_with_weights_only(tmp_path: Path) -> None:
    enc = small_encoder()
    ckpt = tmp_path / "last.ckpt"
    torch.save(
        {"state_dict": enc.backbone.state_dict(), "epoch": 3, "metric": np.float64(1.0)}, ckpt
    )
    blob = read_checkpoint(ckpt)
    assert blob["epoch"] == 3 and torch.equal(
        blob["state_dict"]["stem.0.weight"], enc.backbone.state_dict()["stem.0.weight"]
    )
