"""Audio I/O: read any soundfile-supported file, mix to mono, resample, and validate.

`torchaudio.load` needs torchcodec, so files are read with soundfile; resampling uses
`torchaudio.functional.resample` (band-limited sinc interpolation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


class AudioError(ValueError):
    """A file that cannot be used as speech audio; the message names the file and the problem."""


@dataclass(frozen=True)
class AudioInfo:
    """What a header says about a file, without decoding the samples."""

    path: str
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_info(path: str | Path) -> AudioInfo:
    """Header information of `path`; raises `AudioError` naming the file when unreadable."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / OSError
        raise AudioError(f"{path}: unreadable audio file ({exc})") from exc
    return AudioInfo(str(path), int(info.samplerate), int(info.frames), int(info.channels))


def resample(wav: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample a mono float32 waveform with torchaudio's band-limited sinc resampler."""
    if orig_rate == target_rate:
        return wav.astype(np.float32, copy=False)
    import torch
    import torchaudio.functional as AF

    out = AF.resample(
        torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), orig_rate, target_rate
    )
    return out.numpy()


def load_audio(
    path: str | Path,
    target_rate: int | None = None,
    min_duration: float = 0.0,
    start: float | None = None,
    end: float | None = None,
) -> tuple[np.ndarray, int]:
    """Read `path` (or its [start, end) span in seconds) as mono float32 at `target_rate`
    (native rate when None).

    Raises `AudioError` naming the file when it is unreadable, empty, contains NaN/Inf,
    is digitally silent, or is shorter than `min_duration` seconds.
    """
    try:
        with sf.SoundFile(str(path)) as fh:
            rate = fh.samplerate
            first = int(round((start or 0.0) * rate))
            last = (
                fh.frames if end is None or _isnan(end) else min(fh.frames, int(round(end * rate)))
            )
            if first:
                fh.seek(first)
            data = fh.read(max(0, last - first), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{path}: unreadable audio file ({exc})") from exc
    if data.size == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return validate_waveform(wav, int(rate), str(path), target_rate, min_duration)


def _isnan(x: float) -> bool:
    return x != x


def validate_waveform(
    wav: np.ndarray,
    rate: int,
    name: str,
    target_rate: int | None = None,
    min_duration: float = 0.0,
) -> tuple[np.ndarray, int]:
    """Check a decoded waveform (finite, not silent, long enough) and resample it."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise AudioError(f"{name}: expected a mono waveform, got shape {wav.shape}")
    if wav.size == 0:
        raise AudioError(f"{name}: empty audio (0 samples)")
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"{name}: audio contains NaN or Inf samples")
    if float(np.max(np.abs(wav))) == 0.0:
        raise AudioError(f"{name}: audio is digitally silent")
    duration = wav.size / rate
    if duration < min_duration:
        raise AudioError(f"{name}: too short ({duration:.2f} s < minimum {min_duration:.2f} s)")
    if target_rate is not None and target_rate != rate:
        wav = resample(wav, rate, target_rate)
        rate = target_rate
    return wav, rate


def list_audio_files(root: str | Path) -> list[Path]:
    """All audio files below `root`, sorted, by extension (case-insensitive)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )
