"""Windowed inference: a long utterance embedded as overlapping windows, averaged.

A model config may carry `window: {length_s, hop_s, min_coverage}` (`conf/model/ge2e.yaml`);
the encoder then embeds a whole utterance as resemblyzer's `VoiceEncoder.embed_utterance` does:

1. the frame plan (`plan`): windows of W = round(length_s * rate / hop) frames start every
   H = round(hop_s * rate / hop) frames, over N = ceil((S + 1) / hop) frames of an S-sample
   utterance, starts 0, H, 2H, ... < max(1, N - W + H + 1); the last window is dropped when
   audio covers less than `min_coverage` of it, unless it is the only one;
2. the utterance is zero-padded past its end to cover the last window, the front end runs once
   over the whole of it (so a frame at a window's edge sees the audio around it, as in
   resemblyzer) and each window's frames are cut out of it, then normalized per window when the
   front end normalizes (`features.mean_norm`);
3. the backbone embeds the windows as one batch; their L2-normalized embeddings are averaged
   and the mean L2-normalized.

Without `window` (null or absent) an utterance is one pass of the backbone, as in training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speakerops.models.features import Fbank

WINDOW_KEY = "window"  # the model config's key (not a backbone argument)


@dataclass(frozen=True)
class Window:
    length_s: float
    hop_s: float
    min_coverage: float

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any] | None) -> Window | None:
        """The `window` node of a model config (None: whole-utterance inference)."""
        if cfg is None:
            return None
        if not isinstance(cfg, Mapping) or set(cfg) != {"length_s", "hop_s", "min_coverage"}:
            raise ValueError(
                f"model.window={cfg!r}: expected null or {{length_s, hop_s, min_coverage}}"
            )
        win = cls(float(cfg["length_s"]), float(cfg["hop_s"]), float(cfg["min_coverage"]))
        if not win.length_s > 0:
            raise ValueError(f"model.window.length_s={win.length_s}: must be > 0 seconds")
        if not 0 < win.hop_s <= win.length_s:
            raise ValueError(
                f"model.window.hop_s={win.hop_s}: must be > 0 and <= length_s ({win.length_s})"
            )
        if not 0 < win.min_coverage <= 1:
            raise ValueError(f"model.window.min_coverage={win.min_coverage}: must be in (0, 1]")
        return win

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def plan(self, n_samples: int, sample_rate: int, hop_samples: int) -> tuple[list[int], int]:
        """(start frame of each window, window length in frames) for an utterance."""
        win = max(1, round(self.length_s * sample_rate / hop_samples))
        step = max(1, round(self.hop_s * sample_rate / hop_samples))
        n_frames = math.ceil((n_samples + 1) / hop_samples)
        starts = list(range(0, max(1, n_frames - win + step + 1), step))
        coverage = (n_samples - starts[-1] * hop_samples) / (win * hop_samples)
        if coverage < self.min_coverage and len(starts) > 1:
            starts.pop()
        return starts, win


def embed_windows(
    wav: torch.Tensor, fbank: Fbank, backbone: nn.Module, window: Window
) -> torch.Tensor:
    """Embedding [D] of one waveform [S] as the normalized mean of its windows' embeddings."""
    hop = fbank.hop_samples
    starts, win = window.plan(wav.shape[-1], fbank.config.sample_rate, hop)
    # pad past the last window by one FFT length, so that every window has all its frames
    # whether frames are centred or not (the padding is zeros after the end, as resemblyzer's)
    need = (starts[-1] + win) * hop + fbank.min_samples
    wav = F.pad(wav, (0, max(0, need - wav.shape[-1])))
    feats = fbank.raw(wav[None])[0]
    windows = fbank.normalize(torch.stack([feats[s : s + win] for s in starts]))
    mean = F.normalize(backbone(windows), dim=1).mean(dim=0)
    return F.normalize(mean, dim=0)
