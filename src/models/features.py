"""Log Mel filterbank front end: the one definition shared by training, evaluation and serving.

80-dim log Mel fbank, 25 ms window / 10 ms hop (Hamming), per-utterance mean normalization:
    F[t, m] = log(sum_k |X_t(k)|^2 H_m(k) + eps) - mean_t' F[t', m]
Computed with `torchaudio.transforms.MelSpectrogram`, batched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchaudio
from torch import nn


@dataclass(frozen=True)
class FeatureConfig:
    """Front-end settings; they travel inside every packaged model."""

    sample_rate: int = 16000
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    f_min: float = 20.0
    f_max: float = 7600.0
    mean_norm: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


class Fbank(nn.Module):
    """Waveforms [B, S] -> mean-normalized log Mel features [B, T, n_mels]."""

    def __init__(self, config: FeatureConfig | None = None, **kwargs) -> None:
        super().__init__()
        self.config = config or FeatureConfig(**kwargs)
        c = self.config
        win = int(round(c.sample_rate * c.win_ms / 1000))
        hop = int(round(c.sample_rate * c.hop_ms / 1000))
        n_fft = 1 << (win - 1).bit_length()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=c.sample_rate,
            n_fft=n_fft,
            win_length=win,
            hop_length=hop,
            f_min=c.f_min,
            f_max=min(c.f_max, c.sample_rate / 2),
            n_mels=c.n_mels,
            window_fn=torch.hamming_window,
            power=2.0,
            center=False,
        )

    @property
    def min_samples(self) -> int:
        """Shortest input that yields one frame."""
        return self.mel.n_fft

    @property
    def hop_samples(self) -> int:
        """Samples between frames."""
        return self.mel.hop_length

    @torch.no_grad()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        if wav.shape[-1] < self.min_samples:
            wav = torch.nn.functional.pad(wav, (0, self.min_samples - wav.shape[-1]))
        feats = (self.mel(wav.float()) + 1e-6).log().transpose(1, 2)  # [B, T, M]
        if self.config.mean_norm:
            feats = feats - feats.mean(dim=1, keepdim=True)
        return feats
