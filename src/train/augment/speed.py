"""Speed perturbation: resample-based speed change that makes new speaker labels."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from speakerops.data.channel.level import randint
from speakerops.data.crop import crop_or_tile
from speakerops.data.resample import resample
from speakerops.train.augment.base import check_p


def _fit_length(x: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop (longer) or circular padding from the start (shorter) to ``length``."""
    n = x.shape[-1]
    if n == length:
        return x
    return crop_or_tile(x, length, randint(generator, 0, n - length + 1) if n > length else 0)


class SpeedPerturb:
    """Resample-based speed change (tempo and pitch both scale by the factor, like sox ``speed``).

    ``y = resample(x, from=round(sr * f), to=sr)``: ``len(y) ~ len(x) / f`` and a tone at
    frequency ``F`` moves to ``F * f``. Afterwards the pipeline crops randomly (f < 1) or pads
    circularly (f > 1) back to the input length.

    Index convention (used for labels ``speaker + index * n_speakers``): index 0 is factor 1.0,
    then the other factors in the order given. ``factors=(0.9, 1.0, 1.1)`` gives
    ``0 -> 1.0, 1 -> 0.9, 2 -> 1.1`` (see ``index_to_factor``). With probability ``p`` one of the
    non-unity factors is drawn uniformly, otherwise index 0; ``p = 2/3`` with three factors is
    WeSpeaker's uniform choice among the three speeds.
    """

    def __init__(self, factors: Sequence[float] = (0.9, 1.0, 1.1), p: float = 2.0 / 3.0) -> None:
        fs = [float(f) for f in factors]
        if not fs or any(not (0.5 <= f <= 2.0) for f in fs):
            raise ValueError(f"SpeedPerturb.factors must lie in [0.5, 2.0], got {list(factors)}")
        if len(set(fs)) != len(fs):
            raise ValueError(f"SpeedPerturb.factors has duplicates: {list(factors)}")
        if 1.0 not in fs:
            raise ValueError(
                f"SpeedPerturb.factors must contain 1.0 (label copy 0 = original speakers), got {fs}"
            )
        self.factors = tuple(fs)
        self.index_to_factor: tuple[float, ...] = (1.0,) + tuple(f for f in fs if f != 1.0)
        self.p = check_p(p, "SpeedPerturb")

    @property
    def num_label_copies(self) -> int:
        return len(self.index_to_factor)

    def draw_index(self, generator: torch.Generator) -> int:
        """0 with probability ``1 - p``, otherwise uniform over the indices 1..K-1."""
        u = float(torch.rand((), generator=generator))
        if self.num_label_copies == 1 or u >= self.p:
            return 0
        return randint(generator, 1, self.num_label_copies)

    @staticmethod
    def change_speed(wav: torch.Tensor, factor: float, sample_rate: int) -> torch.Tensor:
        """Speed change without length fixing: ``~len(wav) / factor`` samples."""
        if factor == 1.0:
            return wav
        orig = int(round(sample_rate * factor))
        return resample(wav, orig, sample_rate)

    def __call__(
        self, wav: torch.Tensor, generator: torch.Generator, sample_rate: int
    ) -> tuple[torch.Tensor, int]:
        idx = self.draw_index(generator)
        if idx == 0:
            return wav, 0
        out = self.change_speed(wav, self.index_to_factor[idx], sample_rate)
        return _fit_length(out, wav.shape[-1], generator), idx

    def __repr__(self) -> str:
        return f"SpeedPerturb(factors={self.factors}, p={self.p:.4g})"
