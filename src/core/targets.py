"""The classes a config may build: every ``_target_`` anywhere in the config (conf/, a
``params.yaml`` given as ``config=``, a dotlist override) must be one of
:data:`ALLOWED_TARGETS` (speakerops' own classes and the Lightning classes conf/ ships), else
the config is refused here, before anything is imported, naming the key and the value. The
model's ``_target_`` is the model zoo's: only a ``speakerops.models.`` path passes here, and the
zoo accepts it only when it names a registered backbone class (it never imports the path).
An operator adds a class of their own through the environment, never through a file the
pipeline reads: ``SPEAKEROPS_EXTRA_TARGETS=pkg.mod.Class[,pkg.mod.Other]``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig
from omegaconf.errors import (
    InterpolationToMissingValueError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

# the classes a config may instantiate (hydra.utils.instantiate): augment, loss, trainer,
# strategy, callbacks, logger; conf/callbacks/default.yaml documents LearningRateMonitor
ALLOWED_TARGETS = frozenset(
    {
        "speakerops.train.augment.AugmentPipeline",
        "speakerops.train.augment.AddNoise",
        "speakerops.train.augment.Reverberate",
        "speakerops.train.augment.SpecAugment",
        "speakerops.train.augment.SpeedPerturb",
        "speakerops.train.augment.TelephoneChannel",
        "speakerops.models.losses.AAMSoftmax",
        "speakerops.train.callbacks.Throughput",
        "speakerops.train.callbacks.EpochLog",
        "pytorch_lightning.Trainer",
        "pytorch_lightning.strategies.DDPStrategy",
        "pytorch_lightning.callbacks.ModelCheckpoint",
        "pytorch_lightning.callbacks.LearningRateMonitor",
        "pytorch_lightning.loggers.MLFlowLogger",
    }
)
EXTRA_TARGETS_ENV = "SPEAKEROPS_EXTRA_TARGETS"
MODEL_NAMESPACE = "speakerops.models."  # model._target_: the zoo's registry decides


def allowed_targets() -> frozenset[str]:
    extra = os.environ.get(EXTRA_TARGETS_ENV, "")
    return ALLOWED_TARGETS | {t.strip() for t in extra.split(",") if t.strip()}


def _targets(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every ``_target_`` under ``node`` (dicts and lists)."""
    if isinstance(node, DictConfig):
        keys = [str(k) for k in node.keys()]
    elif isinstance(node, ListConfig):
        keys = [str(i) for i in range(len(node))]
    else:
        return
    for key in keys:
        where = f"{prefix}{key}"
        try:
            value = node[int(key)] if isinstance(node, ListConfig) else node[key]
        except (MissingMandatoryValue, InterpolationToMissingValueError):
            continue
        except OmegaConfBaseException as exc:
            if key == "_target_":
                yield where, f"<unresolvable: {' '.join(str(exc).split())[:200]}>"
            continue
        if key == "_target_":
            yield where, value
        else:
            yield from _targets(value, f"{where}.")


def target_problems(cfg: DictConfig) -> list[str]:
    """``key='value': ...`` for every ``_target_`` that is not an allowed class path."""
    allowed = allowed_targets()
    found = []
    for key, value in _targets(cfg, ""):
        if key == "model._target_" and isinstance(value, str) and value.startswith(MODEL_NAMESPACE):
            continue
        if value not in allowed:
            found.append(
                f"{key}={value!r}: not a class speakerops may build from a config (allowed: "
                f"speakerops' own and the Lightning classes conf/ ships; an operator adds one "
                f"with {EXTRA_TARGETS_ENV}=<class path>)"
            )
    return found
