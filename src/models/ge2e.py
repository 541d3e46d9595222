"""GE2E speaker encoder (Wan et al. 2018, "Generalized End-to-End Loss for Speaker
Verification"), the architecture of resemblyzer 0.1.4's pretrained `VoiceEncoder`.

    features [B, T, n_mels] (the `mel_power` front end: 40-band mel power spectrogram)
      -> 3-layer LSTM (256 units, batch first)
      -> the last layer's final hidden state h_T [B, 256]
      -> Linear 256 -> 256 (the projection) -> ReLU
      -> L2 normalization                                  -> embedding [B, 256]

The parameter names (`lstm.*`, `linear.*`) are resemblyzer's, so its state dict maps one to
one (`speakerops.models.importers.resemblyzer`). resemblyzer embeds an utterance as the mean of
the L2-normalized embeddings of 1.6 s windows; in speakerops that is the encoder's windowed
inference (`window:` in `conf/model/ge2e.yaml`, `speakerops.models.windowing`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speakerops.models.zoo import register_backbone


@register_backbone("ge2e")
class GE2E(nn.Module):
    """LSTM speaker encoder: `forward(feats [B, T, n_mels]) -> L2-normalized [B, embedding_dim]`."""

    def __init__(self, n_mels: int, hidden_size: int, num_layers: int, embedding_dim: int) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.lstm = nn.LSTM(n_mels, hidden_size, num_layers, batch_first=True)
        self.linear = nn.Linear(hidden_size, embedding_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(feats)
        return F.normalize(F.relu(self.linear(hidden[-1])), dim=1)
