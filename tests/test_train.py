"""Training: Hydra composition, checkpoints with resume into the same MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from speakerops.core.config import compose, write_params
from speakerops.data.prepare import prepare
from speakerops.models.zoo import build_backbone
from speakerops.train.run import train

from .conftest import MICRO_CORPUS

MICRO = [
    *MICRO_CORPUS,
    "model.channels=16",
    "model.attention_channels=8",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


@pytest.fixture
def micro_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    prepare(compose(MICRO).data, progress=False)
    return tmp_path


def test_every_config_group_option_composes() -> None:
    from speakerops.core.config import conf_dir

    seen = set()
    for group in ("data", "model", "augment", "loss", "trainer", "features"):
        for option in sorted((conf_dir() / group).glob("*.yaml")):
            extra = ["data.root=/x"] if group == "data" and option.stem != "synthetic" else []
            cfg = compose([f"{group}={option.stem}", *extra])
            assert cfg[group] is not None, option
            check_option_builds(group, option.stem, cfg)
            seen.add(group)
    assert len(seen) == 6


def check_option_builds(group: str, name: str, cfg) -> None:
    """Build what the option configures, as training does, and check one property of it."""
    import numpy as np
    import yaml
    from hydra.utils import instantiate

    from speakerops.core.config import conf_dir
    from speakerops.data.corpora import list_corpus
    from speakerops.data.listing import FileListing
    from speakerops.models.features import Fbank, FeatureConfig

    where = f"{group}={name}"
    if group == "data":
        # a corpus option (it sets `corpus:`) selects its own adapter; a recipe's data option
        # (e.g. librispeech_small: defaults [librispeech], no `corpus:`) keeps its base's
        option = yaml.safe_load((conf_dir() / "data" / f"{name}.yaml").read_text()) or {}
        bases = [d for d in option.get("defaults", []) if isinstance(d, str) and d != "_self_"]
        assert cfg.data.corpus == (name if "corpus" in option else bases[0]), where
        if name != "synthetic":
            with pytest.raises(FileNotFoundError, match="/x"):
                list_corpus(cfg.data.corpus, cfg.data.root, FileListing(cfg.audio.extensions))
    elif group == "model":
        backbone = build_backbone(cfg.model)  # the model zoo's registry, as training builds it
        assert backbone.embedding_dim == cfg.model.embedding_dim, where
    elif group == "augment":
        pipeline = instantiate(cfg.augment.pipeline)
        wav = torch.randn(16000, generator=torch.Generator().manual_seed(0)) * 0.1
        out, speed_index = pipeline(wav, torch.Generator().manual_seed(1))
        assert out.shape == wav.shape and torch.isfinite(out).all(), where
        assert 0 <= speed_index < pipeline.num_label_copies, where
        if name == "none":
            assert torch.equal(out, wav) and pipeline.num_label_copies == 1, where
        assert isinstance(instantiate(cfg.augment.spec_augment), torch.nn.Module), where
    elif group == "loss":
        head = instantiate(cfg.loss.head, embedding_dim=8, num_classes=5)
        assert head.margin == cfg.loss.head.margin and head.weight.shape == (5, 8), where
    elif group == "trainer":
        # GPU and multi-process trainers are not started here: their strategy is checked
        strategy = cfg.trainer.get("strategy")
        if strategy is None:
            trainer = instantiate(cfg.trainer, logger=False, default_root_dir="/nonexistent")
            assert trainer.num_devices == cfg.trainer.devices, where
        else:
            built = instantiate(strategy)
            assert built._process_group_backend == strategy.process_group_backend, where
            assert cfg.trainer.devices >= 2, where
    else:  # features
        frames = Fbank(FeatureConfig(**cfg.features))(
            torch.from_numpy(np.ones(16000, np.float32))[None]
        )
        assert frames.shape[-1] == cfg.features.n_mels, where


def test_params_yaml_in_git_matches_conf(tmp_path: Path) -> None:
    """params.yaml is composed from conf/, never edited by hand: they must agree."""
    from omegaconf import OmegaConf

    from speakerops.core.config import conf_dir

    written = write_params(compose(), tmp_path / "params.yaml")
    committed = conf_dir().parent / "params.yaml"
    assert OmegaConf.load(written) == OmegaConf.load(committed), (
        "run `speakerops params` and commit params.yaml"
    )


def test_callbacks_and_logger_come_from_config(tmp_path: Path, monkeypatch) -> None:
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
    from pytorch_lightning.loggers import MLFlowLogger

    from speakerops.train.callbacks import EpochLog, Throughput, instantiate_callbacks

    monkeypatch.chdir(tmp_path)
    cfg = compose(["train.out_dir=artifacts/t", "mlflow.experiment=exp-x"])
    checkpoint, meter, epoch_log = instantiate_callbacks(cfg.callbacks)
    assert isinstance(checkpoint, ModelCheckpoint) and isinstance(meter, Throughput)
    assert isinstance(epoch_log, EpochLog) and epoch_log.only_without_terminal
    assert Path(checkpoint.dirpath) == tmp_path / "artifacts/t/checkpoints"
    assert checkpoint.monitor == "val_eer" and checkpoint.save_last
    extra = compose(
        ["+callbacks.lr._target_=pytorch_lightning.callbacks.LearningRateMonitor"]
    ).callbacks
    assert isinstance(instantiate_callbacks(extra)[-1], LearningRateMonitor)
    logger = instantiate(cfg.logger, tracking_uri=f"sqlite:///{tmp_path}/m.db")
    assert isinstance(logger, MLFlowLogger)
    assert logger.experiment.get_experiment(logger.experiment_id).name == "exp-x"
    assert cfg.trainer.default_root_dir == "artifacts/t"
    # the train stage needs its checkpoint (resume) and throughput callbacks: named, up front
    with pytest.raises(ValueError, match="callbacks.throughput"):
        train(compose(["callbacks.throughput=null"]))
    assert not (tmp_path / "artifacts").exists()


@pytest.mark.slow
def test_train_resumes_from_last_checkpoint_in_the_same_run(micro_project: Path) -> None:
    first = train(compose([*MICRO, "trainer.max_epochs=1"]))
    ckpt = micro_project / "artifacts/train/checkpoints/last.ckpt"
    assert ckpt.is_file() and first["epochs"] == 1
    assert 0.0 <= first["best_val_eer"] <= 1.0 and first["segments_per_second"] > 0
    second = train(compose([*MICRO, "trainer.max_epochs=2"]))
    assert second["run_id"] == first["run_id"] and second["epochs"] == 2
    # resumed, not restarted: the second epoch's steps are added to the first's
    assert second["global_step"] == 2 * first["global_step"] > 0
    from speakerops.core.mlflow import client

    history = client(compose(MICRO).paths.registry_dir).get_metric_history(
        first["run_id"], "val_eer"
    )
    assert len(history) == 2  # one validation per epoch, both in the one run
    epoch1, epoch2 = sorted(history, key=lambda m: m.step)
    assert epoch1.step < epoch2.step
    # the reported best is the logged validation EER: epoch 1's after the first run; after
    # the resume the better of both epochs (the checkpoint's best score resumes with it)
    assert first["best_val_eer"] == pytest.approx(epoch1.value, abs=1e-6)
    assert second["best_val_eer"] == pytest.approx(min(epoch1.value, epoch2.value), abs=1e-6)
    # a different model cannot resume that checkpoint: it starts afresh in a new run
    third = train(compose([*MICRO, "trainer.max_epochs=1", "model.channels=24"]))
    assert third["run_id"] != first["run_id"] and third["epochs"] == 1
    assert (
        json.loads((micro_project / "artifacts/train/train.json").read_text())["run_id"]
        == third["run_id"]
    )


@pytest.mark.slow
def test_init_from_fine_tunes_from_trained_weights(micro_project: Path) -> None:
    from speakerops.models.encoder import SpeakerEncoder

    train(compose([*MICRO, "trainer.max_epochs=1"]))
    base = micro_project / "artifacts/train/encoder.safetensors"
    before = SpeakerEncoder.load(base).backbone.state_dict()
    tuned = train(
        compose(
            [
                *MICRO,
                "trainer.max_epochs=1",
                f"train.init_from={base}",
                "train.out_dir=artifacts/ft",
                "optim.lr=1e-9",
            ]
        )
    )
    after = SpeakerEncoder.load(
        micro_project / "artifacts/ft/encoder.safetensors"
    ).backbone.state_dict()
    # with a vanishing learning rate the fine-tuned weights stay at the initial ones
    for key in ("stem.0.weight", "embedding.weight"):
        assert torch.allclose(before[key], after[key], atol=1e-5)
    from speakerops.core.mlflow import client

    assert client(compose(MICRO).paths.registry_dir).get_run(tuned["run_id"]).data.tags[
        "init_from"
    ] == str(base)
    with pytest.raises(ValueError, match="encoder of model"):
        train(
            compose(
                [
                    *MICRO,
                    "trainer.max_epochs=1",
                    f"train.init_from={base}",
                    "model.channels=24",
                    "train.out_dir=artifacts/x",
                ]
            )
        )
