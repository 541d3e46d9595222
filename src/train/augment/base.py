"""The augmentation base class and the argument checks every augmentation shares."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch


def check_range(value: Any, name: str, *, low: float | None = None) -> tuple[float, float]:
    """Validate a (low, high) pair (a scalar means a fixed value)."""
    if isinstance(value, (int, float)):
        pair = (float(value), float(value))
    else:
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{name} must be a number or a (low, high) pair, got {value!r}"
            ) from None
        pair = (lo, hi)
    if not (math.isfinite(pair[0]) and math.isfinite(pair[1])) or pair[0] > pair[1]:
        raise ValueError(
            f"{name} must be a finite (low, high) pair with low <= high, got {value!r}"
        )
    if low is not None and pair[0] < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return pair


def check_p(p: float, name: str) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}.p must be in [0, 1], got {p}")
    return p


def to_plain(value: Any) -> Any:
    """OmegaConf containers (or any mapping/sequence) to plain dict/list."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [to_plain(v) for v in value]
    return value


class Augmentation:
    """Base class: ``aug(wav, generator, sample_rate)`` applies ``self.apply`` with probability p.

    Subclasses implement ``apply(wav, generator, sample_rate) -> Tensor`` with the same length.
    """

    p: float = 1.0

    def __call__(
        self, wav: torch.Tensor, generator: torch.Generator, sample_rate: int
    ) -> torch.Tensor:
        if self.p <= 0.0:
            return wav
        if float(torch.rand((), generator=generator)) >= self.p:
            return wav
        return self.apply(wav, generator, sample_rate)

    def apply(
        self, wav: torch.Tensor, generator: torch.Generator, sample_rate: int
    ) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k != "p"
        )
        return f"{type(self).__name__}(p={self.p}{', ' if fields else ''}{fields})"
