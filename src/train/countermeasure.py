"""`speakerops train task=countermeasure`: the countermeasure through the train stage's own path.

The same Hydra composition, Lightning Trainer (`conf/trainer/`), callbacks (`conf/callbacks/`:
best-by-`val_eer` and `last.ckpt`, throughput), MLflow logger (`conf/logger/`), resume
(`speakerops.train.resume`) and, with `countermeasure.augment`, the same augmentation pipeline
(`conf/augment/`) as the speaker model. What differs:

* data: the `spoof prepare` manifest (`spoof.out_dir`): random crops of the `train` split,
  label 1 = bona fide; validation on every `calibration` item (its own attacks, seen in
  training), `val_eer` = the CM EER (:func:`speakerops.eval.spoof_metrics.cm_eer`);
* model: :class:`speakerops.models.countermeasure.Countermeasure` (`countermeasure.model`,
  `countermeasure.features`: LFCC + LCNN, or `countermeasure=rawnet2`: the raw waveform), loss: binary cross-entropy on the bona fide logit, the bona fide
  class weighted by n_spoof / n_bonafide (balanced);
* outputs in `countermeasure.out_dir` (`<artifacts>/countermeasure`; the run's `train.out_dir`,
  so the checkpoint callback writes there too, whatever an experiment set for the speaker model):
  `countermeasure.safetensors` + sha256 sidecar, `checkpoints/`, `train.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import Callback
from torch.utils.data import DataLoader, Dataset, get_worker_info

from speakerops.core.config import flatten
from speakerops.core.env import offline_env
from speakerops.core.jsonio import sha256_file
from speakerops.core.mlflow import fluent_store
from speakerops.core.paths import artifact_location, tracking_uri
from speakerops.data.crop import random_crop
from speakerops.data.manifest import read_manifest
from speakerops.data.spoof.protocol import read_cm_protocol
from speakerops.eval.spoof_metrics import cm_eer
from speakerops.models import encoder_file
from speakerops.models.countermeasure import FILENAME, Countermeasure
from speakerops.models.legacy import read_checkpoint
from speakerops.train.callbacks import training_callbacks
from speakerops.train.datamodule import UtteranceDataset, WaveformStore
from speakerops.train.module import warmup_cosine
from speakerops.train.resume import plan_resume


class LabelledCrops(Dataset):
    """(augmented random crop, label) pairs, ``crops_per_utterance`` per item and epoch."""

    def __init__(self, store: WaveformStore, labels: np.ndarray, crop_samples: int, augment,
                 seed: int, crops_per_utterance: int) -> None:  # fmt: skip
        self.store, self.labels, self.crop_samples = store, labels, crop_samples
        self.augment, self.seed, self.crops = augment, seed, crops_per_utterance
        self.epoch = 0
        self._generator: torch.Generator | None = None

    def __len__(self) -> int:
        return len(self.labels) * self.crops

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._generator is None:
            info = get_worker_info()
            worker = info.id if info is not None else 0
            self._generator = torch.Generator().manual_seed(
                self.seed * 1000 + worker + 7919 * self.epoch
            )
        i %= len(self.labels)
        wav = random_crop(torch.from_numpy(self.store[i]), self.crop_samples, self._generator)
        if self.augment is not None:
            wav, _ = self.augment(wav, self._generator)  # speed perturbation keeps its label
        return wav.float(), torch.tensor(float(self.labels[i]))


class CountermeasureData(pl.LightningDataModule):
    """Crops of the `train` split; every `calibration` item (whole) for `val_eer`."""

    def __init__(self, spoof_dir: str, sample_rate: int, seed: int, augment, crop_seconds: float,
                 batch_size: int, crops_per_utterance: int, preload: bool) -> None:  # fmt: skip
        super().__init__()
        self.dir, self.sample_rate, self.seed, self.augment = (
            Path(spoof_dir),
            sample_rate,
            seed,
            augment,
        )
        self.crop_seconds, self.batch_size = crop_seconds, batch_size
        self.crops_per_utterance, self.preload = crops_per_utterance, preload
        self.train_set: LabelledCrops | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        m = read_manifest(self.dir / "manifest.csv")
        train = m[m["split"] == "train"].reset_index(drop=True)
        y = (train["label"] == "bonafide").to_numpy()
        if y.all() or not y.any():
            raise ValueError(
                f"{self.dir}/manifest.csv: the train split needs bona fide and spoofed items"
            )
        self.pos_weight = float((~y).sum() / y.sum())
        store = WaveformStore(train["path"].tolist(), self.sample_rate, self.preload)
        self.train_set = LabelledCrops(store, y.astype(np.float32), int(self.crop_seconds * self.sample_rate),
                                       self.augment, self.seed, self.crops_per_utterance)  # fmt: skip
        protocol, self.val_sha256 = read_cm_protocol(self.dir / "cm_calibration.csv")
        self.val_labels = protocol["label"].to_numpy().astype(bool)
        paths = m.set_index("utt_id").loc[protocol["utt_id"], "path"].tolist()
        self.val_set = WaveformStore(paths, self.sample_rate, self.preload)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        self.train_set.epoch += 1
        self.train_set._generator = None
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True,
                          drop_last=len(self.train_set) > self.batch_size,
                          generator=torch.Generator().manual_seed(self.seed + self.train_set.epoch))  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        return DataLoader(UtteranceDataset(self.val_set), batch_size=1)


class CountermeasureModule(pl.LightningModule):
    """Binary cross-entropy on the bona fide logit; `val_eer` = CM EER on calibration."""

    def __init__(self, cm: Countermeasure, pos_weight: float, spec_augment: torch.nn.Module | None,
                 lr: float, weight_decay: float, warmup_fraction: float) -> None:  # fmt: skip
        super().__init__()
        self.save_hyperparameters(ignore=["cm", "spec_augment"])
        self.cm, self.spec_augment = cm, spec_augment
        self.loss = torch.nn.BCEWithLogitsLoss(reduction="none")
        self._val: list[float] = []

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        wav, y = batch
        feats = self.cm.front(wav)
        if self.spec_augment is not None:
            feats = self.spec_augment(feats)
        logits = self.cm.net["head"](self.cm.net["backbone"](feats)).squeeze(-1)
        # balanced: each bona fide item weighs n_spoof / n_bonafide
        weight = torch.where(y > 0.5, self.hparams.pos_weight, 1.0)
        loss = (self.loss(logits, y) * weight).sum() / weight.sum()
        acc = ((logits > 0).float() == y).float().mean()
        self.log_dict({"train_loss": loss, "train_acc": acc}, prog_bar=True, on_step=True,
                      on_epoch=True, batch_size=len(y))  # fmt: skip
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, wav: torch.Tensor, batch_idx: int) -> None:
        self._val.append(float(self.cm(wav).item()))

    def on_validation_epoch_end(self) -> None:
        dm = self.trainer.datamodule
        if dm is None or len(self._val) != len(dm.val_labels):  # a limited sanity pass
            return
        self.log("val_eer", cm_eer(np.array(self._val), dm.val_labels), prog_bar=True)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.cm.net.parameters(), lr=self.hparams.lr,
                                weight_decay=self.hparams.weight_decay)  # fmt: skip
        return warmup_cosine(opt, self.trainer, self.hparams.warmup_fraction)


def train_countermeasure(
    cfg: DictConfig,
    extra_callbacks: list[Callback] | None = None,
    tags: dict[str, str] | None = None,
) -> dict:
    """Fit the configured countermeasure; returns the summary written to `train.json`."""
    cfg = cfg.copy()
    with open_dict(cfg):  # its own folder, whatever an experiment set for the speaker model
        cfg.train.out_dir = cfg.countermeasure.out_dir
    cm_cfg = cfg.countermeasure
    model_cfg = OmegaConf.to_container(cm_cfg.model, resolve=True)
    features = OmegaConf.to_container(cm_cfg.features, resolve=True)
    cm = Countermeasure.build(model_cfg, features)  # a bad model config is refused before any I/O
    with fluent_store(tracking_uri(cfg.paths.registry_dir)):
        pl.seed_everything(int(cfg.seed), workers=True)
        out = Path(cfg.train.out_dir)
        callbacks, checkpoint, meter, ckpt_dir = training_callbacks(cfg.get("callbacks"))
        pipeline = cfg.augment.get("pipeline") if cm_cfg.augment else None
        loader = cm_cfg.loader
        dm = CountermeasureData(cfg.spoof.out_dir, cm.sample_rate, int(cfg.seed),
                                instantiate(pipeline) if pipeline else None, float(loader.crop_seconds),
                                int(loader.batch_size), int(loader.crops_per_utterance), bool(loader.preload))  # fmt: skip
        dm.setup("fit")
        # SpecAugment masks a spectral front end's output; a raw front end gets the waveform pipeline only
        spec = cfg.augment.get("spec_augment") if cm_cfg.augment and cm.front.spectral else None
        optim = cfg.optim  # the countermeasure trains from scratch: one learning rate
        module = CountermeasureModule(
            cm,
            dm.pos_weight,
            instantiate(spec) if spec else None,
            float(optim.lr),
            float(optim.weight_decay),
            float(optim.warmup_fraction),
        )
        offline_env()
        plan = plan_resume(cfg, ckpt_dir)
        logger = instantiate(cfg.logger, tracking_uri=tracking_uri(cfg.paths.registry_dir),
                             artifact_location=artifact_location(cfg.paths.registry_dir),
                             run_id=plan.run_id, tags=tags)  # fmt: skip
        if not plan.resume:
            logger.log_hyperparams(flatten(cfg))
            logger.experiment.set_tag(logger.run_id, "task", "countermeasure")
            logger.experiment.set_tag(logger.run_id, "val_trials_sha256", dm.val_sha256)
        trainer: pl.Trainer = instantiate(
            cfg.trainer, logger=logger,
            callbacks=[plan.callback(logger.run_id), *callbacks, *(extra_callbacks or [])],
        )  # fmt: skip
        trainer.fit(module, datamodule=dm, ckpt_path=plan.ckpt_path, weights_only=True)
        best = checkpoint.best_model_path or str(ckpt_dir / "last.ckpt")
        module.load_state_dict(read_checkpoint(best)["state_dict"])
        path = cm.save(out / FILENAME)
        best_eer = checkpoint.best_model_score
        summary = {
            "task": "countermeasure",
            "run_id": logger.run_id,
            "best_val_eer": float(best_eer) if best_eer is not None else None,
            "epochs": int(trainer.current_epoch),
            "global_step": int(trainer.global_step),
            "segments_per_second": round(meter.segments_per_second, 2),
            "num_parameters": int(sum(p.numel() for p in cm.net.parameters())),
            "val_trials_sha256": dm.val_sha256,
            "countermeasure_sha256": sha256_file(path),
        }
        client = logger.experiment
        client.log_artifact(logger.run_id, str(path), "countermeasure")
        client.log_artifact(logger.run_id, str(encoder_file.sidecar(path)), "countermeasure")
        client.log_artifact(logger.run_id, best, "checkpoints")
        (out / "train.json").write_text(json.dumps(summary, indent=2))
        return summary
