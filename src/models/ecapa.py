"""ECAPA-TDNN (Desplanques et al., 2020) with attentive statistics pooling.

Conv1d(k=5) -> 3 SE-Res2Blocks (dilation 2, 3, 4) -> multi-layer feature aggregation ->
channel- and context-dependent attentive statistics pooling -> BN -> linear embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from speakerops.models.zoo import register_backbone


class SEModule(nn.Module):
    """Squeeze-excitation over channels: x * sigmoid(W2 relu(W1 mean_t x))."""

    def __init__(self, channels: int, bottleneck: int = 128) -> None:
        super().__init__()
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool1d(1),
            nn.Conv1d(channels, bottleneck, 1),
            nn.ReLU(),
            nn.Conv1d(bottleneck, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.se(x)


class Res2Conv(nn.Module):
    """Res2Net-style hierarchical dilated convolutions over `scale` channel groups."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int) -> None:
        super().__init__()
        if channels % scale:
            raise ValueError(f"model.channels={channels} must be divisible by res2 scale={scale}")
        width = channels // scale
        self.scale = scale
        pad = dilation * (kernel_size - 1) // 2
        self.convs = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(width, width, kernel_size, dilation=dilation, padding=pad),
                nn.ReLU(),
                nn.BatchNorm1d(width),
            )
            for _ in range(scale - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunks = torch.chunk(x, self.scale, dim=1)
        out, prev = [], None
        for i, conv in enumerate(self.convs):
            prev = conv(chunks[i] if prev is None else chunks[i] + prev)
            out.append(prev)
        out.append(chunks[-1])
        return torch.cat(out, dim=1)


class SERes2Block(nn.Module):
    """1x1 conv -> Res2 dilated conv -> 1x1 conv -> SE, with a residual connection."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int = 8) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv1d(channels, channels, 1),
            nn.ReLU(),
            nn.BatchNorm1d(channels),
            Res2Conv(channels, kernel_size, dilation, scale),
            nn.Conv1d(channels, channels, 1),
            nn.ReLU(),
            nn.BatchNorm1d(channels),
            SEModule(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class AttentiveStatsPool(nn.Module):
    """Attentive statistics pooling with global context (ECAPA variant).

    a_t = softmax_t(W2 tanh(W1 [h_t; mean(h); std(h)])),  mu = sum_t a_t h_t,
    sigma = sqrt(sum_t a_t h_t^2 - mu^2); output [mu; sigma].
    """

    def __init__(self, channels: int, attention_channels: int = 128) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.Conv1d(channels * 3, attention_channels, 1),
            nn.ReLU(),
            nn.BatchNorm1d(attention_channels),
            nn.Tanh(),
            nn.Conv1d(attention_channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[-1]
        mean = x.mean(dim=-1, keepdim=True).expand(-1, -1, t)
        std = x.std(dim=-1, keepdim=True).clamp(min=1e-4).expand(-1, -1, t)
        w = torch.softmax(self.attention(torch.cat([x, mean, std], dim=1)), dim=-1)
        mu = (x * w).sum(dim=-1)
        sigma = ((x * x * w).sum(dim=-1) - mu * mu).clamp(min=1e-4).sqrt()
        return torch.cat([mu, sigma], dim=1)


@register_backbone("ecapa_tdnn")
class ECAPATDNN(nn.Module):
    """Features [B, T, n_mels] -> embeddings [B, embedding_dim]."""

    def __init__(
        self,
        n_mels: int = 80,
        channels: int = 512,
        embedding_dim: int = 192,
        mfa_channels: int | None = None,
        attention_channels: int = 128,
        res2_scale: int = 8,
    ) -> None:
        super().__init__()
        mfa_channels = mfa_channels or 3 * channels
        self.embedding_dim = embedding_dim
        self.stem = nn.Sequential(
            nn.Conv1d(n_mels, channels, 5, padding=2), nn.ReLU(), nn.BatchNorm1d(channels)
        )
        self.blocks = nn.ModuleList(
            SERes2Block(channels, 3, dilation, res2_scale) for dilation in (2, 3, 4)
        )
        self.mfa = nn.Sequential(nn.Conv1d(3 * channels, mfa_channels, 1), nn.ReLU())
        self.pool = AttentiveStatsPool(mfa_channels, attention_channels)
        self.pool_bn = nn.BatchNorm1d(2 * mfa_channels)
        self.embedding = nn.Linear(2 * mfa_channels, embedding_dim)
        self.embedding_bn = nn.BatchNorm1d(embedding_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.stem(feats.transpose(1, 2))
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        x = self.mfa(torch.cat(outs, dim=1))
        x = self.pool_bn(self.pool(x))
        return self.embedding_bn(self.embedding(x))
