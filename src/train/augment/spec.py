"""SpecAugment: frequency and time masking of feature batches (in the LightningModule)."""

from __future__ import annotations

import torch
from torch import nn

from speakerops.train.augment.base import check_p


class SpecAugment(nn.Module):
    """Frequency and time masking on a batch of features ``[B, T, F]`` (training mode only).

    Per utterance, with probability ``p``: ``freq_masks`` bands of width ~ U{1..freq_width} at
    uniform positions and ``time_masks`` spans of width ~ U{1..time_width} are set to 0 (the
    mean of mean-normalized fbank). Identity in eval mode or with ``p = 0``. Randomness from
    the global RNG of the features' device, or from ``generator`` (same device) if given.
    """

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 8,
        time_masks: int = 2,
        time_width: int = 10,
        p: float = 0.5,
    ) -> None:
        super().__init__()
        for name, v in [
            ("freq_masks", freq_masks),
            ("freq_width", freq_width),
            ("time_masks", time_masks),
            ("time_width", time_width),
        ]:
            if int(v) < 0:
                raise ValueError(f"SpecAugment.{name} must be >= 0, got {v}")
        self.freq_masks, self.freq_width = int(freq_masks), int(freq_width)
        self.time_masks, self.time_width = int(time_masks), int(time_width)
        self.p = check_p(p, "SpecAugment")

    def extra_repr(self) -> str:
        return (
            f"freq_masks={self.freq_masks}, freq_width={self.freq_width}, "
            f"time_masks={self.time_masks}, time_width={self.time_width}, p={self.p}"
        )

    @staticmethod
    def _band_mask(
        batch: int,
        n_masks: int,
        max_width: int,
        size: int,
        device: torch.device,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """``[B, size]`` bool: union of ``n_masks`` random bands of width in [1, max_width]."""
        if n_masks == 0 or max_width == 0 or size == 0:
            return torch.zeros(batch, size, dtype=torch.bool, device=device)
        u = torch.rand(batch, n_masks, 2, device=device, generator=generator)
        width = (1 + (u[..., 0] * max_width).floor()).clamp(max=size)
        start = (u[..., 1] * (size - width + 1)).floor()
        pos = torch.arange(size, device=device, dtype=width.dtype)
        inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])
        return inside.any(dim=1)

    def forward(
        self, feats: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return feats
        if feats.dim() != 3:
            raise ValueError(f"SpecAugment expects features [B, T, F], got {tuple(feats.shape)}")
        b, t, f = feats.shape
        dev = feats.device
        apply = torch.rand(b, device=dev, generator=generator) < self.p
        fmask = self._band_mask(b, self.freq_masks, self.freq_width, f, dev, generator)
        tmask = self._band_mask(b, self.time_masks, self.time_width, t, dev, generator)
        mask = (fmask[:, None, :] | tmask[:, :, None]) & apply[:, None, None]
        return feats.masked_fill(mask, 0.0)
