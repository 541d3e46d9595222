"""Narrow-band telephone channel: 300-3400 Hz band at 8 kHz, a codec, packet loss."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from speakerops.data.channel.codec import apply_codec
from speakerops.data.channel.dsp import next_fast_len
from speakerops.data.channel.level import randint
from speakerops.data.resample import resample


def raised_cosine_bandpass(
    x: torch.Tensor, sample_rate: int, band_hz: tuple[float, float], width: float = 100.0
) -> torch.Tensor:
    """Band-pass in the FFT domain, raised-cosine edges ``width`` Hz wide centred on the band
    edges (nothing is left above ``band_hz[1] + width / 2``)."""
    n = x.shape[-1]
    n_fft = next_fast_len(n)
    spec = torch.fft.rfft(x, n=n_fft)
    f = torch.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    lo, hi = band_hz

    def ramp(z: torch.Tensor) -> torch.Tensor:  # 0 -> 1 raised cosine over z in [0, 1]
        return 0.5 - 0.5 * torch.cos(math.pi * z.clamp(0.0, 1.0))

    gain = ramp((f - (lo - width / 2)) / width) * ramp(((hi + width / 2) - f) / width)
    return torch.fft.irfft(spec * gain, n=n_fft)[:n]


def telephone_channel(
    wav: torch.Tensor,
    generator: torch.Generator,
    sample_rate: int,
    *,
    codecs: Sequence[str],
    band_hz: tuple[float, float],
    packet_loss: float,
    frame_ms: float,
    channel_rate: int,
) -> torch.Tensor:
    """``wav`` through a telephone line, same length and dtype: resampled to ``channel_rate``,
    band-passed, a codec drawn from ``codecs``, each ``frame_ms`` frame lost (zeroed) with
    probability ``packet_loss``, back to ``sample_rate`` with the same band-pass as receiver
    filter. Draws: the codec (when more than one), then the lost frames (when > 0)."""
    if sample_rate < channel_rate:
        raise ValueError(f"TelephoneChannel needs sample_rate >= {channel_rate}, got {sample_rate}")
    n = wav.shape[-1]
    codec = codecs[randint(generator, 0, len(codecs))] if len(codecs) > 1 else codecs[0]
    x = resample(wav.float(), sample_rate, channel_rate)
    x = apply_codec(raised_cosine_bandpass(x, channel_rate, band_hz), codec)
    if packet_loss > 0.0:
        frame = max(1, int(frame_ms * channel_rate / 1000))
        n_frames = math.ceil(x.numel() / frame)
        lost = torch.rand(n_frames, generator=generator) < packet_loss
        x = x * (~lost).float().repeat_interleave(frame)[: x.numel()]
    if sample_rate == channel_rate:
        return x.to(wav.dtype)
    y = resample(x, channel_rate, sample_rate)
    if y.numel() >= n:
        y = y[:n]
    else:
        y = torch.nn.functional.pad(y, (0, n - y.numel()))
    # receiver filter: removes the resampler's images and codec noise outside the band
    return raised_cosine_bandpass(y, sample_rate, band_hz).to(wav.dtype)
