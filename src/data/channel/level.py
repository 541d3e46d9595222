"""Signal level and the generator draws of the (torch) channel simulators."""

from __future__ import annotations

import math

import torch

EPS_POWER = 1e-12  # mean-square below this counts as silence


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One draw of U(low, high) from ``generator``."""
    return low + (high - low) * float(torch.rand((), generator=generator))


def randint(generator: torch.Generator, low: int, high: int) -> int:
    """One integer uniformly drawn from [low, high) (``high > low``)."""
    return int(torch.randint(low, high, (), generator=generator))


def power(x: torch.Tensor) -> float:
    """Mean square ``P = (1/N) sum x_n^2`` in float64 (0 for an empty tensor)."""
    if x.numel() == 0:
        return 0.0
    return float(x.double().square().mean())


def achieved_snr_db(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    """SNR of ``noisy = clean + n``: ``10 log10(P_clean / P_n)`` with P the mean square."""
    return 10.0 * math.log10(power(clean) / power(noisy.double() - clean.double()))
