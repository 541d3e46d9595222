"""A speaker encoder: waveform in, embedding out, with its front end and settings inside.

The saved file (`torch.save`) is self-describing:
    {"format": "speakerops-encoder/1", "model": <Hydra node of the backbone>,
     "features": FeatureConfig as dict, "state_dict": ..., "extras": {...}}
`extras` carries what travels with a model (e.g. calibration, cohort); nothing downstream
re-declares the sample rate or the feature settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from speakerops.models.features import Fbank, FeatureConfig

FORMAT = "speakerops-encoder/1"


def build_backbone(model_cfg: dict) -> nn.Module:
    """Instantiate a backbone from its Hydra node (`_target_` plus arguments)."""
    from hydra.utils import instantiate

    return instantiate(model_cfg)


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
        self.model_cfg = dict(model_cfg or {})
        self.extras: dict[str, Any] = dict(extras or {})

    @property
    def sample_rate(self) -> int:
        return self.fbank.config.sample_rate

    @property
    def embedding_dim(self) -> int:
        return int(getattr(self.backbone, "embedding_dim", 0))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.fbank(wav))

    @torch.no_grad()
    def embed(self, wav: np.ndarray | torch.Tensor, sample_rate: int | None = None) -> np.ndarray:
        """Embedding of one mono waveform (resampled to the model's rate when needed)."""
        from speakerops.data.audio import validate_waveform

        arr = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
        arr, _ = validate_waveform(
            arr, sample_rate or self.sample_rate, "waveform", self.sample_rate
        )
        self.eval()
        return self.forward(torch.from_numpy(arr)[None])[0].cpu().numpy()

    @torch.no_grad()
    def embed_file(self, path: str | Path) -> np.ndarray:
        """Embedding of an audio file at any sample rate."""
        from speakerops.data.audio import load_audio

        wav, _ = load_audio(path, self.sample_rate)
        return self.embed(wav, self.sample_rate)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "format": FORMAT,
                "model": self.model_cfg,
                "features": self.fbank.config.to_dict(),
                "state_dict": self.backbone.state_dict(),
                "extras": self.extras,
            },
            path,
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> SpeakerEncoder:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: encoder file not found")
        blob = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise ValueError(f"{path}: not a speakerops encoder (expected format {FORMAT})")
        backbone = build_backbone(blob["model"])
        backbone.load_state_dict(blob["state_dict"])
        enc = cls(backbone, FeatureConfig(**blob["features"]), blob["model"], blob.get("extras"))
        return enc.eval()
