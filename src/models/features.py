"""The front ends: one definition shared by training, evaluation and serving.

`frontend: log_fbank` (speakerops' own models): 80-dim log Mel fbank, 25 ms window / 10 ms hop
(Hamming, frames inside the signal), per-utterance mean normalization:
    F[t, m] = log(sum_k |X_t(k)|^2 H_m(k) + eps) - mean_t' F[t', m]

`frontend: mel_power` (GE2E as resemblyzer 0.1.4 computes it, `resemblyzer.audio.
wav_to_mel_spectrogram`, i.e. `librosa.feature.melspectrogram` with its defaults): the mel
*power* spectrogram, not its log, n_fft = the window (400 samples at 16 kHz), periodic Hann
window, centred frames (zero padding of n_fft/2 at both ends), Slaney mel scale with Slaney
(area) normalization of the filters, 0 Hz to Nyquist, no mean normalization:
    F[t, m] = sum_k |X_t(k)|^2 H_m(k)

`frontend: sb_fbank` (SpeechBrain 1.1's `speechbrain.lobes.features.Fbank` with its defaults,
the front end of its ECAPA-TDNN recipes; the imported SpeechBrain encoders): power spectrogram
(n_fft = the window, 400 samples at 16 kHz, periodic Hamming window, centred frames with zero
padding), SpeechBrain's own triangular filters (HTK mel scale, centres `hz[1:-1]` of n_mels + 2
points equally spaced in mel from f_min to f_max, each filter symmetric with the half-width
`hz[i] - hz[i-1]`, no area normalization), in dB with SpeechBrain's floor:
    F[t, m] = max(10 log10(max(P[t, m], 1e-10)), max_{t', m'} F[t', m'] - 80)
then the sentence mean subtracted (`InputNormalization(norm_type="sentence", std_norm=False)`).

`log_fbank` and `mel_power` are `torchaudio.transforms.MelSpectrogram`, batched. `raw` gives the
features before mean normalization and `normalize` applies it, so windowed inference can
normalize each window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torchaudio
from torch import nn

FRONTENDS = ("log_fbank", "mel_power", "sb_fbank")
SB_AMIN, SB_TOP_DB = 1e-10, 80.0  # SpeechBrain Filterbank's amin and top_db


@dataclass(frozen=True)
class FeatureConfig:
    """Front-end settings; they travel inside every packaged model (conf/features/ holds the
    values; `frontend`'s default is what encoder files written before it existed mean)."""

    sample_rate: int = 16000
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    f_min: float = 20.0
    f_max: float = 7600.0
    mean_norm: bool = True
    frontend: str = "log_fbank"

    def __post_init__(self) -> None:
        if self.frontend not in FRONTENDS:
            raise ValueError(
                f"features.frontend={self.frontend!r}: expected one of {', '.join(FRONTENDS)}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


class Fbank(nn.Module):
    """Waveforms [B, S] -> features [B, T, n_mels] (see the module docstring for the two kinds)."""

    def __init__(self, config: FeatureConfig | None = None, **kwargs) -> None:
        super().__init__()
        self.config = config or FeatureConfig(**kwargs)
        c = self.config
        win = int(round(c.sample_rate * c.win_ms / 1000))
        hop = int(round(c.sample_rate * c.hop_ms / 1000))
        power_spectrum = c.frontend == "mel_power"
        self.sb = SpeechBrainFbank(c, win, hop) if c.frontend == "sb_fbank" else None
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=c.sample_rate,
            n_fft=win if power_spectrum else 1 << (win - 1).bit_length(),
            win_length=win,
            hop_length=hop,
            f_min=c.f_min,
            f_max=min(c.f_max, c.sample_rate / 2),
            n_mels=c.n_mels,
            window_fn=torch.hann_window if power_spectrum else torch.hamming_window,
            power=2.0,
            center=power_spectrum,
            pad_mode="constant",
            norm="slaney" if power_spectrum else None,
            mel_scale="slaney" if power_spectrum else "htk",
        )

    @property
    def min_samples(self) -> int:
        """Shortest input that yields one full frame."""
        return self.sb.n_fft if self.sb is not None else self.mel.n_fft

    @property
    def hop_samples(self) -> int:
        """Samples between frames."""
        return self.sb.hop if self.sb is not None else self.mel.hop_length

    @torch.no_grad()
    def raw(self, wav: torch.Tensor) -> torch.Tensor:
        """Features before mean normalization, [B, T, n_mels]."""
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        if wav.shape[-1] < self.min_samples:
            wav = torch.nn.functional.pad(wav, (0, self.min_samples - wav.shape[-1]))
        if self.sb is not None:
            return self.sb(wav.float())
        feats = self.mel(wav.float())
        if self.config.frontend == "log_fbank":
            feats = (feats + 1e-6).log()
        return feats.transpose(1, 2)  # [B, T, M]

    def normalize(self, feats: torch.Tensor) -> torch.Tensor:
        """Per-utterance (or per-window) mean normalization over time, when configured."""
        if self.config.mean_norm:
            feats = feats - feats.mean(dim=1, keepdim=True)
        return feats

    @torch.no_grad()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.raw(wav))


class SpeechBrainFbank(nn.Module):
    """SpeechBrain's Fbank (STFT -> power -> its triangular filters -> dB with an 80 dB floor):
    waveforms [B, S] -> [B, T, n_mels], before the sentence mean normalization."""

    def __init__(self, c: FeatureConfig, win: int, hop: int) -> None:
        super().__init__()
        self.n_fft, self.win, self.hop = win, win, hop
        self.register_buffer("window", torch.hamming_window(win), persistent=False)

        def to_mel(hz: float) -> float:
            return 2595 * math.log10(1 + hz / 700)

        mel = torch.linspace(to_mel(c.f_min), to_mel(c.f_max), c.n_mels + 2)
        hz = 700 * (10 ** (mel / 2595) - 1)
        band, central = (hz[1:] - hz[:-1])[:-1], hz[1:-1]
        freqs = torch.linspace(0, c.sample_rate // 2, win // 2 + 1)
        slope = (freqs[None, :] - central[:, None]) / band[:, None]  # [n_mels, n_stft]
        filters = torch.clamp(torch.min(slope + 1.0, -slope + 1.0), min=0.0).transpose(0, 1)
        self.register_buffer("filters", filters, persistent=False)  # [n_stft, n_mels]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        stft = torch.stft(
            wav,
            self.n_fft,
            self.hop,
            self.win,
            self.window,
            center=True,
            pad_mode="constant",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        power = torch.view_as_real(stft).pow(2).sum(-1).transpose(2, 1)  # [B, T, n_stft]
        x_db = 10 * torch.log10(torch.clamp(torch.matmul(power, self.filters), min=SB_AMIN))
        floor = x_db.amax(dim=(-2, -1)) - SB_TOP_DB
        return torch.max(x_db, floor.view(-1, 1, 1))
