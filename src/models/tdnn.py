"""x-vector TDNN (Snyder et al., "X-vectors: robust DNN embeddings for speaker recognition",
ICASSP 2018), and the statistics pooling shared by the zoo's models.

Frame layers (Kaldi order affine -> ReLU -> BN without affine, context as in the paper):
    frame1 [t-2, t+2]      512      Conv1d k=5 d=1
    frame2 {t-2, t, t+2}   512      Conv1d k=3 d=2
    frame3 {t-3, t, t+3}   512      Conv1d k=3 d=3
    frame4 {t}             512      Conv1d k=1
    frame5 {t}             1500     Conv1d k=1
    stats pooling          3000     [mean_t; std_t]
    segment6               512      Linear -> the embedding ("x-vector", taken before the ReLU)
In the paper segment7 (512) and a softmax sit on top of segment6 for training only; here the
AAM-softmax head (`speakerops.models.losses`) takes their place, directly on segment6, as in
SpeechBrain's `Xvector`. Frame layers are zero-padded ("same" length) so any input of >= 1
frame works; on mean-normalized fbank the pad value 0 is the utterance mean.
"""

from __future__ import annotations

import torch
from torch import nn

from speakerops.models.zoo import register_backbone


def check_features(feats: torch.Tensor, n_mels: int, model: str) -> None:
    """Raise a clear error unless `feats` is [B, T >= 1, n_mels]."""
    if feats.dim() != 3 or feats.shape[-1] != n_mels or feats.shape[1] < 1:
        raise ValueError(
            f"{model}: expected features [batch, frames >= 1, n_mels={n_mels}], "
            f"got shape {tuple(feats.shape)}"
        )


def statistics_pooling(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """[B, C, T] -> [B, 2C] = [mean_t x; sqrt(mean_t (x - mean)^2 + eps)].

    The biased (1/T) variance, so a single frame gives std = sqrt(eps) instead of NaN.
    """
    mean = x.mean(dim=-1)
    var = (x - mean.unsqueeze(-1)).pow(2).mean(dim=-1)
    return torch.cat([mean, (var + eps).sqrt()], dim=-1)


class TDNNLayer(nn.Module):
    """Conv1d over time (kernel = context size) -> ReLU -> BatchNorm (affine=False, as Kaldi)."""

    def __init__(self, in_channels: int, out_channels: int, context: int, dilation: int = 1):
        super().__init__()
        if context % 2 != 1:
            raise ValueError(f"TDNN context size must be odd (symmetric), got {context}")
        self.conv = nn.Conv1d(
            in_channels,
            out_channels,
            context,
            dilation=dilation,
            padding=dilation * (context - 1) // 2,
        )
        self.bn = nn.BatchNorm1d(out_channels, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(torch.relu(self.conv(x)))


@register_backbone("xvector")
class XVector(nn.Module):
    """Features [B, T, n_mels] -> x-vectors [B, embedding_dim] (segment6, 512 in the paper)."""

    def __init__(
        self,
        n_mels: int = 80,
        channels: int = 512,
        stats_channels: int = 1500,
        embedding_dim: int = 512,
    ) -> None:
        super().__init__()
        if min(n_mels, channels, stats_channels, embedding_dim) < 1:
            raise ValueError(
                f"XVector sizes must be positive: n_mels={n_mels} channels={channels} "
                f"stats_channels={stats_channels} embedding_dim={embedding_dim}"
            )
        self.n_mels, self.embedding_dim = n_mels, embedding_dim
        self.frames = nn.Sequential(
            TDNNLayer(n_mels, channels, 5, 1),
            TDNNLayer(channels, channels, 3, 2),
            TDNNLayer(channels, channels, 3, 3),
            TDNNLayer(channels, channels, 1),
            TDNNLayer(channels, stats_channels, 1),
        )
        self.segment6 = nn.Linear(2 * stats_channels, embedding_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        check_features(feats, self.n_mels, "XVector")
        return self.segment6(statistics_pooling(self.frames(feats.transpose(1, 2))))
