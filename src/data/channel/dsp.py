"""Numpy signal helpers shared by the channel simulators: FFT sizes, ramps, the mel scale."""

from __future__ import annotations

import numpy as np
from scipy.fft import next_fast_len as _scipy_next_fast_len


def next_fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (FFT sizes with large prime factors are ~6x slower)."""
    return int(_scipy_next_fast_len(max(1, int(n)), real=True))


def smoothstep(f: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Cubic 0 -> 1 ramp ``3u^2 - 2u^3`` of ``u = clip((f - lo) / (hi - lo), 0, 1)``."""
    u = np.clip((f - lo) / (hi - lo), 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def mel(f: np.ndarray) -> np.ndarray:
    """HTK mel scale ``2595 log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + f / 700.0)
