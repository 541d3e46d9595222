"""Crop-or-tile: a fixed-length window of a waveform, looping it when it is too short.

One window function (:func:`crop_or_tile`, a circular read) serves every caller; the callers
differ only in how they draw the start:

* :func:`random_crop` (training crops): uniform over the windows of the signal tiled to at
  least ``length + 1`` samples, one draw always;
* speed perturbation re-fits a stretched crop (`speakerops.train.augment.speed`): a random
  start when longer, the start when shorter;
* noise banks (`speakerops.train.augment.bank`): a random start in the file, looping it.
"""

from __future__ import annotations

import math

import torch


def crop_or_tile(x: torch.Tensor, length: int, start: int = 0) -> torch.Tensor:
    """``length`` samples of ``x`` (last axis) read circularly from ``start``: a plain slice when
    they fit, else ``x`` repeated (a short signal is looped)."""
    n = x.shape[-1]
    if n == 0:
        raise ValueError("cannot loop an empty signal")
    start %= n
    if start + length <= n:
        return x[..., start : start + length]
    reps = math.ceil((start + length) / n)
    return x.repeat(*([1] * (x.dim() - 1)), reps)[..., start : start + length]


def random_crop(wav: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """A random window of ``length`` samples; shorter inputs are tiled (repeated) first."""
    n = wav.numel()
    tiled = n * (length // n + 1) if n < length else n
    start = int(torch.randint(0, tiled - length + 1, (1,), generator=generator))
    return crop_or_tile(wav, length, start)
