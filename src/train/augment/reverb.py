"""Reverberation with real or simulated room impulse responses."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch

from speakerops.data.audio import audio_extensions
from speakerops.data.channel.level import randint
from speakerops.data.channel.room import noise_rir, prepare_rir, reverberate, room_rir
from speakerops.data.listing import list_audio_files
from speakerops.train.augment.bank import AudioBank
from speakerops.train.augment.base import Augmentation, check_p, check_range


class Reverberate(Augmentation):
    """Convolution with a room impulse response, aligned on the direct path, level-preserving.

    ``y = (x * h)[d : d + N] * sqrt(P_x / P_y)`` with ``h`` normalized to unit energy and ``d``
    the direct-path peak (:func:`direct_path_index`); output length = input length and the
    direct sound is not shifted in time.

    Sources:
      * ``rir_dir``: real RIRs (any rate, any channel count, any subtype); each file is resampled,
        tail-trimmed, normalized and cached; a random file and channel are drawn per call.
      * ``rir_dir=None``: a simulated room with RT60 ~ U(``rt60``). ``simulator="auto"`` uses
        pyroomacoustics when installed (image-source early reflections up to ``early_order`` in
        a random shoebox, absorption from Sabine ``a = 0.161 V / (S RT60)``, then a stochastic
        exponential tail fitted to the early energy: cheap, ~1-2 ms), otherwise ``"noise"``: a
        direct path plus an exponentially decaying Gaussian tail with the drawn RT60 and a
        direct-to-reverberant ratio ~ U(``drr_db``).
    """

    def __init__(
        self,
        rir_dir: str | None = None,
        rt60: Sequence[float] | float = (0.2, 0.8),
        p: float = 0.3,
        simulator: str = "auto",
        drr_db: Sequence[float] | float = (-5.0, 10.0),
        early_order: int = 8,
        cache_mb: float = 256.0,
    ) -> None:
        self.p = check_p(p, "Reverberate")
        self.rt60 = check_range(rt60, "Reverberate.rt60")
        if self.rt60[0] < 0.05 or self.rt60[1] > 5.0:
            raise ValueError(f"Reverberate.rt60 must lie in [0.05, 5] s, got {rt60!r}")
        self.drr_db = check_range(drr_db, "Reverberate.drr_db")
        if simulator not in ("auto", "pyroomacoustics", "noise"):
            raise ValueError(
                f"Reverberate.simulator must be 'auto', 'pyroomacoustics' or 'noise', got {simulator!r}"
            )
        self.early_order = int(early_order)
        if self.early_order < 1:
            raise ValueError(f"Reverberate.early_order must be >= 1, got {early_order}")
        have_pra = importlib.util.find_spec("pyroomacoustics") is not None
        if simulator == "pyroomacoustics" and not have_pra:
            raise ImportError(
                "Reverberate(simulator='pyroomacoustics') needs `pip install pyroomacoustics`"
            )
        self.simulator = (
            ("pyroomacoustics" if have_pra else "noise") if simulator == "auto" else simulator
        )
        self.rir_dir = None if rir_dir is None else str(rir_dir)
        self._bank: AudioBank | None = None
        if self.rir_dir is not None:
            root = Path(self.rir_dir)
            if not root.is_dir():
                raise ValueError(f"Reverberate.rir_dir {root} is not a directory")
            files = list_audio_files(root)
            if not files:
                raise ValueError(
                    f"Reverberate.rir_dir {root} has no audio files ({sorted(audio_extensions())})"
                )
            self._bank = AudioBank(files, mono=False, cache_mb=cache_mb, transform=prepare_rir)

    def draw_rir(self, generator: torch.Generator, sample_rate: int) -> torch.Tensor:
        """One 1-D impulse response at ``sample_rate`` (before unit-energy normalization)."""
        if self._bank is not None:
            h = self._bank.get(randint(generator, 0, len(self._bank)), sample_rate)
            return h[randint(generator, 0, h.shape[0])] if h.shape[0] > 1 else h[0]
        if self.simulator == "pyroomacoustics":
            return room_rir(generator, sample_rate, self.rt60, self.drr_db, self.early_order)
        return noise_rir(generator, sample_rate, self.rt60, self.drr_db)

    def apply(
        self, wav: torch.Tensor, generator: torch.Generator, sample_rate: int
    ) -> torch.Tensor:
        return reverberate(wav, self.draw_rir(generator, sample_rate), sample_rate)
