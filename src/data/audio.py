"""Audio I/O: read any soundfile-supported file, mix to mono, resample, and validate.

`torchaudio.load` needs torchcodec, so files are read with soundfile (:func:`read_audio`, the
one reader: noise/RIR banks and the baseline use it too); resampling is
`speakerops.data.resample.resample` (band-limited sinc interpolation).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from omegaconf import OmegaConf

from speakerops.core.config import find_conf_file
from speakerops.data.resample import resample


@functools.cache
def audio_extensions() -> frozenset[str]:
    """The audio file types picked up from folders (lower case, with the dot): ``audio.extensions``
    of the project's ``conf/config.yaml``, else the packaged one (`core.config.find_conf_file`)."""
    path = find_conf_file("config.yaml")
    exts = OmegaConf.select(OmegaConf.load(path), "audio.extensions")
    if not exts:
        raise ValueError(f"{path}: audio.extensions is missing or empty (e.g. [.wav, .flac])")
    return frozenset(str(e).lower() for e in exts)


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


def read_audio(
    path: str | Path, start: int = 0, frames: int = -1, *, span_s: tuple | None = None
) -> tuple[np.ndarray, int]:
    """Samples ``[frames, channels]`` float32 (soundfile's layout) and the rate of ``path``,
    from frame ``start`` (``frames=-1``: to the end), or the ``span_s = (start, end)`` seconds
    (either may be None; a NaN end means the end of the file).

    Raises `AudioError` naming the file when it is unreadable, empty or holds NaN/Inf.
    """
    try:
        with sf.SoundFile(str(path)) as fh:
            rate = fh.samplerate
            if span_s is not None:
                first_s, end = span_s
                start = int(round((first_s or 0.0) * rate))
                last = (
                    fh.frames
                    if end is None or _isnan(end)
                    else min(fh.frames, int(round(end * rate)))
                )
                frames = max(0, last - start)
            if start:
                fh.seek(start)
            data = fh.read(frames, dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / OSError
        raise AudioError(f"{path}: unreadable audio file, cannot read audio file ({exc})") from exc
    if data.size == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: audio contains NaN or Inf samples")
    return data, int(rate)


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
    data, rate = read_audio(path, span_s=(start, end))
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return validate_waveform(wav, rate, str(path), target_rate, min_duration)


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
