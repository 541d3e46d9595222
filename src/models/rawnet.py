"""RawNet2-style countermeasure backbone on the raw waveform (Tak et al. 2021, "End-to-end
anti-spoofing with RawNet2"; Ravanelli & Bengio 2018 for the sinc layer), narrowed to train on
two CPU cores in minutes.

Layers (``w`` = ``channels``)::

    waveform [B, N] → SincConv (sinc_filters band-pass filters, sinc_kernel taps, learnable
    low cut-off and band width, mel-spaced at init) → |·| → maxpool 3 → BN → LeakyReLU
    → residual blocks, each: BN → LeakyReLU → conv3 → BN → LeakyReLU → conv3 (+ 1×1 skip
      when the width changes) → maxpool 3 → filter-wise feature-map scaling (FMS:
      x · s + s, s = sigmoid(linear(mean over time)))
      widths: w, w, 2w, 2w  (``blocks`` of them; each divides time by 3)
    → BN → LeakyReLU → GRU (``gru_hidden``) → its last state → linear → ``embedding_dim``

The sinc filter k is ``g[n] = 2 f2 sinc(2π f2 n) − 2 f1 sinc(2π f1 n)`` (``f1`` = low cut-off,
``f2 = f1 + |band|``, in cycles per sample: the ideal band pass, unit gain in its band) times a
Hamming window, so the first layer learns
which frequency bands to look at (in RawNet2 the high bands, where vocoders and
loudspeakers leave their traces). Input ``[B, N]`` samples at ``sample_rate``, output
``[B, embedding_dim]``; the countermeasure puts its bona fide logit on top
(:mod:`speakerops.models.countermeasure`, front end ``kind: raw``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from speakerops.models.zoo import register_backbone


def _hz_to_mel(hz: float | torch.Tensor) -> float | torch.Tensor:
    return 2595.0 * (torch.log10(1 + torch.as_tensor(hz) / 700.0))


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10 ** (mel / 2595.0) - 1)


class SincConv(nn.Module):
    """Learnable band-pass filters: each is parameterised by its low cut-off and band width."""

    def __init__(self, out_channels: int, kernel_size: int, sample_rate: int,
                 min_low_hz: float = 0.0, min_band_hz: float = 50.0) -> None:  # fmt: skip
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"rawnet2 sinc_kernel={kernel_size}: expected an odd number")
        self.kernel_size, self.sample_rate = kernel_size, sample_rate
        self.min_low_hz, self.min_band_hz = min_low_hz, min_band_hz
        nyquist = sample_rate / 2
        mel = torch.linspace(
            float(_hz_to_mel(30.0)), float(_hz_to_mel(nyquist - min_band_hz)), out_channels + 1
        )
        hz = _mel_to_hz(mel)
        self.low_hz = nn.Parameter(hz[:-1].unsqueeze(1))  # [C, 1]
        self.band_hz = nn.Parameter((hz[1:] - hz[:-1]).unsqueeze(1))
        half = (kernel_size - 1) // 2
        n = torch.arange(-half, half + 1, dtype=torch.float32) / sample_rate  # seconds
        self.register_buffer("n", 2 * math.pi * n.unsqueeze(0), persistent=False)  # [1, K]
        self.register_buffer("window", torch.hamming_window(kernel_size, periodic=False),
                             persistent=False)  # fmt: skip

    def filters(self) -> torch.Tensor:
        nyquist = self.sample_rate / 2
        low = self.min_low_hz + self.low_hz.abs()
        high = torch.clamp(low + self.min_band_hz + self.band_hz.abs(), self.min_low_hz, nyquist)
        arg_low, arg_high = low * self.n, high * self.n  # [C, K]
        # 2 f sinc(2π f t) with its limit 2 f at t = 0
        safe = torch.where(self.n == 0, torch.ones_like(self.n), self.n)
        bp = (torch.sin(arg_high) - torch.sin(arg_low)) / (safe / 2)
        bp = torch.where(self.n == 0, 2 * (high - low), bp) * self.window
        return (bp / self.sample_rate).unsqueeze(1)  # per sample: unit gain in the pass band

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 1, N] -> [B, C, N']
        return nn.functional.conv1d(x, self.filters())


class ResBlock(nn.Module):
    """Pre-activation residual block, max-pool 3, filter-wise feature-map scaling."""

    def __init__(self, cin: int, cout: int, first: bool) -> None:
        super().__init__()
        self.pre = nn.Identity() if first else nn.Sequential(nn.BatchNorm1d(cin), nn.LeakyReLU(0.3))
        self.body = nn.Sequential(
            nn.Conv1d(cin, cout, 3, padding=1),
            nn.BatchNorm1d(cout),
            nn.LeakyReLU(0.3),
            nn.Conv1d(cout, cout, 3, padding=1),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv1d(cin, cout, 1)
        self.pool = nn.MaxPool1d(3)
        self.fms = nn.Linear(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(self.body(self.pre(x)) + self.skip(x))
        s = torch.sigmoid(self.fms(y.mean(-1))).unsqueeze(-1)
        return y * s + s


@register_backbone("rawnet2")
class RawNet2(nn.Module):
    """Raw-waveform spoofing detector (see the module doc)."""

    def __init__(self, sample_rate: int = 16000, sinc_filters: int = 20, sinc_kernel: int = 129,
                 channels: int = 20, blocks: int = 4, gru_hidden: int = 64,
                 embedding_dim: int = 64) -> None:  # fmt: skip
        super().__init__()
        if blocks < 1 or channels < 1 or sinc_filters < 1:
            raise ValueError(
                f"rawnet2: blocks={blocks}, channels={channels}, sinc_filters={sinc_filters}: "
                "each must be >= 1"
            )
        self.embedding_dim, self.sample_rate = embedding_dim, sample_rate
        self.sinc = SincConv(sinc_filters, sinc_kernel, sample_rate)
        self.first = nn.Sequential(nn.MaxPool1d(3), nn.BatchNorm1d(sinc_filters), nn.LeakyReLU(0.3))
        widths = [channels if i < 2 else 2 * channels for i in range(blocks)]
        cins = [sinc_filters, *widths[:-1]]
        self.blocks = nn.Sequential(
            *(
                ResBlock(a, b, first=i == 0)
                for i, (a, b) in enumerate(zip(cins, widths, strict=True))
            )
        )
        self.post = nn.Sequential(nn.BatchNorm1d(widths[-1]), nn.LeakyReLU(0.3))
        self.gru = nn.GRU(widths[-1], gru_hidden, batch_first=True)
        self.proj = nn.Linear(gru_hidden, embedding_dim)
        # samples for at least 2 time steps into the GRU: sinc taps, then 3^(blocks + 1) pooling
        self.MIN_FRAMES = sinc_kernel - 1 + 2 * 3 ** (blocks + 1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.ndim != 2:
            raise ValueError(f"rawnet2: expected waveforms [B, N], got {tuple(wav.shape)}")
        if wav.shape[1] < self.MIN_FRAMES:
            raise ValueError(f"rawnet2: {wav.shape[1]} samples, need >= {self.MIN_FRAMES}")
        x = self.first(self.sinc(wav.unsqueeze(1)).abs())
        x = self.post(self.blocks(x))  # [B, C, T]
        _, h = self.gru(x.transpose(1, 2))
        return self.proj(h[-1])
