"""The `train` stage: compose -> instantiate -> Lightning fit -> encoder file + MLflow run.

Everything is built from the composed config with `hydra.utils.instantiate`: the datamodule
(`data`, `augment`), the module (`model`, `loss`, `features`, `optim`), the callbacks
(`conf/callbacks/`), the logger (`conf/logger/`, MLflow in the store of `paths.registry_dir`)
and the Trainer (`conf/trainer/`).

Outputs in `train.out_dir`: `encoder.safetensors` + its sha256 sidecar (the best checkpoint's backbone with its feature
settings, see `speakerops.models.encoder`), `checkpoints/` (`callbacks.model_checkpoint.dirpath`;
`last.ckpt` for resume, with the MLflow run id and the config digest beside it), `train.json`
(MLflow run id, best validation EER, throughput). A checkpoint is resumed, into the same MLflow
run, only when `train.resume` and its config digest (everything but the epoch budget) matches.

Distributed (DDP, `trainer=ddp_cpu` / `trainer=ddp`): every rank runs `train()`; only global rank
0 creates the MLflow run, writes the run-id / digest files (once all ranks have read them, see
`speakerops.train.resume`), the encoder and `train.json`; other ranks return `{}`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import MLFlowLogger
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from speakerops.core.config import flatten
from speakerops.core.env import offline_env
from speakerops.core.jsonio import sha256_file
from speakerops.core.mlflow import fluent_store
from speakerops.core.paths import artifact_location, tracking_uri
from speakerops.models import encoder_file
from speakerops.models.encoder import FILENAME, SpeakerEncoder
from speakerops.models.features import FeatureConfig
from speakerops.models.legacy import LEGACY_FORMAT, read_checkpoint
from speakerops.models.zoo import build_backbone, model_spec
from speakerops.train.callbacks import Throughput, training_callbacks
from speakerops.train.countermeasure import train_countermeasure
from speakerops.train.datamodule import SpeakerDataModule
from speakerops.train.module import SpeakerModule
from speakerops.train.resume import plan_resume


def validate_on_every_rank(dm: SpeakerDataModule) -> None:
    """Under DDP each rank scores the whole calibration trial list (EER needs both sides of
    every trial; a DistributedSampler would give each rank a shard). A one-replica
    DistributedSampler yields every index in order, and Lightning leaves a loader that already
    has a DistributedSampler as it is."""
    val_set = dm.val_set

    def val_dataloader() -> DataLoader:
        sampler = DistributedSampler(val_set, num_replicas=1, rank=0, shuffle=False)
        return DataLoader(val_set, batch_size=1, num_workers=0, sampler=sampler)

    dm.val_dataloader = val_dataloader  # type: ignore[method-assign]


def build_module(cfg: DictConfig, num_classes: int) -> SpeakerModule:
    """The LightningModule from the composed config (the `train.freeze` prefixes fixed)."""
    backbone = build_backbone(cfg.model)
    freeze(backbone, list(cfg.train.get("freeze") or []))
    head = instantiate(cfg.loss.head, embedding_dim=backbone.embedding_dim, num_classes=num_classes)
    spec = cfg.augment.get("spec_augment")
    return SpeakerModule(
        backbone,
        head,
        FeatureConfig(**cfg.features),
        spec_augment=instantiate(spec) if spec else None,
        margin_warmup_epochs=float(cfg.loss.margin_warmup_epochs),
        **cfg.optim,
    )


def build_datamodule(cfg: DictConfig) -> SpeakerDataModule:
    pipeline = cfg.augment.get("pipeline")
    return SpeakerDataModule(
        prepared_dir=cfg.data.prepared_dir,
        sample_rate=int(cfg.features.sample_rate),
        seed=int(cfg.seed),
        augment=instantiate(pipeline) if pipeline else None,
        **cfg.data.loader,
    )


def freeze(backbone: torch.nn.Module, prefixes: list[str]) -> list[str]:
    """Fix the backbone parameters named by `prefixes` (`requires_grad=False`); a prefix that
    names no parameter is refused. Returns the frozen names."""
    names = [name for name, _ in backbone.named_parameters()]
    for prefix in prefixes:
        if not any(n.startswith(prefix) for n in names):
            raise ValueError(
                f"train.freeze: {prefix!r} names no parameter of the backbone "
                f"({', '.join(sorted({n.split('.')[0] for n in names}))} ...)"
            )
    frozen = [n for n in names if any(n.startswith(p) for p in prefixes)]
    for name, param in backbone.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    return frozen


def load_initial_weights(module: SpeakerModule, path: str | Path, model_cfg: dict) -> str:
    """Start from trained weights (fine-tuning): a Lightning checkpoint (backbone + AAM head,
    same training speakers, read with `weights_only=True`) or an encoder file (backbone only,
    sha256-checked against its sidecar). Returns the file's sha256."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: train.init_from not found (train the base model first)")
    if path.suffix == encoder_file.SUFFIX:
        content = encoder_file.read(path)
        if model_spec(content.model_cfg) != model_spec(model_cfg):  # the architecture
            raise ValueError(
                f"{path}: encoder of model {content.model_cfg}, this run configures {model_cfg}"
            )
        module.backbone.load_state_dict(content.state_dict)
        return sha256_file(path)
    blob = read_checkpoint(path)
    if isinstance(blob, dict) and blob.get("format") == LEGACY_FORMAT:
        raise ValueError(
            f"{path}: an old-format encoder; convert it with `speakerops models convert {path} "
            f"<new>{encoder_file.SUFFIX}` and fine-tune from the new file"
        )
    if isinstance(blob, dict) and isinstance(blob.get("state_dict"), dict):
        head = blob["state_dict"].get("head.weight")
        if head is not None and head.shape != module.head.weight.shape:
            raise ValueError(
                f"{path}: AAM head {tuple(head.shape)} vs this run {tuple(module.head.weight.shape)}: "
                "fine-tune the same model on the same training speakers"
            )
        try:
            module.load_state_dict(blob["state_dict"])
        except RuntimeError as exc:
            raise ValueError(f"{path}: not a checkpoint of this model: {exc}") from None
    else:
        raise ValueError(f"{path}: neither a Lightning checkpoint nor a speakerops encoder")
    return sha256_file(path)


def train(
    cfg: DictConfig,
    extra_callbacks: list[Callback] | None = None,
    tags: dict[str, str] | None = None,
) -> dict:
    """Fit the configured model; returns the summary written to `train.json` ({} on ranks > 0).

    Built from the config: the datamodule (`data`, `augment`), the module (`model`, `loss`,
    `features`, `optim`), the callbacks (`callbacks`), the logger (`logger`) and the Trainer
    (`trainer`). `extra_callbacks` run after the configured ones (a sweep's pruning); `tags` are
    set on a new MLflow run (a sweep passes `mlflow.parentRunId` to nest the run).
    """
    if cfg.get("task") == "countermeasure":  # conf/task/countermeasure.yaml
        return train_countermeasure(cfg, extra_callbacks, tags)
    model_spec(cfg.model)  # an unknown model.arch is refused before any data is read or written
    # Lightning's MLFlowLogger sets (and exports) MLflow's global tracking URI: scoped here
    with fluent_store(tracking_uri(cfg.paths.registry_dir)):
        return _fit(cfg, extra_callbacks, tags)


def _fit(cfg: DictConfig, extra_callbacks: list[Callback] | None, tags: dict[str, str] | None):
    pl.seed_everything(int(cfg.seed), workers=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(cfg.train.out_dir)

    callbacks, checkpoint, meter, ckpt_dir = training_callbacks(cfg.get("callbacks"))
    dm = build_datamodule(cfg)
    dm.setup("fit")
    module = build_module(cfg, dm.num_classes)

    offline_env()
    plan = plan_resume(cfg, ckpt_dir)
    logger = instantiate(
        cfg.logger,
        tracking_uri=tracking_uri(cfg.paths.registry_dir),
        artifact_location=artifact_location(cfg.paths.registry_dir),
        run_id=plan.run_id,
        tags=tags,
    )
    if not plan.resume:
        logger.log_hyperparams(flatten(cfg))
        logger.experiment.set_tag(logger.run_id, "val_trials_sha256", dm.val_trials_sha256)
        if cfg.train.get("init_from"):
            model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
            sha = load_initial_weights(module, cfg.train.init_from, model_cfg)
            logger.experiment.set_tag(logger.run_id, "init_from", str(cfg.train.init_from))
            logger.experiment.set_tag(logger.run_id, "init_from_sha256", sha)

    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        logger=logger,
        callbacks=[plan.callback(logger.run_id), *callbacks, *(extra_callbacks or [])],
    )
    if trainer.world_size > 1:
        validate_on_every_rank(dm)
    trainer.fit(module, datamodule=dm, ckpt_path=plan.ckpt_path, weights_only=True)
    if not trainer.is_global_zero:
        return {}
    return finish(cfg, out, dm, module, trainer, logger, checkpoint, meter)


def finish(
    cfg: DictConfig,
    out: Path,
    dm: SpeakerDataModule,
    module: SpeakerModule,
    trainer: pl.Trainer,
    logger: MLFlowLogger,
    checkpoint: ModelCheckpoint,
    meter: Throughput,
) -> dict:
    """Rank 0 after `fit`: the best checkpoint's backbone as `encoder.safetensors`, its MLflow
    artifacts and throughput metric, and `train.json`."""
    last = Path(checkpoint.dirpath) / "last.ckpt"
    best = checkpoint.best_model_path or str(last)
    state = read_checkpoint(best)["state_dict"]
    module.load_state_dict(state)
    encoder = SpeakerEncoder(
        module.backbone,
        FeatureConfig(**cfg.features),
        OmegaConf.to_container(cfg.model, resolve=True),
        # a count, not the ids: speaker ids are never stored in plaintext (issue #10)
        extras={"n_train_speakers": len(dm.speakers)},
    )
    encoder.save(out / FILENAME)
    best_eer = checkpoint.best_model_score
    summary = {
        "run_id": logger.run_id,
        "best_val_eer": float(best_eer) if best_eer is not None else None,
        "epochs": int(trainer.current_epoch),
        # rank 0 counts its own shard; the shards are equal, so the job's rate is world_size x
        "segments_per_second": round(meter.segments_per_second * trainer.world_size, 2),
        "world_size": int(trainer.world_size),
        "global_step": int(trainer.global_step),
        "num_parameters": int(sum(p.numel() for p in module.backbone.parameters())),
        "val_trials_sha256": dm.val_trials_sha256,
    }
    client = logger.experiment
    client.log_metric(logger.run_id, "segments_per_second", summary["segments_per_second"])
    client.log_artifact(logger.run_id, str(out / FILENAME), "encoder")
    client.log_artifact(logger.run_id, str(encoder_file.sidecar(out / FILENAME)), "encoder")
    client.log_artifact(logger.run_id, best, "checkpoints")
    (out / "train.json").write_text(json.dumps(summary, indent=2))
    return summary
