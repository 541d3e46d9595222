"""Additive noise: generated coloured noise, or files (MUSAN layout or a flat folder)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from speakerops.data.audio import audio_extensions
from speakerops.data.channel.level import EPS_POWER, power, randint, uniform
from speakerops.data.channel.noise import NOISE_COLORS, add_at_snr, colored_noise
from speakerops.data.listing import list_audio_files
from speakerops.train.augment.bank import AudioBank
from speakerops.train.augment.base import Augmentation, check_p, check_range, to_plain

# Kaldi / WeSpeaker MUSAN recipe: babble = 3-7 summed speakers.
DEFAULT_MUSAN_CATEGORIES: dict[str, dict[str, Any]] = {
    "noise": {"snr_db": (0.0, 15.0), "num": (1, 1), "weight": 1.0},
    "music": {"snr_db": (5.0, 15.0), "num": (1, 1), "weight": 1.0},
    "speech": {"snr_db": (13.0, 20.0), "num": (3, 7), "weight": 1.0},
}


class AddNoise(Augmentation):
    """Additive noise at a random SNR: ``y = x + g n`` with ``g = sqrt(P_x / (P_n 10^(snr/10)))``.

    P is the mean square over the whole crop, so the achieved ``10 log10(P_x / P_{g n})`` equals
    the drawn SNR. A silent crop (or a silent noise segment) is returned unchanged.

    Sources:
      * ``noise_dir=None``: generated coloured noise (``colors``), SNR from ``snr_db``.
      * ``noise_dir`` in MUSAN layout (subfolders named like the ``categories`` keys, default
        ``noise/`` 0-15 dB, ``music/`` 5-15 dB, ``speech/`` 13-20 dB with 3-7 summed speakers,
        searched recursively): a category is drawn with probability ~ ``weight``, then ``num``
        files (distinct when possible), each normalized to unit power and summed; SNR is set on
        the sum.
      * any other folder: all audio files under it are one category ``noise`` with ``snr_db``.

    ``categories`` maps name -> ``{"snr_db": [lo, hi], "num": [lo, hi] or n, "weight": w}``.
    """

    def __init__(
        self,
        noise_dir: str | None = None,
        categories: Mapping[str, Any] | None = None,
        snr_db: Sequence[float] | float = (0.0, 15.0),
        p: float = 0.5,
        colors: Sequence[str] = ("white", "pink", "brown"),
        cache_mb: float = 512.0,
    ) -> None:
        self.p = check_p(p, "AddNoise")
        self.snr_db = check_range(snr_db, "AddNoise.snr_db")
        self.colors = tuple(str(c) for c in colors)
        unknown = [c for c in self.colors if c not in NOISE_COLORS]
        if not self.colors or unknown:
            raise ValueError(
                f"AddNoise.colors must be non-empty names from {sorted(NOISE_COLORS)}, got {colors!r}"
            )
        self.noise_dir = None if noise_dir is None else str(noise_dir)
        self._categories: list[tuple[str, tuple[float, float], tuple[int, int], float]] = []
        self._banks: list[AudioBank] = []
        if self.noise_dir is None:
            if categories is not None:
                raise ValueError("AddNoise.categories needs noise_dir (a MUSAN-style folder)")
            return
        root = Path(self.noise_dir)
        if not root.is_dir():
            raise ValueError(f"AddNoise.noise_dir {root} is not a directory")
        explicit = categories is not None
        cats = to_plain(categories) if explicit else DEFAULT_MUSAN_CATEGORIES
        if not isinstance(cats, dict) or not cats:
            raise ValueError(f"AddNoise.categories must be a non-empty mapping, got {categories!r}")
        present = {name: root / name for name in cats if (root / name).is_dir()}
        if explicit and present and len(present) != len(cats):
            missing = sorted(set(cats) - set(present))
            raise ValueError(f"AddNoise: category folders {missing} missing under {root}")
        if present:
            for name, folder in present.items():
                files = list_audio_files(folder)
                if not files:
                    raise ValueError(f"AddNoise: no audio files under {folder}")
                self._add_category(name, cats[name], files, cache_mb)
        else:
            if explicit:
                raise ValueError(
                    f"AddNoise: none of the category folders {sorted(cats)} exist under {root}"
                )
            files = list_audio_files(root)
            if not files:
                raise ValueError(
                    f"AddNoise.noise_dir {root} has no audio files ({sorted(audio_extensions())})"
                )
            self._add_category("noise", {"snr_db": self.snr_db}, files, cache_mb)

    def _add_category(self, name: str, spec: Any, files: list[Path], cache_mb: float) -> None:
        if not isinstance(spec, dict):
            raise ValueError(f"AddNoise.categories[{name!r}] must be a mapping, got {spec!r}")
        extra = set(spec) - {"snr_db", "num", "weight"}
        if extra:
            raise ValueError(f"AddNoise.categories[{name!r}]: unknown keys {sorted(extra)}")
        snr = check_range(spec.get("snr_db", self.snr_db), f"AddNoise.categories[{name!r}].snr_db")
        lo, hi = check_range(spec.get("num", 1), f"AddNoise.categories[{name!r}].num", low=1)
        weight = float(spec.get("weight", 1.0))
        if not weight > 0:
            raise ValueError(f"AddNoise.categories[{name!r}].weight must be > 0, got {weight}")
        self._categories.append((name, snr, (int(lo), int(hi)), weight))
        self._banks.append(AudioBank(files, mono=True, cache_mb=cache_mb))

    @property
    def categories(self) -> dict[str, dict[str, Any]]:
        """Resolved categories: name -> snr_db, num, weight, files (empty when generated)."""
        return {
            name: {"snr_db": snr, "num": num, "weight": w, "files": len(bank)}
            for (name, snr, num, w), bank in zip(self._categories, self._banks, strict=True)
        }

    def _draw_noise(
        self, length: int, generator: torch.Generator, sample_rate: int
    ) -> tuple[torch.Tensor, float]:
        if not self._categories:
            color = (
                self.colors[randint(generator, 0, len(self.colors))]
                if len(self.colors) > 1
                else self.colors[0]
            )
            return colored_noise(length, color, generator), uniform(generator, *self.snr_db)
        if len(self._categories) == 1:
            c = 0
        else:
            w = torch.tensor([cat[3] for cat in self._categories], dtype=torch.float64)
            c = int(torch.multinomial(w, 1, generator=generator))
        _, snr_range, (n_lo, n_hi), _ = self._categories[c]
        bank = self._banks[c]
        k = randint(generator, n_lo, n_hi + 1)
        if k == 1:
            picks = [randint(generator, 0, len(bank))]
        elif k <= len(bank):
            picks = torch.randperm(len(bank), generator=generator)[:k].tolist()
        else:
            picks = torch.randint(0, len(bank), (k,), generator=generator).tolist()
        noise = torch.zeros(length, dtype=torch.float32)
        for i in picks:
            seg = bank.segment(i, sample_rate, length, generator)
            pw = power(seg)
            if pw > EPS_POWER:
                noise += seg / math.sqrt(pw)
        return noise, uniform(generator, *snr_range)

    def apply(
        self, wav: torch.Tensor, generator: torch.Generator, sample_rate: int
    ) -> torch.Tensor:
        noise, snr = self._draw_noise(wav.shape[-1], generator, sample_rate)
        return add_at_snr(wav, noise, snr)
