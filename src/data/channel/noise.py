"""Additive noise: coloured Gaussian noise and mixing at a signal-to-noise ratio."""

from __future__ import annotations

import math

import torch

from speakerops.data.channel.dsp import next_fast_len
from speakerops.data.channel.level import EPS_POWER, power

# Spectral slope exponents: power spectral density proportional to 1 / f**alpha.
NOISE_COLORS: dict[str, float] = {
    "white": 0.0,
    "pink": 1.0,
    "brown": 2.0,
    "blue": -1.0,
    "violet": -2.0,
}


def colored_noise(
    length: int, color: str | float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Gaussian noise with PSD ~ 1/f^alpha (white 0, pink 1, brown 2, blue -1, violet -2).

    Shaped in the frequency domain: ``X_k *= k^(-alpha/2)`` for k >= 1, DC removed; unit power.
    """
    alpha = NOISE_COLORS[color] if isinstance(color, str) else float(color)
    n_fft = next_fast_len(max(length, 2))
    white = torch.randn(n_fft, generator=generator)
    if alpha == 0.0:
        x = white[:length]
    else:
        spec = torch.fft.rfft(white)
        k = torch.arange(spec.numel(), dtype=torch.float32)
        gain = k.clamp(min=1.0).pow(-alpha / 2.0)
        gain[0] = 0.0
        x = torch.fft.irfft(spec * gain, n=n_fft)[:length]
    x = x - x.mean()
    return x / x.square().mean().clamp(min=EPS_POWER).sqrt()


def add_at_snr(wav: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``y = x + g n`` with ``g = sqrt(P_x / (P_n 10^(snr/10)))`` (P the mean square over the
    whole signal, so the achieved SNR is ``snr_db``); a silent signal or noise leaves ``wav``."""
    p_sig, p_noise = power(wav), power(noise)
    if p_sig <= EPS_POWER or p_noise <= EPS_POWER:
        return wav
    gain = math.sqrt(p_sig / (p_noise * 10.0 ** (snr_db / 10.0)))
    return wav + (gain * noise).to(wav.dtype)
