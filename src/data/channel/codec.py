"""Speech codecs on [-1, 1] signals: G.711 µ-law and A-law 8-bit companding, 8-bit linear."""

from __future__ import annotations

import math

import torch
import torchaudio.functional as AF

CODECS = ("mulaw", "alaw", "pcm8", "none")


def alaw_encode(x: torch.Tensor, a: float = 87.6) -> torch.Tensor:
    """G.711 A-law compression of x in [-1, 1] to integer codes in [0, 255].

    ``F(x) = sgn(x) A|x| / (1 + ln A)`` for ``|x| < 1/A``, else
    ``sgn(x) (1 + ln(A|x|)) / (1 + ln A)``; then 8-bit uniform quantization of F in [-1, 1].
    """
    ax = x.abs().clamp(max=1.0)
    denom = 1.0 + math.log(a)
    y = torch.where(
        ax < 1.0 / a, a * ax / denom, (1.0 + torch.log((a * ax).clamp(min=1.0))) / denom
    )
    y = torch.sign(x) * y
    return ((y + 1.0) / 2.0 * 255.0 + 0.5).floor().clamp(0, 255).long()


def alaw_decode(codes: torch.Tensor, a: float = 87.6) -> torch.Tensor:
    """Inverse of :func:`alaw_encode`."""
    y = codes.float() / 255.0 * 2.0 - 1.0
    ay = y.abs()
    denom = 1.0 + math.log(a)
    x = torch.where(ay < 1.0 / denom, ay * denom / a, torch.exp(ay * denom - 1.0) / a)
    return torch.sign(y) * x


def apply_codec(x: torch.Tensor, codec: str) -> torch.Tensor:
    """``x`` through ``codec`` (one of :data:`CODECS`) at a hot but unclipped level: the
    signal is scaled to peak 0.9, encoded, decoded and scaled back."""
    if codec == "none":
        return x
    peak = float(x.abs().max())
    if peak <= 0.0:
        return x
    scale = 0.9 / peak  # codecs work on [-1, 1]: a hot but unclipped level
    z = x * scale
    if codec == "mulaw":
        z = AF.mu_law_decoding(AF.mu_law_encoding(z, 256), 256)
    elif codec == "alaw":
        z = alaw_decode(alaw_encode(z))
    else:  # pcm8
        z = torch.round(z * 127.0) / 127.0
    return z / scale
