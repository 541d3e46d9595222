"""Additive angular margin softmax (AAM-softmax / ArcFace) with margin warm-up."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class AAMSoftmax(nn.Module):
    """L = -log( e^{s cos(θ_y + m)} / (e^{s cos(θ_y + m)} + Σ_{j≠y} e^{s cos θ_j}) ).

    θ_j is the angle between the normalized embedding and class weight j. `margin` is the
    target margin; `set_margin_fraction(f)` scales it during warm-up (f in [0, 1]).
    """

    def __init__(
        self, embedding_dim: int, num_classes: int, margin: float = 0.2, scale: float = 30.0
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_normal_(self.weight)
        self.target_margin = margin
        self.scale = scale
        self.margin = margin

    def set_margin_fraction(self, fraction: float) -> None:
        self.margin = self.target_margin * min(max(fraction, 0.0), 1.0)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = F.linear(F.normalize(embeddings), F.normalize(self.weight)).clamp(
            -1 + 1e-7, 1 - 1e-7
        )
        cos_m, sin_m = math.cos(self.margin), math.sin(self.margin)
        sine = (1.0 - cosine * cosine).sqrt()
        phi = cosine * cos_m - sine * sin_m  # cos(θ + m)
        # beyond θ + m > π keep the function monotonic (ArcFace's "easy margin" fallback)
        phi = torch.where(
            cosine > math.cos(math.pi - self.margin),
            phi,
            cosine - math.sin(math.pi - self.margin) * self.margin,
        )
        one_hot = F.one_hot(labels, cosine.shape[1]).to(cosine.dtype)
        return self.scale * (one_hot * phi + (1 - one_hot) * cosine)

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (loss, accuracy)."""
        logits = self.logits(embeddings, labels)
        loss = F.cross_entropy(logits, labels)
        acc = (logits.argmax(dim=1) == labels).float().mean()
        return loss, acc
