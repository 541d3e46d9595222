"""Data augmentation for speaker-embedding training.

Waveform augmentations run per sample inside the ``Dataset`` (DataLoader workers, CPU) on a
1-D float waveform at the model's sample rate, after the random crop and before fbank:

    crop -> AugmentPipeline: [SpeedPerturb] -> augmentations in list order -> fbank
    (e.g. Reverberate -> AddNoise -> TelephoneChannel, the Kaldi/WeSpeaker order)

``SpecAugment`` runs on the batch of features inside the LightningModule (identity in eval).

Conventions
-----------
* Randomness comes only from the ``torch.Generator`` passed to each call (CPU generator), so
  a sample is reproducible from its seed. The Dataset should seed one generator per sample or
  per worker, e.g. ``torch.Generator().manual_seed(base_seed + 1_000_003 * epoch + index)``.
* Each augmentation draws one ``U(0, 1)`` and is applied when it is ``< p`` (no draw when
  ``p = 0``); augmentations are independent of each other. Output length = input length.
* Speed perturbation makes NEW speaker labels (WeSpeaker): ``label = speaker +
  speed_index * n_speakers`` where ``speed_index`` 0 is the unchanged speed; the classifier
  needs ``n_speakers * pipeline.num_label_copies`` classes.
* Noise and RIR files are read with soundfile (any rate, any channel count), resampled to the
  pipeline rate and cached in memory per process up to ``cache_mb`` (each DataLoader worker has
  its own cache; caches are not pickled). Beyond the budget, long noise files at the target rate
  are read segment-wise from disk and others are decoded per use.
* Relative paths are resolved against the working directory of the process.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio
import torchaudio.functional as AF
from torch import nn

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff"})
_EPS_POWER = 1e-12  # mean-square below this counts as silence
SPEED_OF_SOUND = 343.0  # m/s

__all__ = [
    "AUDIO_EXTENSIONS",
    "AddNoise",
    "AugmentPipeline",
    "Augmentation",
    "DEFAULT_MUSAN_CATEGORIES",
    "Reverberate",
    "SpecAugment",
    "SpeedPerturb",
    "TelephoneChannel",
    "achieved_snr_db",
    "colored_noise",
    "direct_path_index",
]

# Kaldi / WeSpeaker MUSAN recipe: babble = 3-7 summed speakers.
DEFAULT_MUSAN_CATEGORIES: dict[str, dict[str, Any]] = {
    "noise": {"snr_db": (0.0, 15.0), "num": (1, 1), "weight": 1.0},
    "music": {"snr_db": (5.0, 15.0), "num": (1, 1), "weight": 1.0},
    "speech": {"snr_db": (13.0, 20.0), "num": (3, 7), "weight": 1.0},
}

# Spectral slope exponents: power spectral density proportional to 1 / f**alpha.
NOISE_COLORS: dict[str, float] = {
    "white": 0.0,
    "pink": 1.0,
    "brown": 2.0,
    "blue": -1.0,
    "violet": -2.0,
}


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One draw of U(low, high) from ``generator``."""
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """One integer uniformly drawn from [low, high) (``high > low``)."""
    return int(torch.randint(low, high, (), generator=generator))


def _power(x: torch.Tensor) -> float:
    """Mean square ``P = (1/N) sum x_n^2`` in float64 (0 for an empty tensor)."""
    if x.numel() == 0:
        return 0.0
    return float(x.double().square().mean())


def achieved_snr_db(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    """SNR of ``noisy = clean + n``: ``10 log10(P_clean / P_n)`` with P the mean square."""
    return 10.0 * math.log10(_power(clean) / _power(noisy.double() - clean.double()))


def _range(value: Any, name: str, *, low: float | None = None) -> tuple[float, float]:
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


def _check_p(p: float, name: str) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}.p must be in [0, 1], got {p}")
    return p


def _next_fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (FFT sizes with large prime factors are ~6x slower)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = p35
            while q < n:
                q *= 2
            best = min(best, q)
            p35 *= 3
        p5 *= 5
    return best


@functools.lru_cache(maxsize=32)
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    """Cached sinc resampler (the kernel is computed once per rate pair and process)."""
    g = math.gcd(orig, new)
    return torchaudio.transforms.Resample(orig // g, new // g)


def _resample(x: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """Band-limited sinc resampling (torchaudio) along the last axis: ~len * new / orig."""
    if orig == new:
        return x
    with torch.no_grad():
        return _resampler(int(orig), int(new))(x.float())


def _wrap_to_length(x: torch.Tensor, length: int, start: int = 0) -> torch.Tensor:
    """``length`` samples of ``x`` read circularly from ``start`` (loops a short signal)."""
    n = x.shape[-1]
    if n == 0:
        raise ValueError("cannot loop an empty signal")
    start %= n
    if start + length <= n:
        return x[..., start : start + length]
    reps = math.ceil((start + length) / n)
    return x.repeat(*([1] * (x.dim() - 1)), reps)[..., start : start + length]


def _fit_length(x: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop (longer) or circular padding (shorter) to exactly ``length`` samples."""
    n = x.shape[-1]
    if n == length:
        return x
    if n > length:
        start = _randint(generator, 0, n - length + 1)
        return x[..., start : start + length]
    return _wrap_to_length(x, length, 0)


def _to_plain(value: Any) -> Any:
    """OmegaConf containers (or any mapping/sequence) to plain dict/list."""
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_to_plain(v) for v in value]
    return value


def _list_audio_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
    )


def _read_audio(path: Path, *, start: int = 0, frames: int = -1) -> tuple[np.ndarray, int]:
    """Read ``[channels, samples]`` float32 with soundfile; clear error naming the file."""
    try:
        data, rate = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types
        raise ValueError(f"cannot read audio file {path}: {exc}") from exc
    if data.size == 0:
        raise ValueError(f"audio file {path} is empty")
    if not np.isfinite(data).all():
        raise ValueError(f"audio file {path} contains NaN or Inf samples")
    return np.ascontiguousarray(data.T), int(rate)


# --------------------------------------------------------------------------------------------
# in-memory bank of audio files (noise, RIRs)
# --------------------------------------------------------------------------------------------
class _AudioBank:
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
            try:
                i = sf.info(str(path))
            except Exception as exc:
                raise ValueError(f"cannot read audio file {path}: {exc}") from exc
            if i.frames <= 0:
                raise ValueError(f"audio file {path} is empty")
            self._info[idx] = (int(i.samplerate), int(i.frames), int(i.channels))
        return self._info[idx]

    def _decode(self, idx: int, sample_rate: int) -> torch.Tensor:
        data, rate = _read_audio(self.files[idx])
        x = torch.from_numpy(data)
        if self.mono and x.shape[0] > 1:
            x = x.mean(dim=0, keepdim=True)
        x = _resample(x, rate, sample_rate)
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
                start = _randint(generator, 0, frames - length + 1)
                data, _ = _read_audio(self.files[idx], start=start, frames=length)
                seg = torch.from_numpy(data).mean(dim=0)
                if seg.numel() < length:  # compressed formats can report inexact frame counts
                    seg = _wrap_to_length(seg, length)
                return seg
            x = self.get(idx, sample_rate)
        x = x.mean(dim=0) if x.shape[0] > 1 else x[0]
        n = x.numel()
        if n >= length:
            start = _randint(generator, 0, n - length + 1)
            return x[start : start + length]
        return _wrap_to_length(x, length, _randint(generator, 0, n))


# --------------------------------------------------------------------------------------------
# base class
# --------------------------------------------------------------------------------------------
class Augmentation:
    """Base class: ``aug(wav, generator, sample_rate)`` applies ``self.apply`` with probability p.

    Subclasses implement ``apply(wav, generator, sample_rate) -> Tensor`` with the same length.
    """

    p: float = 1.0

    def __call__(
        self, wav: torch.Tensor, generator: torch.Generator, sample_rate: int = 16000
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


# --------------------------------------------------------------------------------------------
# speed perturbation (new labels)
# --------------------------------------------------------------------------------------------
class SpeedPerturb:
    """Resample-based speed change (tempo and pitch both scale by the factor, like sox ``speed``).

    ``y = resample(x, from=round(sr * f), to=sr)``: ``len(y) ~ len(x) / f`` and a tone at
    frequency ``F`` moves to ``F * f``. Afterwards the pipeline crops randomly (f < 1) or pads
    circularly (f > 1) back to the input length.

    Index convention (used for labels ``speaker + index * n_speakers``): index 0 is factor 1.0,
    then the other factors in the order given. ``factors=(0.9, 1.0, 1.1)`` gives
    ``0 -> 1.0, 1 -> 0.9, 2 -> 1.1`` (see ``index_to_factor``). With probability ``p`` one of the
    non-unity factors is drawn uniformly, otherwise index 0; ``p = 2/3`` with three factors is
    WeSpeaker's uniform choice among the three speeds.
    """

    def __init__(self, factors: Sequence[float] = (0.9, 1.0, 1.1), p: float = 2.0 / 3.0) -> None:
        fs = [float(f) for f in factors]
        if not fs or any(not (0.5 <= f <= 2.0) for f in fs):
            raise ValueError(f"SpeedPerturb.factors must lie in [0.5, 2.0], got {list(factors)}")
        if len(set(fs)) != len(fs):
            raise ValueError(f"SpeedPerturb.factors has duplicates: {list(factors)}")
        if 1.0 not in fs:
            raise ValueError(
                f"SpeedPerturb.factors must contain 1.0 (label copy 0 = original speakers), got {fs}"
            )
        self.factors = tuple(fs)
        self.index_to_factor: tuple[float, ...] = (1.0,) + tuple(f for f in fs if f != 1.0)
        self.p = _check_p(p, "SpeedPerturb")

    @property
    def num_label_copies(self) -> int:
        return len(self.index_to_factor)

    def draw_index(self, generator: torch.Generator) -> int:
        """0 with probability ``1 - p``, otherwise uniform over the indices 1..K-1."""
        u = float(torch.rand((), generator=generator))
        if self.num_label_copies == 1 or u >= self.p:
            return 0
        return _randint(generator, 1, self.num_label_copies)

    @staticmethod
    def change_speed(wav: torch.Tensor, factor: float, sample_rate: int) -> torch.Tensor:
        """Speed change without length fixing: ``~len(wav) / factor`` samples."""
        if factor == 1.0:
            return wav
        orig = int(round(sample_rate * factor))
        return _resample(wav, orig, sample_rate)

    def __call__(
        self, wav: torch.Tensor, generator: torch.Generator, sample_rate: int = 16000
    ) -> tuple[torch.Tensor, int]:
        idx = self.draw_index(generator)
        if idx == 0:
            return wav, 0
        out = self.change_speed(wav, self.index_to_factor[idx], sample_rate)
        return _fit_length(out, wav.shape[-1], generator), idx

    def __repr__(self) -> str:
        return f"SpeedPerturb(factors={self.factors}, p={self.p:.4g})"


# --------------------------------------------------------------------------------------------
# additive noise
# --------------------------------------------------------------------------------------------
def colored_noise(
    length: int, color: str | float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Gaussian noise with PSD ~ 1/f^alpha (white 0, pink 1, brown 2, blue -1, violet -2).

    Shaped in the frequency domain: ``X_k *= k^(-alpha/2)`` for k >= 1, DC removed; unit power.
    """
    alpha = NOISE_COLORS[color] if isinstance(color, str) else float(color)
    n_fft = _next_fast_len(max(length, 2))
    white = torch.randn(n_fft, generator=generator)
    if alpha == 0.0:
        x = white[:length]
    else:
        spec = torch.fft.rfft(white)
        k = torch.arange(spec.numel(), dtype=torch.float32)
        gain = k.clamp(min=1.0).pow(-alpha / 2.0)
        gain[0] = 0.0
        x = torch.fft.irfft(spec * gain, n=n_fft)[:length]
    x = x - x.mean()
    return x / x.square().mean().clamp(min=_EPS_POWER).sqrt()


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
        self.p = _check_p(p, "AddNoise")
        self.snr_db = _range(snr_db, "AddNoise.snr_db")
        self.colors = tuple(str(c) for c in colors)
        unknown = [c for c in self.colors if c not in NOISE_COLORS]
        if not self.colors or unknown:
            raise ValueError(
                f"AddNoise.colors must be non-empty names from {sorted(NOISE_COLORS)}, got {colors!r}"
            )
        self.noise_dir = None if noise_dir is None else str(noise_dir)
        self._categories: list[tuple[str, tuple[float, float], tuple[int, int], float]] = []
        self._banks: list[_AudioBank] = []
        if self.noise_dir is None:
            if categories is not None:
                raise ValueError("AddNoise.categories needs noise_dir (a MUSAN-style folder)")
            return
        root = Path(self.noise_dir)
        if not root.is_dir():
            raise ValueError(f"AddNoise.noise_dir {root} is not a directory")
        explicit = categories is not None
        cats = _to_plain(categories) if explicit else DEFAULT_MUSAN_CATEGORIES
        if not isinstance(cats, dict) or not cats:
            raise ValueError(f"AddNoise.categories must be a non-empty mapping, got {categories!r}")
        present = {name: root / name for name in cats if (root / name).is_dir()}
        if explicit and present and len(present) != len(cats):
            missing = sorted(set(cats) - set(present))
            raise ValueError(f"AddNoise: category folders {missing} missing under {root}")
        if present:
            for name, folder in present.items():
                files = _list_audio_files(folder)
                if not files:
                    raise ValueError(f"AddNoise: no audio files under {folder}")
                self._add_category(name, cats[name], files, cache_mb)
        else:
            if explicit:
                raise ValueError(
                    f"AddNoise: none of the category folders {sorted(cats)} exist under {root}"
                )
            files = _list_audio_files(root)
            if not files:
                raise ValueError(
                    f"AddNoise.noise_dir {root} has no audio files ({sorted(AUDIO_EXTENSIONS)})"
                )
            self._add_category("noise", {"snr_db": self.snr_db}, files, cache_mb)

    def _add_category(self, name: str, spec: Any, files: list[Path], cache_mb: float) -> None:
        if not isinstance(spec, dict):
            raise ValueError(f"AddNoise.categories[{name!r}] must be a mapping, got {spec!r}")
        extra = set(spec) - {"snr_db", "num", "weight"}
        if extra:
            raise ValueError(f"AddNoise.categories[{name!r}]: unknown keys {sorted(extra)}")
        snr = _range(spec.get("snr_db", self.snr_db), f"AddNoise.categories[{name!r}].snr_db")
        lo, hi = _range(spec.get("num", 1), f"AddNoise.categories[{name!r}].num", low=1)
        weight = float(spec.get("weight", 1.0))
        if not weight > 0:
            raise ValueError(f"AddNoise.categories[{name!r}].weight must be > 0, got {weight}")
        self._categories.append((name, snr, (int(lo), int(hi)), weight))
        self._banks.append(_AudioBank(files, mono=True, cache_mb=cache_mb))

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
                self.colors[_randint(generator, 0, len(self.colors))]
                if len(self.colors) > 1
                else self.colors[0]
            )
            return colored_noise(length, color, generator), _uniform(generator, *self.snr_db)
        if len(self._categories) == 1:
            c = 0
        else:
            w = torch.tensor([cat[3] for cat in self._categories], dtype=torch.float64)
            c = int(torch.multinomial(w, 1, generator=generator))
        _, snr_range, (n_lo, n_hi), _ = self._categories[c]
        bank = self._banks[c]
        k = _randint(generator, n_lo, n_hi + 1)
        if k == 1:
            picks = [_randint(generator, 0, len(bank))]
        elif k <= len(bank):
            picks = torch.randperm(len(bank), generator=generator)[:k].tolist()
        else:
            picks = torch.randint(0, len(bank), (k,), generator=generator).tolist()
        noise = torch.zeros(length, dtype=torch.float32)
        for i in picks:
            seg = bank.segment(i, sample_rate, length, generator)
            pw = _power(seg)
            if pw > _EPS_POWER:
                noise += seg / math.sqrt(pw)
        return noise, _uniform(generator, *snr_range)

    def apply(
        self, wav: torch.Tensor, generator: torch.Generator, sample_rate: int
    ) -> torch.Tensor:
        noise, snr = self._draw_noise(wav.shape[-1], generator, sample_rate)
        p_sig, p_noise = _power(wav), _power(noise)
        if p_sig <= _EPS_POWER or p_noise <= _EPS_POWER:
            return wav
        gain = math.sqrt(p_sig / (p_noise * 10.0 ** (snr / 10.0)))
        return wav + (gain * noise).to(wav.dtype)


# --------------------------------------------------------------------------------------------
# reverberation
# --------------------------------------------------------------------------------------------
def _prepare_rir(h: torch.Tensor, path: Path | None = None) -> torch.Tensor:
    """Per channel: trim the tail after 1 - 1e-6 of the energy, normalize to unit energy."""
    energy = h.double().square()
    total = energy.sum(dim=-1)
    if (total <= 0).any():
        raise ValueError(f"impulse response {path} has a silent channel")
    cum = energy.cumsum(dim=-1) / total[:, None]
    keep = int((cum < 1.0 - 1e-6).sum(dim=-1).max()) + 1
    h = h[:, : min(keep, h.shape[-1])]
    return (h / h.double().square().sum(dim=-1, keepdim=True).sqrt()).float()


def direct_path_index(h: torch.Tensor, sample_rate: int, window_ms: float = 1.0) -> int:
    """Index of the direct-path peak of a 1-D RIR.

    The first sample within 6 dB of the maximum (``|h| >= 0.5 max |h|``), refined to the largest
    ``|h|`` in the following ``window_ms`` (main lobe of a fractional delay). Equals
    ``argmax |h|`` for most RIRs, but not when a reflection is stronger than the direct sound
    (e.g. ``rir48000.wav`` peaks 3 ms after its onset); aligning on such a reflection would put
    the direct sound before the input.
    """
    a = h.abs()
    onset = int((a >= 0.5 * a.max()).nonzero()[0, 0])
    win = max(1, int(round(window_ms * 1e-3 * sample_rate)))
    return onset + int(a[onset : onset + win].argmax())


def _convolve_aligned(x: torch.Tensor, h: torch.Tensor, d: int) -> torch.Tensor:
    """``(x * h)[d : d + N]``: with ``d`` the direct-path index the output is time-aligned."""
    n = x.shape[-1]
    fast = _next_fast_len(n + h.shape[-1] - 1)
    h = torch.nn.functional.pad(h, (0, fast - (n + h.shape[-1] - 1)))
    return AF.fftconvolve(x, h)[d : d + n]


@functools.lru_cache(maxsize=1)
def _import_pra() -> Any:
    """Import pyroomacoustics lazily (~0.6 s, once per process).

    Its RIR builder defaults to one thread per CPU; unless ``PRA_NUM_THREADS`` is set it is
    limited to torch's thread count (1 in DataLoader workers) to avoid oversubscription.
    """
    import os

    import pyroomacoustics as pra

    if "PRA_NUM_THREADS" not in os.environ:
        pra.constants.set("num_threads", max(1, torch.get_num_threads()))
    return pra


def _exp_tail(
    length: int, rt60: float, sample_rate: int, generator: torch.Generator, t0: int = 0
) -> torch.Tensor:
    """Gaussian noise with amplitude envelope ``exp(-3 ln(10) t / RT60)`` (-60 dB at RT60)."""
    t = (torch.arange(length, dtype=torch.float32) + t0) / sample_rate
    return torch.randn(length, generator=generator) * torch.exp(-3.0 * math.log(10.0) * t / rt60)


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
        self.p = _check_p(p, "Reverberate")
        self.rt60 = _range(rt60, "Reverberate.rt60")
        if self.rt60[0] < 0.05 or self.rt60[1] > 5.0:
            raise ValueError(f"Reverberate.rt60 must lie in [0.05, 5] s, got {rt60!r}")
        self.drr_db = _range(drr_db, "Reverberate.drr_db")
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
        self._bank: _AudioBank | None = None
        if self.rir_dir is not None:
            root = Path(self.rir_dir)
            if not root.is_dir():
                raise ValueError(f"Reverberate.rir_dir {root} is not a directory")
            files = _list_audio_files(root)
            if not files:
                raise ValueError(
                    f"Reverberate.rir_dir {root} has no audio files ({sorted(AUDIO_EXTENSIONS)})"
                )
            self._bank = _AudioBank(files, mono=False, cache_mb=cache_mb, transform=_prepare_rir)

    # -- RIR sources --------------------------------------------------------------------------
    def _noise_rir(self, generator: torch.Generator, sample_rate: int) -> torch.Tensor:
        rt60 = _uniform(generator, *self.rt60)
        drr = _uniform(generator, *self.drr_db)
        tail = _exp_tail(max(1, int(rt60 * sample_rate)), rt60, sample_rate, generator, t0=1)
        tail = tail * math.sqrt(10.0 ** (-drr / 10.0) / max(_power(tail) * tail.numel(), 1e-30))
        return torch.cat([torch.ones(1), tail])

    def _room_rir(self, generator: torch.Generator, sample_rate: int) -> torch.Tensor:
        pra = _import_pra()

        rt60 = _uniform(generator, *self.rt60)
        dims = np.array(
            [
                _uniform(generator, 3.0, 10.0),
                _uniform(generator, 3.0, 10.0),
                _uniform(generator, 2.5, 4.0),
            ]
        )
        margin = 0.5

        def point() -> np.ndarray:
            return np.array([_uniform(generator, margin, d - margin) for d in dims])

        src, mic = point(), point()
        for _ in range(8):  # keep the source at least 0.5 m from the microphone
            if np.linalg.norm(src - mic) >= 0.5:
                break
            mic = point()
        volume = float(np.prod(dims))
        surface = 2.0 * float(dims[0] * dims[1] + dims[0] * dims[2] + dims[1] * dims[2])
        absorption = float(np.clip(0.161 * volume / (surface * rt60), 0.01, 0.99))
        room = pra.ShoeBox(
            dims.tolist(),
            fs=sample_rate,
            materials=pra.Material(absorption),
            max_order=self.early_order,
            air_absorption=False,
            use_rand_ism=False,
        )
        room.add_source(src.tolist())
        room.add_microphone(mic.tolist())
        # pyroomacoustics' 10 Hz high-pass designs an IIR filter per call (~1 ms): skip it, the
        # band below 20 Hz does not reach the fbank; restore the global setting afterwards.
        hpf = pra.constants.get("rir_hpf_enable")
        pra.constants.set("rir_hpf_enable", False)
        try:
            room.compute_rir()
        finally:
            pra.constants.set("rir_hpf_enable", hpf)
        h = torch.as_tensor(np.asarray(room.rir[0][0]), dtype=torch.float32)
        d = int(h.abs().argmax())
        # image sources of order <= N cover the sphere of radius (N - 1) / sqrt(sum 1/L^2)
        t_direct = float(np.linalg.norm(src - mic)) / SPEED_OF_SOUND
        r_complete = (self.early_order - 1) / math.sqrt(float(np.sum(1.0 / dims**2)))
        mix = d + int((r_complete / SPEED_OF_SOUND - t_direct) * sample_rate)
        w0 = d + max(1, (mix - d) // 2)
        if mix - w0 < 16 or mix > h.numel():
            return self._noise_rir(generator, sample_rate)
        # energy envelope E(t) = E0 exp(-6 ln(10) t / RT60): estimate E0 on [w0, mix)
        decay = 6.0 * math.log(10.0) / (rt60 * sample_rate)
        k = torch.arange(w0, mix, dtype=torch.float64) - d
        e0 = float((h[w0:mix].double().square() * torch.exp(decay * k)).mean())
        n_tail = max(0, d + int(rt60 * sample_rate) - mix)
        tail = _exp_tail(n_tail, rt60, sample_rate, generator, t0=mix - d) * math.sqrt(e0)
        return torch.cat([h[:mix], tail])

    def draw_rir(self, generator: torch.Generator, sample_rate: int) -> torch.Tensor:
        """One 1-D impulse response at ``sample_rate`` (before unit-energy normalization)."""
        if self._bank is not None:
            h = self._bank.get(_randint(generator, 0, len(self._bank)), sample_rate)
            return h[_randint(generator, 0, h.shape[0])] if h.shape[0] > 1 else h[0]
        if self.simulator == "pyroomacoustics":
            return self._room_rir(generator, sample_rate)
        return self._noise_rir(generator, sample_rate)

    def apply(
        self, wav: torch.Tensor, generator: torch.Generator, sample_rate: int
    ) -> torch.Tensor:
        h = self.draw_rir(generator, sample_rate)
        p_in = _power(wav)
        if p_in <= _EPS_POWER:
            return wav
        h = h / h.double().square().sum().sqrt().float()
        y = _convolve_aligned(wav.float(), h, direct_path_index(h, sample_rate))
        p_out = _power(y)
        if p_out <= _EPS_POWER:
            return wav
        return (y * math.sqrt(p_in / p_out)).to(wav.dtype)


# --------------------------------------------------------------------------------------------
# telephone channel
# --------------------------------------------------------------------------------------------
def alaw_encode(x: torch.Tensor, a: float = 87.6) -> torch.Tensor:
    """G.711 A-law compression of x in [-1, 1] to integer codes in [0, 255].

    ``F(x) = sgn(x) A|x| / (1 + ln A)`` for ``|x| < 1/A``, else
    ``sgn(x) (1 + ln(A|x|)) / (1 + ln A)``; then 8-bit uniform quantization of F in [-1, 1].
    """
    ax = x.abs().clamp(max=1.0)
    denom = 1.0 + math.log(a)
    y = torch.where(
        ax < 1.0 / a, a * ax / denom, (1.0 + torch.log((a * ax).clamp(min=1.0))) / denom
    )
    y = torch.sign(x) * y
    return ((y + 1.0) / 2.0 * 255.0 + 0.5).floor().clamp(0, 255).long()


def alaw_decode(codes: torch.Tensor, a: float = 87.6) -> torch.Tensor:
    """Inverse of :func:`alaw_encode`."""
    y = codes.float() / 255.0 * 2.0 - 1.0
    ay = y.abs()
    denom = 1.0 + math.log(a)
    x = torch.where(ay < 1.0 / denom, ay * denom / a, torch.exp(ay * denom - 1.0) / a)
    return torch.sign(y) * x


class TelephoneChannel(Augmentation):
    """Narrow-band telephone channel.

    Resample to ``channel_rate`` (8 kHz), band-pass ``band_hz`` (300-3400 Hz, raised-cosine
    edges 100 Hz wide, applied in the FFT domain), a codec drawn from ``codecs`` (G.711 ``mulaw``
    / ``alaw`` 8-bit companding, ``pcm8`` 8-bit linear, ``none``) on the peak-normalized signal,
    optional packet loss (each ``frame_ms`` frame zeroed with probability ``packet_loss``), and
    back to the original rate with the same band-pass as receiver filter (nothing is left
    above ``band_hz[1] + 50`` Hz).
    """

    CODECS = ("mulaw", "alaw", "pcm8", "none")

    def __init__(
        self,
        codecs: Sequence[str] = ("mulaw", "alaw", "none"),
        p: float = 0.2,
        band_hz: Sequence[float] = (300.0, 3400.0),
        packet_loss: float = 0.0,
        frame_ms: float = 20.0,
        channel_rate: int = 8000,
    ) -> None:
        self.p = _check_p(p, "TelephoneChannel")
        self.codecs = tuple(str(c) for c in codecs)
        bad = [c for c in self.codecs if c not in self.CODECS]
        if not self.codecs or bad:
            raise ValueError(f"TelephoneChannel.codecs must be from {self.CODECS}, got {codecs!r}")
        self.channel_rate = int(channel_rate)
        self.band_hz = _range(band_hz, "TelephoneChannel.band_hz", low=0.0)
        if self.band_hz[1] >= self.channel_rate / 2:
            raise ValueError(
                f"TelephoneChannel.band_hz upper edge {self.band_hz[1]} must be below "
                f"channel_rate/2 = {self.channel_rate / 2}"
            )
        self.packet_loss = float(packet_loss)
        if not 0.0 <= self.packet_loss < 1.0:
            raise ValueError(f"TelephoneChannel.packet_loss must be in [0, 1), got {packet_loss}")
        self.frame_ms = float(frame_ms)
        if self.frame_ms <= 0:
            raise ValueError(f"TelephoneChannel.frame_ms must be > 0, got {frame_ms}")

    def _bandpass(self, x: torch.Tensor, sample_rate: int) -> torch.Tensor:
        n = x.shape[-1]
        n_fft = _next_fast_len(n)
        spec = torch.fft.rfft(x, n=n_fft)
        f = torch.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
        lo, hi = self.band_hz
        width = 100.0

        def ramp(z: torch.Tensor) -> torch.Tensor:  # 0 -> 1 raised cosine over z in [0, 1]
            return 0.5 - 0.5 * torch.cos(math.pi * z.clamp(0.0, 1.0))

        gain = ramp((f - (lo - width / 2)) / width) * ramp(((hi + width / 2) - f) / width)
        return torch.fft.irfft(spec * gain, n=n_fft)[:n]

    @staticmethod
    def _codec(x: torch.Tensor, codec: str) -> torch.Tensor:
        if codec == "none":
            return x
        peak = float(x.abs().max())
        if peak <= 0.0:
            return x
        scale = 0.9 / peak  # codecs work on [-1, 1]: a hot but unclipped level
        z = x * scale
        if codec == "mulaw":
            z = AF.mu_law_decoding(AF.mu_law_encoding(z, 256), 256)
        elif codec == "alaw":
            z = alaw_decode(alaw_encode(z))
        else:  # pcm8
            z = torch.round(z * 127.0) / 127.0
        return z / scale

    def apply(
        self, wav: torch.Tensor, generator: torch.Generator, sample_rate: int
    ) -> torch.Tensor:
        if sample_rate < self.channel_rate:
            raise ValueError(
                f"TelephoneChannel needs sample_rate >= {self.channel_rate}, got {sample_rate}"
            )
        n = wav.shape[-1]
        codec = (
            self.codecs[_randint(generator, 0, len(self.codecs))]
            if len(self.codecs) > 1
            else self.codecs[0]
        )
        x = _resample(wav.float(), sample_rate, self.channel_rate)
        x = self._codec(self._bandpass(x, self.channel_rate), codec)
        if self.packet_loss > 0.0:
            frame = max(1, int(self.frame_ms * self.channel_rate / 1000))
            n_frames = math.ceil(x.numel() / frame)
            lost = torch.rand(n_frames, generator=generator) < self.packet_loss
            x = x * (~lost).float().repeat_interleave(frame)[: x.numel()]
        if sample_rate == self.channel_rate:
            return x.to(wav.dtype)
        y = _resample(x, self.channel_rate, sample_rate)
        if y.numel() >= n:
            y = y[:n]
        else:
            y = torch.nn.functional.pad(y, (0, n - y.numel()))
        # receiver filter: removes the resampler's images and codec noise outside the band
        return self._bandpass(y, sample_rate).to(wav.dtype)


# --------------------------------------------------------------------------------------------
# pipeline
# --------------------------------------------------------------------------------------------
class AugmentPipeline:
    """Per-sample waveform augmentation: optional speed perturbation, then each augmentation in
    order, each with its own probability.

    ``pipeline(wav, generator) -> (augmented wav, speed_index)``; the output has the input's
    length and dtype; ``speed_index`` is 0 without speed change (see ``SpeedPerturb``) and the
    training label becomes ``speaker + speed_index * n_speakers``.

    ``augmentations`` is a list, or a mapping name -> augmentation (applied in insertion order;
    ``None`` values are skipped), so a Hydra override can reach one by name, e.g.
    ``augment.pipeline.augmentations.noise.p=0`` or ``augment.pipeline.augmentations.noise=null``.
    An augmentation is any callable ``(wav, generator, sample_rate) -> wav`` of the same length.
    """

    def __init__(
        self,
        augmentations: Sequence[Callable[..., torch.Tensor]]
        | Mapping[str, Callable[..., torch.Tensor] | None] = (),
        sample_rate: int = 16000,
        speed: SpeedPerturb | None = None,
    ) -> None:
        if augmentations is None:
            augs: list[Any] = []
        elif isinstance(augmentations, Mapping):
            augs = [a for a in augmentations.values() if a is not None]
        else:
            augs = list(augmentations)
        for aug in augs:
            if isinstance(aug, SpeedPerturb):
                raise TypeError(
                    "SpeedPerturb changes labels: pass it as AugmentPipeline(speed=...), "
                    "not in augmentations"
                )
            if not callable(aug):
                raise TypeError(f"augmentation {aug!r} is not callable")
        self.augmentations = augs
        self.sample_rate = int(sample_rate)
        if self.sample_rate <= 0:
            raise ValueError(f"AugmentPipeline.sample_rate must be > 0, got {sample_rate}")
        if speed is not None and not isinstance(speed, SpeedPerturb):
            raise TypeError(f"AugmentPipeline.speed must be a SpeedPerturb or None, got {speed!r}")
        self.speed = speed

    @property
    def num_label_copies(self) -> int:
        """Number of speed factors (classes = n_speakers * this); 1 without speed perturbation."""
        return 1 if self.speed is None else self.speed.num_label_copies

    def __call__(self, wav: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        if not isinstance(wav, torch.Tensor) or wav.dim() != 1 or not wav.is_floating_point():
            raise ValueError(
                "AugmentPipeline expects a 1-D float waveform tensor, got "
                f"{type(wav).__name__} {getattr(wav, 'shape', '')} {getattr(wav, 'dtype', '')}"
            )
        n = wav.shape[0]
        if n == 0:
            return wav, 0
        idx = 0
        if self.speed is not None:
            wav, idx = self.speed(wav, generator, self.sample_rate)
        for aug in self.augmentations:
            wav = aug(wav, generator, self.sample_rate)
            if wav.dim() != 1 or wav.shape[0] != n:
                raise RuntimeError(f"{aug!r} changed the waveform shape to {tuple(wav.shape)}")
        return wav, idx

    def __repr__(self) -> str:
        return (
            f"AugmentPipeline(sample_rate={self.sample_rate}, speed={self.speed!r}, "
            f"augmentations={self.augmentations!r})"
        )


# --------------------------------------------------------------------------------------------
# SpecAugment (features, in the LightningModule)
# --------------------------------------------------------------------------------------------
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
        self.p = _check_p(p, "SpecAugment")

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
