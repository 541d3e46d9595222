"""The zoo's edge model: a slim CAM++ under 1 M parameters (0.93 M with the defaults).

Why this design. On VoxCeleb the models with a small 2-D convolutional front end over
(frequency, time) hold the accuracy-per-parameter frontier over purely 1-D TDNNs: ResNet34
(6.6 M) beats ECAPA-TDNN C=1024 (14.7 M) in WeSpeaker's results (Wang et al., ICASSP 2023),
and CAM++ (7.2 M) beats both with fewer FLOPs than ECAPA C=1024 (Wang et al., Interspeech 2023).
CAM++ spends few parameters on the 2-D part (the FCM front end gives local
frequency-shift invariance) and most on densely connected TDNN layers (D-TDNN, Yu & Li,
Interspeech 2020) that run at half the frame rate. Dense connectivity reuses every earlier
feature map, so layers can stay narrow (16 new channels each) without starving later layers,
which is what a < 1 M budget needs (DenseNet, Huang et al., CVPR 2017). Each D-TDNN layer is
already a pointwise bottleneck followed by a small temporal convolution, i.e. the
parameter-efficient factorisation that depthwise-separable designs aim for.

Scaled down from CAM++ (full model -> edge):
    FCM channels         32 -> 16        (F' x 16 = 160 channels out of the front end)
    initial TDNN width  128 -> 64
    growth rate          32 -> 16        (bottleneck 4 x growth = 64)
    layers per block  12/24/16 -> 8/16/10
    embedding           192              (unchanged; the AAM head and cosine scoring see it)
About 0.93 M parameters and ~0.4 GFLOPs for 2 s of audio, measured by
`bench/bench_models.py`. The 1-D alternative of the same size is ECAPA-TDNN with C=128
(`model=ecapa_small`, 0.66 M, fewer FLOPs); which one wins at this size on real data has not
been measured here: compare them with a VoxCeleb run before shipping either.
"""

from __future__ import annotations

from collections.abc import Sequence

from speakerops.models.campplus import CAMPPlus
from speakerops.models.zoo import register_backbone

MAX_PARAMETERS = 1_000_000


@register_backbone("edge_campplus")
class EdgeCAMPPlus(CAMPPlus):
    """Features [B, T, n_mels] -> embeddings [B, embedding_dim].

    Construction fails when the parameter count exceeds `max_parameters` (1 M; None = no
    limit), so an override cannot silently turn the edge model into a large one.
    """

    def __init__(
        self,
        n_mels: int = 80,
        embedding_dim: int = 192,
        fcm_channels: int = 16,
        fcm_blocks: Sequence[int] = (2, 2),
        init_channels: int = 64,
        growth_rate: int = 16,
        bn_size: int = 4,
        block_layers: Sequence[int] = (8, 16, 10),
        block_dilations: Sequence[int] = (1, 2, 2),
        kernel_size: int = 3,
        seg_len: int = 100,
        max_parameters: int | None = MAX_PARAMETERS,
    ) -> None:
        super().__init__(
            n_mels=n_mels,
            embedding_dim=embedding_dim,
            fcm_channels=fcm_channels,
            fcm_blocks=fcm_blocks,
            init_channels=init_channels,
            growth_rate=growth_rate,
            bn_size=bn_size,
            block_layers=block_layers,
            block_dilations=block_dilations,
            kernel_size=kernel_size,
            seg_len=seg_len,
        )
        count = sum(p.numel() for p in self.parameters())
        if max_parameters is not None and count > max_parameters:
            raise ValueError(
                f"EdgeCAMPPlus: {count:,} parameters exceed the edge budget max_parameters="
                f"{max_parameters:,}; shrink the widths/layers or set model.max_parameters=null"
            )
