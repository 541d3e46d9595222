"""`speakerops sweep hparams_search=<name> [sweep.n_jobs=N] [overrides]`: an Optuna study over
the train stage.

The search space, sampler, pruner, objective metric and storage live in
`conf/hparams_search/<name>.yaml` (package `_global_`: it may also set other keys, e.g. a shorter
`trainer.max_epochs` for the trials) under the key `sweep`. Each trial composes `conf/` with the
command's overrides plus the trial's (`optim.lr=0.0031 model.channels=256`), trains with the real
`train()` and returns the best value of `sweep.metric` over its epochs.

The modules, one concern each:

- `space`: the `sweep` node checked, the trial's values (`suggest`) as overrides, sampler, pruner.
- `callbacks`: `OptunaPruning` (report + prune each validation, stop a diverged trial) and
  `ValidationMinDCF` (the `val_min_dcf_<p>` objective).
- `workers`: the Optuna storage, the objective, one worker's loop and N worker processes
  (`python -m speakerops.train.sweep --worker i ...`) on one study.
- `presets`: the best trial as a generated experiment preset,
  `conf/experiment/generated/<study>_best.yaml` (git-ignored), so
  `speakerops train experiment=generated/<study>_best` trains it again.
- `study`: `sweep()`, the study, its MLflow parent run and `sweep.json`.
"""

from speakerops.train.sweep.callbacks import (
    MIN_DCF_PREFIX,
    Diverged,
    OptunaPruning,
    ValidationMinDCF,
    metric_callbacks,
)
from speakerops.train.sweep.presets import preset_path, write_preset
from speakerops.train.sweep.space import (
    PRUNERS,
    SAMPLERS,
    as_overrides,
    make_pruner,
    make_sampler,
    suggest,
    sweep_config,
)
from speakerops.train.sweep.study import sweep
from speakerops.train.sweep.workers import make_storage, masked, run_worker, storage_url

__all__ = [
    "MIN_DCF_PREFIX",
    "PRUNERS",
    "SAMPLERS",
    "Diverged",
    "OptunaPruning",
    "ValidationMinDCF",
    "as_overrides",
    "make_pruner",
    "make_sampler",
    "make_storage",
    "masked",
    "metric_callbacks",
    "preset_path",
    "run_worker",
    "storage_url",
    "suggest",
    "sweep",
    "sweep_config",
    "write_preset",
]
