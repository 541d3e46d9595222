"""A speaker encoder: waveform in, embedding out, with its front end and settings inside.

The saved file is data (see `speakerops.models.encoder_file`): safetensors weights plus JSON
naming the architecture (from `speakerops.models.zoo`), its arguments, the feature settings
and `extras` (what travels with a model: calibration, scoring with the AS-norm cohort,
operating point, the number of training speakers); nothing downstream re-declares the sample rate or the
feature settings.

The encoder never emits a non-finite embedding: inputs shorter than `min_samples` (two frames
of the front end) are refused before they reach the backbone, and an output with NaN/Inf is
refused with an error naming the input.

A model config with `window:` (`speakerops.models.windowing`) embeds each utterance as the mean
of overlapping windows (GE2E: resemblyzer's 1.6 s windows); the window settings travel in the
file with the model's arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from speakerops.data.audio import AudioError, load_audio, validate_waveform
from speakerops.models import encoder_file
from speakerops.models.encoder_file import FILENAME, FORMAT, EncoderFile
from speakerops.models.features import Fbank, FeatureConfig
from speakerops.models.windowing import WINDOW_KEY, Window, embed_windows
from speakerops.models.zoo import arch_of, build_backbone, model_spec

__all__ = ["FILENAME", "FORMAT", "SpeakerEncoder", "build_backbone"]

MIN_FRAMES = 2  # statistics pooling needs a spread over time


class SpeakerEncoder(nn.Module):
    """Fbank front end + backbone. `forward(wav [B, S]) -> embeddings [B, D]`."""

    def __init__(
        self,
        backbone: nn.Module,
        features: FeatureConfig,
        model_cfg: dict | None = None,
        extras: dict | None = None,
    ) -> None:
        super().__init__()
        self.fbank = Fbank(features)
        self.backbone = backbone
        arch, kwargs = model_spec(model_cfg) if model_cfg else (arch_of(backbone), {})
        if arch != arch_of(backbone):
            raise ValueError(
                f"model config names arch {arch!r}, the backbone is {arch_of(backbone)!r}"
            )
        self.window = Window.from_cfg((model_cfg or {}).get(WINDOW_KEY))
        self.model_cfg: dict[str, Any] = {"arch": arch, **kwargs}
        if self.window is not None:
            self.model_cfg[WINDOW_KEY] = self.window.to_dict()
        self.extras: dict[str, Any] = dict(extras or {})

    @property
    def sample_rate(self) -> int:
        return self.fbank.config.sample_rate

    @property
    def embedding_dim(self) -> int:
        return int(getattr(self.backbone, "embedding_dim", 0))

    @property
    def min_samples(self) -> int:
        """Shortest input the encoder takes: `MIN_FRAMES` frames of the front end, or more when
        the backbone says so (its `min_frames`, e.g. reflection padding)."""
        frames = max(MIN_FRAMES, int(getattr(self.backbone, "min_frames", MIN_FRAMES)))
        return self.fbank.min_samples + (frames - 1) * self.fbank.hop_samples

    def forward(self, wav: torch.Tensor, name: str = "waveform") -> torch.Tensor:
        if wav.shape[-1] < self.min_samples:
            rate = self.sample_rate
            raise AudioError(
                f"{name}: {wav.shape[-1] / rate * 1000:.1f} ms of audio ({wav.shape[-1]} samples "
                f"at {rate} Hz) is shorter than the encoder's minimum "
                f"{self.min_samples / rate * 1000:.1f} ms ({self.min_samples} samples)"
            )
        if self.window is None:
            out = self.backbone(self.fbank(wav))
        else:
            window = self.window
            out = torch.stack([embed_windows(w, self.fbank, self.backbone, window) for w in wav])
        if not bool(torch.isfinite(out).all()):
            raise AudioError(
                f"{name}: the encoder produced a non-finite embedding (NaN/Inf): refused"
            )
        return out

    @torch.no_grad()
    def embed(
        self, wav: np.ndarray | torch.Tensor, sample_rate: int | None = None, name: str = "waveform"
    ) -> np.ndarray:
        """Embedding of one mono waveform (resampled to the model's rate when needed)."""
        arr = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
        arr, _ = validate_waveform(arr, sample_rate or self.sample_rate, name, self.sample_rate)
        if self.training:  # eval() walks every module: not on each request
            self.eval()
        return self.forward(torch.from_numpy(arr)[None], name)[0].cpu().numpy()

    @torch.no_grad()
    def embed_file(self, path: str | Path) -> np.ndarray:
        """Embedding of an audio file at any sample rate."""
        wav, _ = load_audio(path, self.sample_rate)
        return self.embed(wav, self.sample_rate, str(path))

    def to_file(self) -> EncoderFile:
        arch, kwargs = model_spec(self.model_cfg)
        if self.window is not None:
            kwargs[WINDOW_KEY] = self.window.to_dict()
        return EncoderFile(
            arch,
            kwargs,
            self.fbank.config.to_dict(),
            dict(self.backbone.state_dict()),
            self.extras,
        )

    def save(self, path: str | Path) -> Path:
        """Write `path` (`*.safetensors`) and its sha256 sidecar; returns `path`."""
        encoder_file.write(path, self.to_file())
        return Path(path)

    @classmethod
    def from_file(cls, content: EncoderFile, name: str = "encoder") -> SpeakerEncoder:
        backbone = build_backbone(content.model_cfg)
        try:
            backbone.load_state_dict(content.state_dict)
        except RuntimeError as exc:
            raise ValueError(f"{name}: weights do not fit arch {content.arch}: {exc}") from None
        enc = cls(backbone, FeatureConfig(**content.features), content.model_cfg, content.extras)
        return enc.eval()

    @classmethod
    def load(cls, path: str | Path, sha256: str | None = None) -> SpeakerEncoder:
        """Load an encoder file, checked against `sha256` (default: its sidecar)."""
        return cls.from_file(encoder_file.read(path, sha256), str(path))
