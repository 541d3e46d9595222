"""ECAPA-TDNN exactly as SpeechBrain 1.1 builds it (`speechbrain.lobes.models.ECAPA_TDNN`), so a
SpeechBrain `embedding_model.ckpt` maps one to one onto speakerops' own code
(`speakerops.models.importers.from_speechbrain`). The module tree and parameter names are
SpeechBrain's (`blocks.0.conv.conv.weight`, `blocks.1.res2net_block.blocks.0.norm.norm.weight`,
`mfa`, `asp.tdnn`, `asp.conv`, `asp_bn.norm`, `fc.conv`); where it differs from speakerops'
`ecapa_tdnn` (`speakerops.models.ecapa`):

- every convolution pads "same" with *reflection* (`padding_mode="reflect"`), so an input needs
  more frames than the largest padding (dilation x (kernel - 1) / 2; 4 with the defaults);
- a TDNN block is conv -> activation -> BatchNorm (the MFA layer too), dropout off;
- the Res2Net block passes its *first* channel group through and feeds group i + (output i-1)
  into the next convolution;
- the SE block's squeeze is a mean over time; a residual 1x1 conv when channels change;
- attentive statistics pooling with global context: mean and std (sqrt of the clamped variance,
  eps 1e-12) over time, [x; mean; std] -> TDNN -> tanh -> 1x1 conv -> softmax over time, then the
  weighted mean and std;
- BatchNorm over the pooled statistics, then a 1x1 conv to the embedding (no BatchNorm after).

Whole utterances only (SpeechBrain's relative `lengths` are all 1 here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speakerops.data.audio import AudioError
from speakerops.models.zoo import register_backbone


class _Conv(nn.Module):
    """SpeechBrain's `Conv1d` (skip_transpose): "same" reflection padding, then `conv`."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int = 1, groups: int = 1):
        super().__init__()
        self.pad = dilation * (kernel - 1) // 2
        self.conv = nn.Conv1d(cin, cout, kernel, dilation=dilation, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = F.pad(x, (self.pad, self.pad), mode="reflect")
        return self.conv(x)


class _BatchNorm(nn.Module):
    """SpeechBrain's `BatchNorm1d` (skip_transpose): the `norm` inside."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class TDNNBlock(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, dilation: int, groups: int = 1):
        super().__init__()
        self.conv = _Conv(cin, cout, kernel, dilation, groups)
        self.activation = nn.ReLU()
        self.norm = _BatchNorm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.activation(self.conv(x)))


class Res2NetBlock(nn.Module):
    def __init__(self, channels: int, scale: int, kernel: int, dilation: int) -> None:
        super().__init__()
        if channels % scale:
            raise ValueError(
                f"model.channels {channels} must be divisible by res2net_scale {scale}"
            )
        width = channels // scale
        self.scale = scale
        self.blocks = nn.ModuleList(
            TDNNBlock(width, width, kernel, dilation) for _ in range(scale - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: list[torch.Tensor] = []
        for i, chunk in enumerate(torch.chunk(x, self.scale, dim=1)):
            if i == 0:
                y = chunk
            elif i == 1:
                y = self.blocks[0](chunk)
            else:
                y = self.blocks[i - 1](chunk + y)
            out.append(y)
        return torch.cat(out, dim=1)


class SEBlock(nn.Module):
    def __init__(self, channels: int, se_channels: int) -> None:
        super().__init__()
        self.conv1 = _Conv(channels, se_channels, 1)
        self.conv2 = _Conv(se_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.conv1(x.mean(dim=2, keepdim=True)))
        return torch.sigmoid(self.conv2(s)) * x


class SERes2NetBlock(nn.Module):
    def __init__(
        self,
        cin: int,
        cout: int,
        scale: int,
        se_channels: int,
        kernel: int,
        dilation: int,
        groups: int,
    ) -> None:
        super().__init__()
        self.tdnn1 = TDNNBlock(cin, cout, 1, 1, groups)
        self.res2net_block = Res2NetBlock(cout, scale, kernel, dilation)
        self.tdnn2 = TDNNBlock(cout, cout, 1, 1, groups)
        self.se_block = SEBlock(cout, se_channels)
        self.shortcut = _Conv(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut(x) if self.shortcut is not None else x
        return self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(x)))) + residual


def _stats(
    x: torch.Tensor, w: torch.Tensor, eps: float = 1e-12
) -> tuple[torch.Tensor, torch.Tensor]:
    mean = (w * x).sum(2)
    std = torch.sqrt((w * (x - mean.unsqueeze(2)).pow(2)).sum(2).clamp(eps))
    return mean, std


class AttentiveStatisticsPooling(nn.Module):
    def __init__(self, channels: int, attention_channels: int, global_context: bool) -> None:
        super().__init__()
        self.global_context = global_context
        self.tdnn = TDNNBlock(channels * (3 if global_context else 1), attention_channels, 1, 1)
        self.conv = _Conv(attention_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[-1]
        attn = x
        if self.global_context:
            mean, std = _stats(x, torch.full_like(x[:, :1], 1.0 / t))
            attn = torch.cat(
                [x, mean.unsqueeze(2).expand(-1, -1, t), std.unsqueeze(2).expand(-1, -1, t)], 1
            )
        weights = F.softmax(self.conv(torch.tanh(self.tdnn(attn))), dim=2)
        mean, std = _stats(x, weights)
        return torch.cat((mean, std), dim=1).unsqueeze(2)


@register_backbone("ecapa_speechbrain")
class SpeechBrainECAPA(nn.Module):
    """Features [B, T, n_mels] -> embeddings [B, embedding_dim] (SpeechBrain's `lin_neurons`)."""

    def __init__(
        self,
        n_mels: int,
        layer_channels: list[int],
        kernel_sizes: list[int],
        dilations: list[int],
        attention_channels: int,
        res2net_scale: int,
        se_channels: int,
        global_context: bool,
        groups: list[int],
        embedding_dim: int,
    ) -> None:
        super().__init__()
        channels = layer_channels  # SpeechBrain's `channels` (model.channels is an int here)
        if not len(channels) == len(kernel_sizes) == len(dilations) == len(groups) >= 3:
            raise ValueError(
                "model: layer_channels, kernel_sizes, dilations and groups need one entry per layer "
                f"(>= 3), got {len(channels)}, {len(kernel_sizes)}, {len(dilations)}, {len(groups)}"
            )
        self.embedding_dim = embedding_dim
        self.min_frames = 1 + max(
            d * (k - 1) // 2 for k, d in zip(kernel_sizes, dilations, strict=True)
        )
        self.blocks = nn.ModuleList(
            [TDNNBlock(n_mels, channels[0], kernel_sizes[0], dilations[0], groups[0])]
        )
        for i in range(1, len(channels) - 1):
            self.blocks.append(
                SERes2NetBlock(
                    channels[i - 1],
                    channels[i],
                    res2net_scale,
                    se_channels,
                    kernel_sizes[i],
                    dilations[i],
                    groups[i],
                )
            )
        self.mfa = TDNNBlock(
            channels[-2] * (len(channels) - 2),
            channels[-1],
            kernel_sizes[-1],
            dilations[-1],
            groups[-1],
        )
        self.asp = AttentiveStatisticsPooling(channels[-1], attention_channels, global_context)
        self.asp_bn = _BatchNorm(channels[-1] * 2)
        self.fc = _Conv(channels[-1] * 2, embedding_dim, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.shape[1] < self.min_frames:
            raise AudioError(
                f"{feats.shape[1]} frames: this ECAPA-TDNN (reflection padding) needs at least "
                f"{self.min_frames}"
            )
        x = feats.transpose(1, 2)
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        x = self.mfa(torch.cat(outs[1:], dim=1))
        return self.fc(self.asp_bn(self.asp(x)))[:, :, 0]
