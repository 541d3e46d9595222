"""The sweep's Lightning callbacks: pruning a trial on its validation metric, and the minDCF
objective.

After every validation `OptunaPruning` reports `sweep.metric` to the trial
(`trial.report(value, epoch)`) and the configured pruner decides (`trial.should_prune()`).
`val_eer` is logged by the module; `val_min_dcf_<p>` (minDCF at P_target p) by
`ValidationMinDCF`, which `metric_callbacks` adds when the metric asks for it.

Why not `optuna_integration.PyTorchLightningPruningCallback`: optuna-integration 5.0 imports
`lightning.pytorch` (the `lightning` package), absent here, and its callback subclasses
`lightning.pytorch.Callback`, not this project's `pytorch_lightning.Callback`. `OptunaPruning`
does what it does for one process (report at `on_validation_end`, skip the sanity check, raise
`TrialPruned`), and also stops a diverged trial (non-finite loss or embeddings).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import optuna
import torch
from pytorch_lightning.callbacks import Callback

from speakerops.eval.metrics import min_dcf
from speakerops.eval.scoring import cosine_scores


class Diverged(RuntimeError):
    """Training produced a non-finite loss or embeddings and the pruner did not prune it."""


class _ForwardHookCallback(Callback):
    """A callback that holds one forward hook on the module and always removes it."""

    _hook = None

    def _remove_hook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._remove_hook()


class OptunaPruning(_ForwardHookCallback):
    """Reports `monitor` after each validation to the Optuna trial and prunes on its pruner's
    word; the pytorch_lightning equivalent of optuna-integration's
    `PyTorchLightningPruningCallback` (single process).

    A diverged trial (a non-finite training loss, or a non-finite embedding during validation,
    seen by a forward hook before the metric is computed) is reported as NaN, which Optuna's
    pruners prune once they have started: `TrialPruned` when the pruner agrees, else `Diverged`
    (the trial FAILs). `values` keeps {epoch: value}; `best()` is the objective (min or max over
    epochs).
    """

    def __init__(self, trial, monitor: str, direction: str = "minimize") -> None:
        super().__init__()
        self.trial, self.monitor, self.direction = trial, monitor, direction
        self.values: dict[int, float] = {}
        self.run_id: str | None = None
        self.stopped: str | None = None
        self._hook = None

    def on_fit_start(self, trainer, pl_module) -> None:
        logger = trainer.logger
        self.run_id = getattr(logger, "run_id", None)

    def _stop(self, epoch: int, why: str) -> None:
        self.trial.report(math.nan, step=epoch)
        if self.trial.should_prune():
            self.stopped = f"pruned at epoch {epoch}: {why}"
            raise optuna.TrialPruned(self.stopped)
        self.stopped = f"diverged at epoch {epoch}: {why}"
        raise Diverged(self.stopped)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all()):
            self._stop(trainer.current_epoch, f"training loss {float(loss)} at batch {batch_idx}")

    def on_validation_start(self, trainer, pl_module) -> None:
        def check(module, inputs, output) -> None:
            if isinstance(output, torch.Tensor) and not bool(torch.isfinite(output).all()):
                self._stop(trainer.current_epoch, "non-finite embeddings at validation")

        self._hook = pl_module.register_forward_hook(check)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._remove_hook()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(
                f"sweep.metric {self.monitor!r} was not logged; logged metrics: "
                f"{', '.join(sorted(trainer.callback_metrics)) or 'none'}"
            )
        epoch = int(trainer.current_epoch)
        self.values[epoch] = float(value)
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            self.stopped = f"pruned at epoch {epoch}: {self.monitor}={float(value):.4f}"
            raise optuna.TrialPruned(self.stopped)

    def best(self) -> float | None:
        finite = [v for v in self.values.values() if math.isfinite(v)]
        if not finite:
            return None
        return min(finite) if self.direction == "minimize" else max(finite)


MIN_DCF_PREFIX = "val_min_dcf_"


class ValidationMinDCF(_ForwardHookCallback):
    """Logs `val_min_dcf_<p_target>` each validation: minDCF (`speakerops.eval.metrics.min_dcf`,
    C_miss = C_fa = 1) of the cosine scores of the validation trial list, from the embeddings the
    module returns in validation (a forward hook; batches of one utterance in `val_utt_ids`
    order, as the module assumes). Added to trials whose `sweep.metric` is `val_min_dcf_<p>`
    (the module itself logs val_eer only).
    """

    def __init__(self, p_target: float) -> None:
        super().__init__()
        self.p_target = float(p_target)
        self.name = f"{MIN_DCF_PREFIX}{p_target:g}"
        self._embeddings: list = []
        self._hook = None

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._embeddings = []

        def keep(module, inputs, output) -> None:
            self._embeddings.append(output.detach().float().cpu().numpy())

        self._hook = pl_module.register_forward_hook(keep)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._remove_hook()
        dm = trainer.datamodule
        if trainer.sanity_checking or dm is None or not self._embeddings:
            return
        emb = np.concatenate(self._embeddings)
        if len(emb) != len(dm.val_utt_ids):
            return
        scores = cosine_scores(dict(zip(dm.val_utt_ids, emb, strict=True)), dm.val_trials)
        value = min_dcf(scores, dm.val_trials["label"].to_numpy(), self.p_target)
        pl_module.log(self.name, value)


def metric_callbacks(metric: str) -> list[Callback]:
    """What a trial needs to log `metric` beyond the module's own `val_eer`."""
    if metric.startswith(MIN_DCF_PREFIX):
        try:
            p_target = float(metric[len(MIN_DCF_PREFIX) :])
        except ValueError:
            raise ValueError(
                f"sweep.metric {metric!r}: expected {MIN_DCF_PREFIX}<p_target>, e.g. "
                f"{MIN_DCF_PREFIX}0.01"
            ) from None
        return [ValidationMinDCF(p_target)]
    return []
