"""The per-sample waveform pipeline: optional speed perturbation, then each augmentation."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from speakerops.train.augment.speed import SpeedPerturb


class AugmentPipeline:
    """Per-sample waveform augmentation: optional speed perturbation, then each augmentation in
    order, each with its own probability.

    ``pipeline(wav, generator) -> (augmented wav, speed_index)``; the output has the input's
    length and dtype; ``speed_index`` is 0 without speed change (see ``SpeedPerturb``) and the
    training label becomes ``speaker + speed_index * n_speakers``.

    ``augmentations`` is a list, or a mapping name -> augmentation (applied in insertion order;
    ``None`` values are skipped), so a Hydra override can reach one by name, e.g.
    ``augment.pipeline.augmentations.noise.p=0`` or ``augment.pipeline.augmentations.noise=null``.
    An augmentation is any callable ``(wav, generator, sample_rate) -> wav`` of the same length.
    """

    def __init__(
        self,
        augmentations: Sequence[Callable[..., torch.Tensor]]
        | Mapping[str, Callable[..., torch.Tensor] | None] = (),
        *,
        sample_rate: int,
        speed: SpeedPerturb | None = None,
    ) -> None:
        if augmentations is None:
            augs: list[Any] = []
        elif isinstance(augmentations, Mapping):
            augs = [a for a in augmentations.values() if a is not None]
        else:
            augs = list(augmentations)
        for aug in augs:
            if isinstance(aug, SpeedPerturb):
                raise TypeError(
                    "SpeedPerturb changes labels: pass it as AugmentPipeline(speed=...), "
                    "not in augmentations"
                )
            if not callable(aug):
                raise TypeError(f"augmentation {aug!r} is not callable")
        self.augmentations = augs
        self.sample_rate = int(sample_rate)
        if self.sample_rate <= 0:
            raise ValueError(f"AugmentPipeline.sample_rate must be > 0, got {sample_rate}")
        if speed is not None and not isinstance(speed, SpeedPerturb):
            raise TypeError(f"AugmentPipeline.speed must be a SpeedPerturb or None, got {speed!r}")
        self.speed = speed

    @property
    def num_label_copies(self) -> int:
        """Number of speed factors (classes = n_speakers * this); 1 without speed perturbation."""
        return 1 if self.speed is None else self.speed.num_label_copies

    def __call__(self, wav: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        if not isinstance(wav, torch.Tensor) or wav.dim() != 1 or not wav.is_floating_point():
            raise ValueError(
                "AugmentPipeline expects a 1-D float waveform tensor, got "
                f"{type(wav).__name__} {getattr(wav, 'shape', '')} {getattr(wav, 'dtype', '')}"
            )
        n = wav.shape[0]
        if n == 0:
            return wav, 0
        idx = 0
        if self.speed is not None:
            wav, idx = self.speed(wav, generator, self.sample_rate)
        for aug in self.augmentations:
            wav = aug(wav, generator, self.sample_rate)
            if wav.dim() != 1 or wav.shape[0] != n:
                raise RuntimeError(f"{aug!r} changed the waveform shape to {tuple(wav.shape)}")
        return wav, idx

    def __repr__(self) -> str:
        return (
            f"AugmentPipeline(sample_rate={self.sample_rate}, speed={self.speed!r}, "
            f"augmentations={self.augmentations!r})"
        )
