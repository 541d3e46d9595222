"""LCNN: the light CNN of the ASVspoof LFCC-LCNN baseline (Wu et al. 2018; Lavrentyeva et al.
2019; Wang & Yamagishi 2021), narrowed by a width multiplier.

Max-feature-map activations halve the channels: ``MFM(x) = max(x[:C/2], x[C/2:])`` (a
competitive, learned feature selection). Blocks (``w`` = ``channels``)::

    conv5x5 2w → MFM w → maxpool 2
    [conv1x1 2w → MFM w → BN → conv3x3 3w → MFM 1.5w → maxpool 2 → BN]     (×1)
    [conv1x1 3w → MFM 1.5w → BN → conv3x3 4w → MFM 2w → maxpool 2]          (×1)
    [conv1x1 4w → MFM 2w → BN → conv3x3 2w → MFM w → BN]
    [conv1x1 2w → MFM w → BN → conv3x3 2w → MFM w → maxpool 2]

then mean and standard deviation over time of the (channel × frequency) map, a linear layer
with MFM to ``embedding_dim`` and dropout. Input features ``[B, T, n_mels]`` (``n_mels``: the
front end's coefficients, e.g. 60 for LFCC + Δ + ΔΔ), output ``[B, embedding_dim]``: the
backbone interface of the zoo; the countermeasure puts its bona fide logit on top
(:mod:`speakerops.models.countermeasure`).
"""

from __future__ import annotations

import torch
from torch import nn

from speakerops.models.zoo import register_backbone


class MFM(nn.Module):
    """Max-feature-map over the channel (``dim``) axis: the element-wise max of its halves."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=self.dim)
        return torch.maximum(a, b)


def _conv(cin: int, cout: int, k: int) -> nn.Sequential:
    """conv k×k to 2·cout channels, then MFM to cout."""
    return nn.Sequential(nn.Conv2d(cin, 2 * cout, k, padding=k // 2), MFM())


@register_backbone("lcnn")
class LCNN(nn.Module):
    """Light CNN for spoofing detection (see the module doc)."""

    MIN_FRAMES = 16  # four 2x poolings

    def __init__(
        self, n_mels: int = 60, channels: int = 32, embedding_dim: int = 80, dropout: float = 0.5
    ) -> None:
        super().__init__()
        if channels < 2 or channels % 2:
            raise ValueError(f"lcnn channels={channels}: expected an even number >= 2")
        w = channels
        h = w + w // 2
        self.embedding_dim = embedding_dim
        self.n_mels = n_mels
        self.body = nn.Sequential(
            _conv(1, w, 5),
            nn.MaxPool2d(2, 2),
            _conv(w, w, 1),
            nn.BatchNorm2d(w),
            _conv(w, h, 3),
            nn.MaxPool2d(2, 2),
            nn.BatchNorm2d(h),
            _conv(h, h, 1),
            nn.BatchNorm2d(h),
            _conv(h, 2 * w, 3),
            nn.MaxPool2d(2, 2),
            _conv(2 * w, 2 * w, 1),
            nn.BatchNorm2d(2 * w),
            _conv(2 * w, w, 3),
            nn.BatchNorm2d(w),
            _conv(w, w, 1),
            nn.BatchNorm2d(w),
            _conv(w, w, 3),
            nn.MaxPool2d(2, 2),
        )
        freq = n_mels
        for _ in range(4):
            freq //= 2
        if freq < 1:
            raise ValueError(f"lcnn n_mels={n_mels}: need >= 16 feature coefficients")
        self.proj = nn.Sequential(
            nn.Linear(2 * w * freq, 2 * embedding_dim), MFM(dim=-1), nn.Dropout(dropout)
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.ndim != 3 or feats.shape[-1] != self.n_mels:
            raise ValueError(
                f"lcnn: expected features [B, T, {self.n_mels}], got {tuple(feats.shape)}"
            )
        if feats.shape[1] < self.MIN_FRAMES:
            raise ValueError(f"lcnn: {feats.shape[1]} frames, need >= {self.MIN_FRAMES}")
        x = self.body(feats.unsqueeze(1))  # [B, C, T', F']
        x = x.permute(0, 2, 1, 3).flatten(2)  # [B, T', C·F']
        stats = torch.cat([x.mean(1), x.std(1, unbiased=False)], dim=-1)
        return self.proj(stats)
