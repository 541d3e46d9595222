"""Thin ResNet34 (base width 32) over the (frequency, time) plane, the speaker-verification
layout of BUT's VoxSRC-2019 system (Zeinali et al., 2019) and WeSpeaker's `ResNet34`
(Wang et al., ICASSP 2023), from He et al. (CVPR 2016):

    fbank [B, T, F] -> [B, 1, F, T] -> Conv2d 3x3, 32 -> BasicBlock stages
        (3, 4, 6, 3) blocks with (32, 64, 128, 256) channels, stride 2 (both axes) at the
        first block of stages 2-4, no max-pooling
    -> [B, 256, F', T'] flattened to [B, 256 F', T'] (F' = 10 for 80 mels)
    -> statistics pooling [mean_t; std_t] (2 x 2560) -> Linear -> embedding.

"Thin" = half the ImageNet ResNet34 width (32 base channels instead of 64). The embedding is
256-dim by default, the field's choice for this model (BUT's system and WeSpeaker's VoxCeleb
ResNet34 recipe, which report ~6.6 M parameters), taken from the single linear layer after
pooling (WeSpeaker's `two_emb_layer: false`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speakerops.models.tdnn import check_features, statistics_pooling
from speakerops.models.zoo import register_backbone


class BasicBlock(nn.Module):
    """relu(BN(conv3x3(relu(BN(conv3x3(x))))) + shortcut(x)); 1x1 conv shortcut on shape change."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def _downsampled(size: int, stages: int) -> int:
    """Length after `stages` 3x3 convolutions with stride 2 and padding 1: ceil(size / 2)."""
    for _ in range(stages):
        size = (size - 1) // 2 + 1
    return size


@register_backbone("resnet34")
class ResNet34(nn.Module):
    """Features [B, T, n_mels] -> embeddings [B, embedding_dim]."""

    def __init__(
        self,
        n_mels: int = 80,
        base_channels: int = 32,
        embedding_dim: int = 256,
        num_blocks: tuple[int, ...] | list[int] = (3, 4, 6, 3),
    ) -> None:
        super().__init__()
        num_blocks = tuple(int(n) for n in num_blocks)
        if len(num_blocks) != 4 or min(num_blocks) < 1:
            raise ValueError(f"ResNet34: num_blocks must be 4 positive counts, got {num_blocks}")
        if min(n_mels, base_channels, embedding_dim) < 1:
            raise ValueError(
                f"ResNet34 sizes must be positive: n_mels={n_mels} "
                f"base_channels={base_channels} embedding_dim={embedding_dim}"
            )
        self.n_mels, self.embedding_dim = n_mels, embedding_dim
        self.conv1 = nn.Conv2d(1, base_channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(base_channels)
        stages, in_planes = [], base_channels
        for i, n in enumerate(num_blocks):
            planes = base_channels * 2**i
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(in_planes, planes, 2 if (i > 0 and j == 0) else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.stats_dim = in_planes * _downsampled(n_mels, 3)
        self.embedding = nn.Linear(2 * self.stats_dim, embedding_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        check_features(feats, self.n_mels, "ResNet34")
        x = feats.transpose(1, 2).unsqueeze(1)  # [B, 1, F, T]
        x = self.stages(F.relu(self.bn1(self.conv1(x))))  # [B, C, F', T']
        x = x.flatten(1, 2)  # [B, C F', T']
        return self.embedding(statistics_pooling(x))
