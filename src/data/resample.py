"""The resampler: torchaudio's band-limited sinc interpolation with a cached kernel.

Every waveform that changes rate (files read by `data.audio`, the baseline's reader, noise and
RIR banks, speed perturbation, the telephone channel) goes through :func:`resample`. The kernel
for a rate pair is computed once per process (in float64, cached as float32:
`torchaudio.transforms.Resample`). The synthetic corpus generator is the one exception: its
bytes are pinned to SciPy's polyphase filter (`speakerops.data.synthetic.utterance`), so
changing it would change every corpus hash.

torch is imported on the first resampling, not with this module: reading and checking audio at
its own rate (``speakerops prepare`` on most corpora) starts without it (~2-8 s saved).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

Wave = TypeVar("Wave", np.ndarray, "torch.Tensor")


@functools.lru_cache(maxsize=32)
def _resampler(orig: int, new: int) -> Any:
    """Cached sinc resampler (the kernel is computed once per rate pair and process)."""
    import torchaudio  # start-up cost: see the module docstring

    g = math.gcd(orig, new)
    return torchaudio.transforms.Resample(orig // g, new // g)


def resample(x: Wave, orig: int, new: int) -> Wave:
    """``x`` (numpy array or tensor, time on the last axis) from rate ``orig`` to ``new``:
    ``ceil(len * new / orig)`` float32 samples, same kind as the input (unchanged at equal
    rates, numpy input then as float32)."""
    if isinstance(x, np.ndarray) and orig == new:
        return x.astype(np.float32, copy=False)
    import torch  # start-up cost: see the module docstring

    if isinstance(x, np.ndarray):
        wav = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return resample(wav, orig, new).numpy()
    if orig == new:
        return x
    with torch.no_grad():
        return _resampler(int(orig), int(new))(x.float())
