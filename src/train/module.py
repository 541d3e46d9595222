"""The Lightning module: fbank -> SpecAugment -> backbone -> AAM-softmax, validation EER."""

from __future__ import annotations

import math

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from speakerops.eval.metrics import eer
from speakerops.eval.scoring import cosine_scores
from speakerops.models.features import Fbank, FeatureConfig
from speakerops.models.losses import AAMSoftmax


class SpeakerModule(pl.LightningModule):
    """Trains a backbone with AAM-softmax; `val_eer` (cosine, calibration trials) each epoch.

    The margin grows linearly from 0 to its target over `margin_warmup_epochs` (fractional
    epochs allowed), then stays: m(t) = m · min(1, t / T_warmup).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: AAMSoftmax,
        features: FeatureConfig,
        spec_augment: nn.Module | None = None,
        lr: float = 2e-3,
        weight_decay: float = 2e-5,
        warmup_fraction: float = 0.1,
        margin_warmup_epochs: float = 1.0,
        backbone_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "head", "spec_augment", "features"])
        self.fbank = Fbank(features)
        self.backbone = backbone
        self.head = head
        self.spec_augment = spec_augment
        self._val_embeddings: list[np.ndarray] = []

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.fbank(wav))

    def _margin_fraction(self) -> float:
        warm = self.hparams.margin_warmup_epochs
        if warm <= 0:
            return 1.0
        steps = max(1, self.trainer.num_training_batches)
        return (self.current_epoch + self.trainer.fit_loop.epoch_loop.batch_idx / steps) / warm

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        wav, labels = batch
        feats = self.fbank(wav)
        if self.spec_augment is not None:
            feats = self.spec_augment(feats)
        self.head.set_margin_fraction(self._margin_fraction())
        loss, acc = self.head(self.backbone(feats), labels)
        self.log_dict(
            {"train_loss": loss, "train_acc": acc, "margin": self.head.margin},
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=len(labels),
        )
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_embeddings = []

    def validation_step(self, wav: torch.Tensor, batch_idx: int) -> None:
        self._val_embeddings.append(self(wav).cpu().numpy())

    def on_validation_epoch_end(self) -> None:
        dm = self.trainer.datamodule
        if not self._val_embeddings or dm is None:
            return
        emb = np.concatenate(self._val_embeddings)
        if len(emb) != len(dm.val_utt_ids):  # sanity-check pass with limited batches
            return
        trials = dm.val_trials
        scores = cosine_scores(dict(zip(dm.val_utt_ids, emb, strict=True)), trials)
        self.log("val_eer", eer(scores, trials["label"].to_numpy()), prog_bar=True)

    def configure_optimizers(self):
        lr = self.hparams.lr
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]  # train.freeze
        groups = [{"params": list(self.head.parameters()), "lr": lr}]
        if backbone:
            groups.insert(0, {"params": backbone, "lr": lr * self.hparams.backbone_lr_scale})
        opt = torch.optim.AdamW(groups, lr=lr, weight_decay=self.hparams.weight_decay)
        return warmup_cosine(opt, self.trainer, self.hparams.warmup_fraction)


def warmup_cosine(opt: torch.optim.Optimizer, trainer: pl.Trainer, warmup_fraction: float) -> dict:
    """Lightning's optimizer config: linear warm-up over `warmup_fraction` of the steps, then
    cosine decay to 0 (stepped every batch)."""
    total = max(1, int(trainer.estimated_stepping_batches))
    warm = max(1, int(warmup_fraction * total))

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
