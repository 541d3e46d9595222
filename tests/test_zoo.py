"""The model zoo: every `conf/model/` option builds through Hydra, has the published size,
embeds variable-length input, learns, and trains one step through the real training path."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from speakerops.core.config import compose, conf_dir
from speakerops.models.campplus import CAMPPlus, segment_means
from speakerops.models.edge import EdgeCAMPPlus
from speakerops.models.resnet import ResNet34
from speakerops.models.zoo import build_backbone

pytestmark = [
    pytest.mark.filterwarnings("ignore:You defined a `validation_step`"),
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated"),
]

# name -> (embedding dim, parameter bounds in millions). References: ECAPA C=512 6.2 M and
# C=1024 14.7 M (Desplanques et al. 2020), ResNet34 6.63 M (WeSpeaker), CAM++ 7.18 M with a
# 512-dim embedding (3D-Speaker; 6.85 M with 192), x-vector 4.35 M with 80-dim input.
ZOO = {
    "ecapa_small": (192, 0.20, 0.30),
    "ecapa512": (192, 6.15, 6.25),
    "ecapa1024": (192, 14.6, 14.7),
    "resnet34": (256, 6.60, 6.66),
    "xvector": (512, 4.30, 4.40),
    "campplus": (192, 6.80, 6.90),
    "edge": (192, 0.85, 0.999),
    "ge2e": (256, 1.46, 1.47),
    "ecapa_speechbrain": (
        192,
        6.15,
        6.25,
    ),  # SpeechBrain's ECAPA_TDNN defaults (C=512)  # resemblyzer's GE2E: 1.42 M with its 40 mels, 1.46 M with 80
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@cache
def built(name: str) -> tuple[torch.nn.Module, dict]:
    cfg = compose([f"model={name}"])
    torch.manual_seed(0)
    return build_backbone(cfg.model), cfg


def test_zoo_covers_every_model_conf() -> None:
    assert {p.stem for p in (conf_dir() / "model").glob("*.yaml")} == set(ZOO)


@pytest.mark.parametrize("name", ZOO)
def test_builds_from_its_conf_with_the_published_size(name: str) -> None:
    model, cfg = built(name)
    dim, lo, hi = ZOO[name]
    n_params = sum(p.numel() for p in model.parameters())
    assert lo * 1e6 <= n_params <= hi * 1e6, f"{name}: {n_params:,} parameters"
    assert model.embedding_dim == dim == cfg.model.embedding_dim
    assert cfg.model.n_mels == cfg.features.n_mels == 80
    if name == "edge":
        assert n_params < 1_000_000


@pytest.mark.parametrize("name", ZOO)
def test_embeds_variable_lengths_deterministically_and_per_utterance(name: str) -> None:
    model, _ = built(name)
    model.eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for frames in (7, 45, 101):
            out = model(torch.randn(1, frames, 80))
            assert out.shape == (1, ZOO[name][0]) and torch.isfinite(out).all()
        feats = torch.randn(2, 64, 80)
        first = model(feats)
        assert torch.equal(first, model(feats))  # eval mode: no dropout, frozen BN statistics
        alone = model(feats[1:2])  # no information flows between the items of a batch
        torch.testing.assert_close(alone[0], first[1], atol=1e-4, rtol=1e-4)
        # different inputs, different embeddings (untrained, so only by a few per cent)
        assert (first[0] - first[1]).norm() > 1e-3 * first[0].norm()


@pytest.mark.parametrize("name", ZOO)
def test_gradients_reach_every_parameter_and_the_input(name: str) -> None:
    model, _ = built(name)
    model.train()
    model.zero_grad()
    torch.manual_seed(2)
    feats = torch.randn(2, 40, 80, requires_grad=True)
    out = model(feats)
    (out * torch.randn_like(out)).sum().backward()  # a random projection (BN-safe)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}.{pname}"
    assert feats.grad.abs().sum() > 0
    first = next(p for p in model.parameters() if p.dim() > 1)
    assert first.grad.abs().sum() > 0  # the bottom layer learns
    model.zero_grad()


@pytest.mark.parametrize("name", ZOO)
def test_one_training_step_through_build_module(name: str) -> None:
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    from speakerops.train.run import build_module

    cfg = compose([f"model={name}"])
    pl.seed_everything(0, verbose=False)
    module = build_module(cfg, num_classes=5)
    assert module.head.weight.shape == (5, ZOO[name][0])
    before = {k: v.detach().clone() for k, v in module.backbone.state_dict().items()}
    wav = torch.randn(4, 8000) * 0.1
    loader = DataLoader(TensorDataset(wav, torch.tensor([0, 1, 2, 3])), batch_size=4)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 1
    assert torch.isfinite(trainer.callback_metrics["train_loss"])
    after = module.backbone.state_dict()
    changed = [
        k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, after[k])
    ]
    assert len(changed) > len(before) // 2, f"{name}: only {changed} changed"


def test_edge_budget_is_enforced() -> None:
    with pytest.raises(ValueError, match="edge budget"):
        EdgeCAMPPlus(growth_rate=32)
    big = EdgeCAMPPlus(growth_rate=32, max_parameters=None)
    assert sum(p.numel() for p in big.parameters()) > 1_000_000


def test_bad_input_is_named() -> None:
    model, _ = built("resnet34")
    with pytest.raises(ValueError, match=r"ResNet34: expected features .*n_mels=80.*\(2, 50, 40\)"):
        model(torch.randn(2, 50, 40))
    with pytest.raises(ValueError, match="block_layers"):
        CAMPPlus(block_layers=(4, 4), block_dilations=(1,))


def test_cam_segment_pooling_matches_avg_pool_ceil_mode() -> None:
    """3D-Speaker's seg_pooling: avg_pool1d(k=s=100, ceil_mode) expanded back to T frames."""
    x = torch.randn(2, 3, 250)
    ref = F.avg_pool1d(x, 100, 100, ceil_mode=True).repeat_interleave(100, dim=-1)[..., :250]
    torch.testing.assert_close(segment_means(x, 100), ref)
    torch.testing.assert_close(
        segment_means(x[..., :40], 100), x[..., :40].mean(-1, True).expand(-1, -1, 40)
    )


def test_frequency_sizes_not_divisible_by_8() -> None:
    """60 mels -> 30 -> 15 -> 8 frequency rows after three stride-2 stages (not 60 // 8)."""
    resnet = ResNet34(n_mels=60, base_channels=4, embedding_dim=16).eval()
    assert resnet.stats_dim == 32 * 8
    cam = CAMPPlus(
        n_mels=60, fcm_channels=4, init_channels=16, growth_rate=8, block_layers=(1, 1, 1)
    )
    assert cam.fcm.out_channels == 4 * 8
    with torch.no_grad():
        assert resnet(torch.randn(1, 33, 60)).shape == (1, 16)
        assert cam.eval()(torch.randn(1, 33, 60)).shape == (1, 192)


def test_zoo_model_survives_the_encoder_file(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from speakerops.models.encoder import SpeakerEncoder
    from speakerops.models.features import FeatureConfig

    model, cfg = built("edge")
    enc = SpeakerEncoder(
        model, FeatureConfig(**cfg.features), OmegaConf.to_container(cfg.model, resolve=True)
    ).eval()
    back = SpeakerEncoder.load(enc.save(tmp_path / "edge.safetensors"))
    wav = torch.randn(1, 16000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(back(wav), enc(wav))
    assert type(back.backbone) is EdgeCAMPPlus


@pytest.mark.parametrize("name", ZOO)
def test_shortest_accepted_input_embeds_finitely_and_shorter_is_refused(name: str) -> None:
    from speakerops.data.audio import AudioError
    from speakerops.models.encoder import SpeakerEncoder
    from speakerops.models.features import FeatureConfig

    model, cfg = built(name)
    enc = SpeakerEncoder(model, FeatureConfig(**cfg.features), cfg.model).eval()
    torch.manual_seed(3)
    wav = torch.randn(1, enc.min_samples) * 0.1
    with torch.no_grad():
        assert torch.isfinite(enc(wav)).all()
        with pytest.raises(AudioError, match="shorter than the encoder's minimum"):
            enc(wav[:, :-1], "clip.wav")
