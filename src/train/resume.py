"""Resuming a training run: from `<checkpoint dir>/last.ckpt`, into the same MLflow run, only
when the config that shapes the weights is the one it was trained with.

Beside the checkpoints: `config_digest` (sha256 of everything but the epoch budget, see
`resume_digest`) and `mlflow_run_id`. Every rank decides before `fit`; rank 0 rewrites both files
at `on_fit_start` (`RankZeroFiles`), once every rank has joined the process group.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_only

from speakerops.core.lineage import params_digest

RESUME_KEYS = ("seed", "features", "augment", "model", "loss", "optim", "data")
COUNTERMEASURE_KEYS = ("countermeasure", "spoof")  # what else shapes a countermeasure's weights


def resume_digest(cfg: DictConfig) -> str:
    """What must match for a checkpoint to be resumed (everything but the epoch budget)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    keys = RESUME_KEYS
    if container.get("task") == "countermeasure":
        keys = (*RESUME_KEYS, *COUNTERMEASURE_KEYS)
    return params_digest({k: container.get(k) for k in keys})


@dataclass(frozen=True)
class ResumePlan:
    """Whether this run resumes `last`, the MLflow run to continue, and the files to write."""

    ckpt_dir: Path
    digest: str
    resume: bool
    run_id: str | None

    @property
    def last(self) -> Path:
        return self.ckpt_dir / "last.ckpt"

    @property
    def ckpt_path(self) -> str | None:
        """`Trainer.fit(ckpt_path=...)`."""
        return str(self.last) if self.resume else None

    def callback(self, run_id: str | None) -> RankZeroFiles:
        """Writes the digest and (rank 0 only has a run) the run id for the next resume."""
        files = {self.ckpt_dir / "config_digest": self.digest}
        if rank_zero_only.rank == 0:  # other ranks have no run (logger.run_id is None there)
            files[self.ckpt_dir / "mlflow_run_id"] = str(run_id)
        return RankZeroFiles(files)


def plan_resume(cfg: DictConfig, ckpt_dir: Path) -> ResumePlan:
    """Resume when `train.resume`, `last.ckpt` exists and its config digest matches."""
    digest = resume_digest(cfg)
    last, digest_file = ckpt_dir / "last.ckpt", ckpt_dir / "config_digest"
    run_id_file = ckpt_dir / "mlflow_run_id"
    resume = bool(cfg.train.resume) and last.is_file()
    if resume and (not digest_file.is_file() or digest_file.read_text().strip() != digest):
        print(
            f"train: {last} was trained with another model/data/optimizer config; starting afresh"
        )
        resume = False
    run_id = run_id_file.read_text().strip() if resume and run_id_file.is_file() else None
    return ResumePlan(ckpt_dir, digest, resume, run_id)


class RankZeroFiles(Callback):
    """Writes `files` (path -> text) on global rank 0 once the process group is up.

    Every rank decides about resuming from the files of the previous run before `fit`; rank 0
    rewrites them only at `on_fit_start`, which under DDP comes after every rank has joined the
    process group, so no rank can read the new digest and resume while rank 0 starts afresh.
    """

    def __init__(self, files: dict[Path, str]) -> None:
        self.files = files

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            for path, text in self.files.items():
                path.write_text(text)
