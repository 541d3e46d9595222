"""The naive reference system (`speakerops baseline`, DVC stage `baseline`), numpy/scipy only.

**Mean-MFCC baseline** (the classic naive system): per utterance the mean over frames of
MFCCs c1..c20 (40 Mel bands, 25 ms / 10 ms, *no* cepstral mean normalization), cosine scoring
(:func:`speakerops.eval.scoring.cosine_scores`). Channel colouring adds a per-recording
constant to every frame's cepstrum, so it lands straight in this embedding: on data with
strong channel variation it fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.fft import dct

from speakerops.data.audio import read_audio
from speakerops.data.resample import resample

__all__ = ["load_waveforms", "log_mel", "mean_mfcc_embeddings", "mfcc"]


# --- features -------------------------------------------------------------------------------
def _mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular filters equally spaced on the HTK mel scale m = 2595 log10(1 + f/700)."""
    mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)  # noqa: E731
    inv = lambda m: 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)  # noqa: E731
    edges = inv(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    f = np.fft.rfftfreq(n_fft, 1.0 / sr)
    lo, ce, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (f[None, :] - lo) / np.maximum(ce - lo, 1e-9)
    down = (hi - f[None, :]) / np.maximum(hi - ce, 1e-9)
    return np.maximum(0.0, np.minimum(up, down))


_FB_CACHE: dict[tuple, np.ndarray] = {}


def log_mel(
    x: np.ndarray,
    sample_rate: int,
    n_mels: int = 80,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    fmin: float = 20.0,
    fmax: float | None = None,
    preemphasis: float = 0.97,
) -> np.ndarray:
    """Log Mel filterbank energies (frames × n_mels): pre-emphasis, Hamming window,
    power spectrum, triangular Mel filters, ln(max(E, 1e-10))."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"log_mel expects a mono 1-D waveform, got shape {x.shape}")
    win = int(round(sample_rate * win_ms / 1000.0))
    hop = int(round(sample_rate * hop_ms / 1000.0))
    if x.size < win:
        raise ValueError(f"waveform of {x.size} samples is shorter than one {win_ms} ms frame")
    n_fft = 1 << int(np.ceil(np.log2(win)))
    fmax = sample_rate / 2.0 if fmax is None else fmax
    key = (sample_rate, n_fft, n_mels, fmin, fmax)
    if key not in _FB_CACHE:
        _FB_CACHE[key] = _mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    fb = _FB_CACHE[key]
    x = x - x.mean()
    x = np.append(x[0], x[1:] - preemphasis * x[:-1])
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]
    spec = np.abs(np.fft.rfft(frames * np.hamming(win), n=n_fft, axis=1)) ** 2
    return np.log(np.maximum(spec @ fb.T, 1e-10))


def mfcc(x: np.ndarray, sample_rate: int, n_mfcc: int = 20, n_mels: int = 40) -> np.ndarray:
    """MFCCs c1..c_{n_mfcc} (frames × n_mfcc): orthonormal DCT-II of the 40-band log Mel
    energies, c0 (log energy) dropped, no liftering, no cepstral mean normalization."""
    return dct(log_mel(x, sample_rate, n_mels=n_mels), type=2, norm="ortho", axis=1)[
        :, 1 : n_mfcc + 1
    ]


def load_waveforms(paths: Iterable[str | Path], sample_rate: int) -> list[np.ndarray]:
    """Read mono audio (`speakerops.data.audio.read_audio`, channels averaged), resampled to
    ``sample_rate`` if needed (`speakerops.data.resample.resample`)."""
    out = []
    for p in paths:
        data, sr = read_audio(p)
        x = data.mean(axis=1)
        if sr != sample_rate:
            x = resample(x, sr, sample_rate)
        out.append(x)
    return out


def _as_waveforms(items: Sequence[Any], sample_rate: int) -> list[np.ndarray]:
    if len(items) and isinstance(items[0], str | Path):
        return load_waveforms(items, sample_rate)
    return [np.asarray(w) for w in items]


def mean_mfcc_embeddings(
    waveforms: Sequence[np.ndarray] | Sequence[str | Path], sample_rate: int, n_mfcc: int = 20
) -> np.ndarray:
    """The naive embedding: e = (1/T) Σ_t mfcc_t (c1..c20, no CMN); shape (N, n_mfcc)."""
    ws = _as_waveforms(waveforms, sample_rate)
    return np.stack([mfcc(w, sample_rate, n_mfcc).mean(axis=0) for w in ws])
