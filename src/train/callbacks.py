"""The train stage's own Lightning callbacks (`Throughput`, `EpochLog`), and building the
configured ones (`conf/callbacks/`); the resume machinery's callback is in
`speakerops.train.resume`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, ModelCheckpoint


class Throughput(Callback):
    """Training segments per second: wall time from each batch's end (or the epoch start) to
    the next batch's end, so data loading and augmentation count, validation does not."""

    def __init__(self) -> None:
        self.segments = 0
        self.seconds = 0.0
        self._last = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        self.seconds += now - self._last
        self._last = now
        self.segments += len(batch[1])

    @property
    def segments_per_second(self) -> float:
        return self.segments / self.seconds if self.seconds else 0.0


class EpochLog(Callback):
    """One line per epoch, after its validation, for a log file: a progress bar writing to a
    file, a CI job or `nohup` shows nothing readable until the run ends. Written to stderr only
    when it is not a terminal (``only_without_terminal``; where it is, the bar shows the same):
    ``epoch 3/14  step 39  train_acc 0.412  train_loss 8.214  val_eer 0.2013  (42.1 s)``."""

    def __init__(self, only_without_terminal: bool = True, stream: TextIO | None = None) -> None:
        self.only_without_terminal, self.stream = only_without_terminal, stream
        self._t0 = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        out = self.stream or sys.stderr
        if not trainer.is_global_zero or (self.only_without_terminal and out.isatty()):
            return
        metrics = {
            name.removesuffix("_epoch"): float(value)
            for name, value in trainer.callback_metrics.items()
            if not name.endswith("_step") and getattr(value, "numel", lambda: 1)() == 1
        }
        shown = "  ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))
        print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  step {trainer.global_step}"
              f"  {shown}  ({time.perf_counter() - self._t0:.1f} s)", file=out, flush=True)  # fmt: skip


def instantiate_callbacks(node: DictConfig | None) -> list[Callback]:
    """The callbacks of the `callbacks` config node, in its order; a null entry is skipped."""
    callbacks: list[Callback] = []
    for name, spec in (node or {}).items():
        if spec is None:
            continue
        if not isinstance(spec, DictConfig) or "_target_" not in spec:
            raise ValueError(
                f"callbacks.{name}: expected a node with a _target_ (a Callback class)"
            )
        callback = instantiate(spec)
        if not isinstance(callback, Callback):
            raise ValueError(f"callbacks.{name}: {spec._target_} is not a Lightning Callback")
        callbacks.append(callback)
    return callbacks


def one_of(callbacks: list[Callback], kind: type, key: str) -> Callback:
    """The one callback of type `kind`; a clear error naming the config key when it is absent."""
    found = [c for c in callbacks if isinstance(c, kind)]
    if len(found) != 1:
        raise ValueError(
            f"callbacks: the train stage needs exactly one {kind.__name__} "
            f"(conf/callbacks/, {key}), found {len(found)}"
        )
    return found[0]


def training_callbacks(
    node: DictConfig | None,
) -> tuple[list[Callback], ModelCheckpoint, Throughput, Path]:
    """The configured callbacks (conf ``callbacks``), the one checkpoint and throughput
    callbacks among them, and the checkpoint folder (created): what every training run needs."""
    callbacks = instantiate_callbacks(node)
    checkpoint = one_of(callbacks, ModelCheckpoint, "callbacks.model_checkpoint")
    meter = one_of(callbacks, Throughput, "callbacks.throughput")
    ckpt_dir = Path(checkpoint.dirpath)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    return callbacks, checkpoint, meter, ckpt_dir
