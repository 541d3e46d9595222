"""In-memory bank of audio files (noise, RIRs), decoded lazily at a target rate and cached."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speakerops.data.audio import AudioError, audio_info, read_audio
from speakerops.data.channel.level import randint
from speakerops.data.crop import crop_or_tile
from speakerops.data.resample import resample

log = logging.getLogger(__name__)


def _read_channels(path: Path, *, start: int = 0, frames: int = -1) -> tuple[np.ndarray, int]:
    """``[channels, samples]`` float32 of ``path`` (the one reader, `data.audio.read_audio`)."""
    data, rate = read_audio(path, start, frames)
    return np.ascontiguousarray(data.T), rate


class AudioBank:
    """Files of one kind, decoded lazily to ``[C, L]`` float32 at a target rate and cached.

    ``mono=True`` averages channels. ``transform`` (e.g. RIR normalization) runs once per file
    before caching. The cache holds at most ``cache_mb`` MiB; it is dropped when pickled.
    """

    def __init__(
        self,
        files: Sequence[Path],
        *,
        mono: bool,
        cache_mb: float,
        transform: Callable[[torch.Tensor, Path], torch.Tensor] | None = None,
    ) -> None:
        self.files = [Path(f) for f in files]
        self.mono = mono
        self.cache_bytes = int(cache_mb * 2**20)
        self.transform = transform
        self._cache: dict[tuple[int, int], torch.Tensor] = {}
        self._cached_bytes = 0
        self._info: dict[int, tuple[int, int, int]] = {}  # idx -> (rate, frames, channels)
        self._warned = False

    def __len__(self) -> int:
        return len(self.files)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {}
        state["_cached_bytes"] = 0
        return state

    def info(self, idx: int) -> tuple[int, int, int]:
        if idx not in self._info:
            path = self.files[idx]
            i = audio_info(path)
            if i.frames <= 0:
                raise AudioError(f"{path}: empty audio (0 samples)")
            self._info[idx] = (i.sample_rate, i.frames, i.channels)
        return self._info[idx]

    def _decode(self, idx: int, sample_rate: int) -> torch.Tensor:
        data, rate = _read_channels(self.files[idx])
        x = torch.from_numpy(data)
        if self.mono and x.shape[0] > 1:
            x = x.mean(dim=0, keepdim=True)
        x = resample(x, rate, sample_rate)
        if self.transform is not None:
            x = self.transform(x, self.files[idx])
        return x.contiguous()

    def get(self, idx: int, sample_rate: int) -> torch.Tensor:
        """Whole file as ``[C, L]`` at ``sample_rate`` (cached while the budget allows)."""
        key = (idx, sample_rate)
        x = self._cache.get(key)
        if x is not None:
            return x
        x = self._decode(idx, sample_rate)
        nbytes = x.numel() * x.element_size()
        if self._cached_bytes + nbytes <= self.cache_bytes:
            self._cache[key] = x
            self._cached_bytes += nbytes
        elif not self._warned:
            self._warned = True
            log.warning(
                "audio cache full (%.0f MiB, %d files under %s): further files are decoded per "
                "use; raise cache_mb or store the corpus at %d Hz (then long files are read "
                "segment-wise)",
                self.cache_bytes / 2**20,
                len(self.files),
                self.files[idx].parent,
                sample_rate,
            )
        return x

    def segment(
        self, idx: int, sample_rate: int, length: int, generator: torch.Generator
    ) -> torch.Tensor:
        """A random mono segment of ``length`` samples, looped when the file is shorter."""
        x = self._cache.get((idx, sample_rate))
        if x is None:
            rate, frames, channels = self.info(idx)
            est_bytes = math.ceil(frames * sample_rate / rate) * 4 * (1 if self.mono else channels)
            fits = self._cached_bytes + est_bytes <= self.cache_bytes
            if not fits and rate == sample_rate and frames >= length and self.transform is None:
                # over budget: read just the segment from disk (same draw as the cached path)
                start = randint(generator, 0, frames - length + 1)
                data, _ = _read_channels(self.files[idx], start=start, frames=length)
                seg = torch.from_numpy(data).mean(dim=0)
                if seg.numel() < length:  # compressed formats can report inexact frame counts
                    seg = crop_or_tile(seg, length)
                return seg
            x = self.get(idx, sample_rate)
        x = x.mean(dim=0) if x.shape[0] > 1 else x[0]
        n = x.numel()
        if n >= length:
            start = randint(generator, 0, n - length + 1)
            return x[start : start + length]
        return crop_or_tile(x, length, randint(generator, 0, n))
