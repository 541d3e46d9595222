"""The raw-waveform countermeasure (`countermeasure=rawnet2`, src/models/rawnet.py): its sinc
filters, shapes and determinism, that training lowers its loss on tiny spoof data, its file
round trip, and `train task=countermeasure` + `spoof evaluate` with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from speakerops.cli import main
from speakerops.core.config import compose
from speakerops.data.audio import load_audio
from speakerops.data.spoof.prepare import spoof_prepare
from speakerops.models.countermeasure import Countermeasure
from speakerops.models.encoder import SpeakerEncoder
from speakerops.models.encoder_file import IntegrityError
from speakerops.models.features import FeatureConfig
from speakerops.models.rawnet import RawNet2, SincConv
from speakerops.models.zoo import backbones, build_backbone

from .test_spoof_data import spoof_overrides

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:The '\\w+_dataloader' does not have many workers"),
]

TINY_RAW = ["countermeasure=rawnet2", "countermeasure.model.sinc_filters=8",
            "countermeasure.model.sinc_kernel=65", "countermeasure.model.channels=8",
            "countermeasure.model.blocks=3", "countermeasure.model.gru_hidden=16",
            "countermeasure.model.embedding_dim=8", "countermeasure.loader.batch_size=8",
            "countermeasure.loader.crop_seconds=1.0", "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false"]  # fmt: skip


def _build(seed: int = 0) -> Countermeasure:
    torch.manual_seed(seed)
    cfg = compose(TINY_RAW)
    return Countermeasure.build(cfg.countermeasure.model, cfg.countermeasure.features)


def test_sinc_filters_are_band_passes_at_their_learned_bands() -> None:
    sinc = SincConv(6, 257, 16000)
    g = sinc.filters().squeeze(1).detach()  # [6, 257]
    response = np.abs(np.fft.rfft(g.numpy(), n=4096, axis=1))
    freqs = np.fft.rfftfreq(4096, 1 / 16000)
    low = sinc.low_hz.abs().squeeze(1).detach().numpy()
    high = low + 50.0 + sinc.band_hz.abs().squeeze(1).detach().numpy()
    transition = 3.3 * 16000 / 257  # Hz: the Hamming window's transition band
    for k in range(6):
        band = (freqs > low[k]) & (freqs < high[k])
        if (high[k] - low[k]) > 4 * transition:  # wide enough for the window to reach full gain
            mid = (freqs > low[k] + transition) & (freqs < high[k] - transition)
            assert response[k, mid].mean() == pytest.approx(1.0, abs=0.1)  # unit gain in band
        far = (freqs < low[k] - 2 * transition) | (freqs > high[k] + 2 * transition)
        assert response[k, far].max() < 0.05 * response[k, band].max()  # little outside it
    assert np.all(np.diff(low) > 0)  # mel-spaced: increasing low cut-offs
    with pytest.raises(ValueError, match="sinc_kernel=64: expected an odd number"):
        SincConv(4, 64, 16000)


def test_rawnet2_shapes_gradients_and_determinism() -> None:
    assert backbones()["rawnet2"] is RawNet2
    cm = _build()
    assert cm.kind == "raw" and not cm.front.spectral
    wav = torch.randn(3, 16000) * 0.05
    out = cm(wav)
    assert out.shape == (3,) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in cm.net.parameters())
    assert cm.net["backbone"].sinc.low_hz.grad.abs().sum() > 0  # the first layer learns
    # same seed, same weights, same scores; another seed, other scores
    a, b, c = _build(0).eval(), _build(0).eval(), _build(1).eval()
    x = torch.randn(2, 12000) * 0.05
    assert torch.equal(a(x), b(x)) and not torch.allclose(a(x), c(x))
    # the level of the input is normalised away (rms_normalize)
    assert torch.allclose(a(x), a(10 * x), atol=1e-5)
    with pytest.raises(ValueError, match=f"need >= {cm.min_samples}"):
        cm.score(np.zeros(cm.min_samples - 1, np.float32))
    assert np.isfinite(cm.score(np.random.default_rng(0).normal(0, 0.1, cm.min_samples)))
    with pytest.raises(ValueError, match="features.kind='mfcc'"):
        cfg = compose(TINY_RAW)
        Countermeasure.build(
            cfg.countermeasure.model, {**cfg.countermeasure.features, "kind": "mfcc"}
        )
    with pytest.raises(ValueError, match="model sample_rate=8000 but features sample_rate=16000"):
        Countermeasure.build(
            {**cfg.countermeasure.model, "sample_rate": 8000}, cfg.countermeasure.features
        )


@pytest.fixture
def tiny_spoof(micro_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    over = [*spoof_overrides(micro_manifest), "spoof.workers=1", *TINY_RAW]
    spoof_prepare(compose(over).spoof)
    return over


def test_a_few_training_steps_lower_the_loss_on_tiny_spoof_data(tiny_spoof: list[str]) -> None:
    m = pd.read_csv("data/spoof/manifest.csv")
    train = m[m["split"] == "train"]
    wavs = [load_audio(p, 16000)[0][:16000] for p in train["path"]]
    n = min(len(w) for w in wavs)
    x = torch.from_numpy(np.stack([w[:n] for w in wavs])).float()
    y = torch.tensor((train["label"] == "bonafide").to_numpy(), dtype=torch.float32)
    assert 0 < y.sum() < len(y)
    cm = _build().train()
    opt = torch.optim.Adam(cm.net.parameters(), lr=3e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = loss_fn(cm(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_rawnet2_file_round_trip_gives_identical_scores(tmp_path: Path) -> None:
    cm = _build().eval()
    with torch.no_grad():  # move the BN statistics off their init, so the round trip carries them
        cm.train()(torch.randn(4, 8000) * 0.1)
    cm.eval()
    path = cm.save(tmp_path / "countermeasure.safetensors")
    back = Countermeasure.load(path)
    assert back.kind == "raw" and back.front.config == cm.front.config
    rng = np.random.default_rng(0)
    for n in (cm.min_samples, 16000, 23456):
        x = rng.normal(0, 0.1, n).astype(np.float32)
        assert back.score(x) == cm.score(x)
    assert b"pickle" not in path.read_bytes()[:64]
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with pytest.raises(IntegrityError):
        Countermeasure.load(path)


def test_train_and_spoof_evaluate_with_rawnet2(tiny_spoof: list[str], tmp_path: Path) -> None:
    over = [*tiny_spoof, "task=countermeasure", "trainer.max_epochs=1",
            "countermeasure.augment=true"]  # fmt: skip
    assert main(["train", *over]) == 0
    out = tmp_path / "artifacts" / "countermeasure_rawnet2"
    summary = json.loads((out / "train.json").read_text())
    assert summary["epochs"] == 1 and 0.0 <= summary["best_val_eer"] <= 1.0
    assert (out / "checkpoints" / "last.ckpt").exists()
    assert not (tmp_path / "artifacts" / "countermeasure").exists()  # the LCNN's folder: untouched
    cm = Countermeasure.load(out / "countermeasure.safetensors")
    assert isinstance(cm.net["backbone"], RawNet2)

    enc_cfg = compose(["model.channels=8", "model.attention_channels=4"])
    encoder = SpeakerEncoder(build_backbone(enc_cfg.model), FeatureConfig(**enc_cfg.features),
                             OmegaConf.to_container(enc_cfg.model, resolve=True))  # fmt: skip
    encoder.save(tmp_path / "encoder.safetensors")
    # no cm=: spoof.evaluate.countermeasure follows the selected countermeasure's out_dir
    argv = ["spoof", "evaluate", f"encoder={tmp_path / 'encoder.safetensors'}", *over,
            "evaluate.bootstrap.n=20"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((tmp_path / "artifacts" / "spoof_eval" / "spoof_eval.json").read_text())
    assert set(report["cm"]["eer_per_attack"]) == {"A03", "A05", "A06"}
    for iv in (report["cm"]["eer_unseen"], report["cm"]["min_t_dcf"], report["pair"]["sasv_eer"]):
        assert iv["low"] <= iv["high"] and iv["value"] is not None
    assert not report["failures"]
