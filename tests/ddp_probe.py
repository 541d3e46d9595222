"""A Lightning callback that tests/test_ddp.py adds to `speakerops train` from the command line
(`+callbacks.rank_weights._target_=tests.ddp_probe.SaveRankWeights`, with the repository on
PYTHONPATH): every rank saves its parameters when training ends, so the test can compare the
ranks' weights. Safetensors files: tensors only, no pickle."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from safetensors.torch import save_file


class SaveRankWeights(Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        weights = {n: p.detach().cpu().contiguous() for n, p in pl_module.named_parameters()}
        save_file(
            {"global_step": torch.tensor(trainer.global_step), **weights},
            str(self.out_dir / f"rank{trainer.global_rank}.safetensors"),
        )
