"""CAM++ (Wang et al., "CAM++: a fast and efficient network for speaker verification using
context-aware masking", Interspeech 2023), following 3D-Speaker's `CAMPPlus` design:

    fbank [B, T, F] -> FCM: a small 2-D ResNet front end over (F, T): Conv2d 3x3 (32) ->
        2 BasicResBlocks (stride 2 in frequency only) -> 2 more (stride 2 in frequency) ->
        Conv2d 3x3 stride (2, 1) -> [B, 32 * F/8, T]  (320 channels for 80 mels)
    -> TDNN Conv1d k=5, stride 2 in time (halves the frame rate), 128 channels
    -> 3 D-TDNN blocks (12, 24, 16 layers; growth 32; dilation 1, 2, 2), each followed by a
       transition layer (BN-ReLU-1x1) halving the channels: 128 -> 512 -> 256 -> 1024 -> 512
       -> 1024 -> 512
    -> BN-ReLU -> statistics pooling [mean; std] (1024) -> Linear -> BN (no affine).

A D-TDNN layer (Yu & Li, Interspeech 2020) is BN-ReLU-1x1 bottleneck (to bn_size * growth)
then BN-ReLU and a context-aware masked TDNN (CAM) whose `growth` outputs are concatenated to
its input (dense connectivity). CAM: y = conv_k(x) * sigmoid(W2 relu(W1 (mean_t x + seg(x)))),
where seg(x) is the mean over the 100-frame segment that contains each frame (global plus
segment-level context).

3D-Speaker's class default is a 512-dim embedding (7.18 M parameters, the VoxCeleb recipe);
the default here is 192 (the dimension of 3D-Speaker's large Chinese CAM++ model and of ECAPA),
set `embedding_dim: 512` to match the VoxCeleb recipe. Statistics pooling uses the biased
variance with eps (safe for one frame) where 3D-Speaker uses the unbiased std.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from speakerops.models.tdnn import check_features, statistics_pooling
from speakerops.models.zoo import register_backbone


def _bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm1d(channels), nn.ReLU())


def segment_means(x: torch.Tensor, seg_len: int) -> torch.Tensor:
    """[B, C, T] -> [B, C, T]: each frame replaced by the mean of its `seg_len`-frame segment
    (segments start at frame 0; the last, shorter one is averaged over its real frames)."""
    # avg_pool1d's ceil-mode window is clipped to the input, so the last segment is averaged
    # over its real frames; expanding by an index keeps every shape static in T (the ONNX
    # export's torch.export traces it for any length; repeat_interleave was data-dependent)
    means = F.avg_pool1d(x, seg_len, seg_len, ceil_mode=True)  # [B, C, ceil(T / seg_len)]
    index = torch.div(torch.arange(x.shape[-1], device=x.device), seg_len, rounding_mode="floor")
    return means.index_select(-1, index)


class ResBlock2d(nn.Module):
    """2-D BasicBlock whose stride applies to frequency only (time resolution is kept)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=(stride, 1), bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class FCM(nn.Module):
    """Front-end convolution module: [B, T, F] -> [B, channels * ceil(F / 8), T]."""

    def __init__(self, n_mels: int, channels: int = 32, num_blocks: Sequence[int] = (2, 2)):
        super().__init__()
        if not num_blocks or min(int(n) for n in num_blocks) < 1:
            raise ValueError(f"FCM: num_blocks must be positive counts, got {list(num_blocks)}")
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layers = nn.Sequential(
            *(
                ResBlock2d(channels, channels, 2 if j == 0 else 1)
                for n in num_blocks
                for j in range(int(n))
            )
        )
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        freq = n_mels
        for _ in range(len(num_blocks) + 1):
            freq = (freq - 1) // 2 + 1
        self.out_channels = channels * freq

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(feats.transpose(1, 2).unsqueeze(1))))
        x = F.relu(self.bn2(self.conv2(self.layers(x))))  # [B, C, F', T]
        return x.flatten(1, 2)


class CAMLayer(nn.Module):
    """Context-aware masking: conv_k(x) * sigmoid(W2 relu(W1 (mean_t x + seg(x))))."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        dilation: int,
        seg_len: int = 100,
        reduction: int = 2,
    ) -> None:
        super().__init__()
        self.seg_len = seg_len
        self.local = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            padding=dilation * (kernel_size - 1) // 2,
            dilation=dilation,
            bias=False,
        )
        self.linear1 = nn.Conv1d(in_channels, in_channels // reduction, 1)
        self.linear2 = nn.Conv1d(in_channels // reduction, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = x.mean(-1, keepdim=True) + segment_means(x, self.seg_len)
        mask = torch.sigmoid(self.linear2(torch.relu(self.linear1(context))))
        return self.local(x) * mask


class CAMDenseLayer(nn.Module):
    """BN-ReLU-1x1 (bottleneck) -> BN-ReLU -> CAM; output `growth` channels."""

    def __init__(
        self,
        in_channels: int,
        growth: int,
        bn_channels: int,
        kernel_size: int,
        dilation: int,
        seg_len: int,
    ) -> None:
        super().__init__()
        self.bottleneck = nn.Sequential(
            _bn_relu(in_channels),
            nn.Conv1d(in_channels, bn_channels, 1, bias=False),
            _bn_relu(bn_channels),
        )
        self.cam = CAMLayer(bn_channels, growth, kernel_size, dilation, seg_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam(self.bottleneck(x))


class CAMDenseBlock(nn.ModuleList):
    """Dense connectivity: x <- [x; layer_i(x)] for each layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)
        return x


@register_backbone("campplus")
class CAMPPlus(nn.Module):
    """Features [B, T, n_mels] -> embeddings [B, embedding_dim]."""

    def __init__(
        self,
        n_mels: int = 80,
        embedding_dim: int = 192,
        fcm_channels: int = 32,
        fcm_blocks: Sequence[int] = (2, 2),
        init_channels: int = 128,
        growth_rate: int = 32,
        bn_size: int = 4,
        block_layers: Sequence[int] = (12, 24, 16),
        block_dilations: Sequence[int] = (1, 2, 2),
        kernel_size: int = 3,
        seg_len: int = 100,
    ) -> None:
        super().__init__()
        block_layers, block_dilations = list(block_layers), list(block_dilations)
        if len(block_layers) != len(block_dilations) or not block_layers:
            raise ValueError(
                f"CAMPPlus: block_layers {block_layers} and block_dilations {block_dilations} "
                "must be non-empty and of equal length"
            )
        if kernel_size % 2 != 1 or seg_len < 1:
            raise ValueError(f"CAMPPlus: kernel_size must be odd ({kernel_size}), seg_len >= 1")
        self.n_mels, self.embedding_dim = n_mels, embedding_dim
        self.fcm = FCM(n_mels, fcm_channels, fcm_blocks)
        layers: list[nn.Module] = [
            nn.Conv1d(self.fcm.out_channels, init_channels, 5, stride=2, padding=2, bias=False),
            _bn_relu(init_channels),
        ]
        channels = init_channels
        for n, dilation in zip(block_layers, block_dilations, strict=True):
            layers.append(
                CAMDenseBlock(
                    CAMDenseLayer(
                        channels + i * growth_rate,
                        growth_rate,
                        bn_size * growth_rate,
                        kernel_size,
                        dilation,
                        seg_len,
                    )
                    for i in range(n)
                )
            )
            channels += n * growth_rate
            layers += [_bn_relu(channels), nn.Conv1d(channels, channels // 2, 1, bias=False)]
            channels //= 2
        layers.append(_bn_relu(channels))
        self.xvector = nn.Sequential(*layers)
        self.out_channels = channels
        self.embedding = nn.Linear(2 * channels, embedding_dim, bias=False)
        self.embedding_bn = nn.BatchNorm1d(embedding_dim, affine=False)
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        check_features(feats, self.n_mels, type(self).__name__)
        x = self.xvector(self.fcm(feats))
        return self.embedding_bn(self.embedding(statistics_pooling(x)))
