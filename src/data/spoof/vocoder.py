"""Resynthesis attacks: a bona fide recording of the target speaker through a vocoder.

* :func:`griffin_lim`: the log-mel spectrogram a neural TTS front end would predict, inverted
  without its phase: mel (``n_mels`` bands, 25 ms Hann / 10 ms hop) → linear magnitude by
  non-negative least squares (``torchaudio.transforms.InverseMelScale``) → phase by
  Griffin-Lim (``n_iter`` iterations, deterministic start: zero phase).
* :func:`lpc_resynthesis`: source-filter resynthesis. Per 25 ms frame (10 ms hop) the
  all-pole envelope ``1 / A(z)``, ``A(z) = 1 − Σ_k a_k z^−k`` of order ``order``
  (autocorrelation method, Levinson-Durbin via ``scipy.linalg.solve_toeplitz``), gain
  ``G = sqrt(r_0 − Σ a_k r_k)``, and an excitation: a pulse train at the frame's F0
  (autocorrelation peak in 60-400 Hz, voiced when its normalized height ≥ ``voicing``) or
  white noise; each hop of excitation is filtered by its frame's ``G / A(z)`` (filter state
  carried across hops).
* :func:`world_resynthesis`: the WORLD vocoder (``pyworld``; the vocoder of several ASVspoof
  2019 systems): F0 by Harvest (``f0_floor``-``f0_ceil`` Hz), spectral envelope by
  CheapTrick, aperiodicity by D4C, every ``frame_period`` ms, then WORLD's own synthesis from
  those three (deterministic: same input, same bytes).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import scipy.signal
import torch
import torchaudio


def _like(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A vocoder's output ``y`` at the source ``x``'s length (cut or zero-padded) and peak."""
    out = np.zeros(x.size, dtype=np.float64)
    m = min(x.size, y.size)
    out[:m] = y[:m]
    return out / (np.max(np.abs(out)) + 1e-12) * float(np.max(np.abs(x)))


def griffin_lim(x: np.ndarray, sample_rate: int, n_mels: int, n_iter: int) -> np.ndarray:
    """``x`` (mono float, ``sample_rate``) through mel → Griffin-Lim; same length and peak."""
    n_fft = 1 << int(np.ceil(np.log2(0.025 * sample_rate)))
    win, hop = int(0.025 * sample_rate), int(0.010 * sample_rate)
    wav = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    with torch.no_grad():
        mel = torchaudio.transforms.MelSpectrogram(
            sample_rate, n_fft=n_fft, win_length=win, hop_length=hop, n_mels=n_mels, power=1.0
        )(wav)
        spec = torchaudio.transforms.InverseMelScale(
            n_fft // 2 + 1, n_mels, sample_rate, driver="gelsd"
        )(mel).clamp_min(0.0)
        y = torchaudio.transforms.GriffinLim(
            n_fft=n_fft, n_iter=n_iter, win_length=win, hop_length=hop, power=1.0, rand_init=False
        )(spec)
    return _like(y.double().numpy(), x)


def _lpc(frame: np.ndarray, order: int) -> tuple[np.ndarray, float]:
    """(a_1..a_p, gain) of one windowed frame (autocorrelation method)."""
    r = np.correlate(frame, frame, "full")[frame.size - 1 : frame.size + order]
    if r[0] <= 1e-10:
        return np.zeros(order), 0.0
    r = r.copy()
    r[0] *= 1.0 + 1e-9  # white-noise correction keeps the Toeplitz system well conditioned
    a = scipy.linalg.solve_toeplitz(r[:-1], r[1:])
    return a, float(np.sqrt(max(r[0] - np.dot(a, r[1:]), 1e-12)))


def _f0(frame: np.ndarray, sample_rate: int, voicing: float) -> float:
    """F0 in Hz of a frame, 0 when unvoiced."""
    ac = np.correlate(frame, frame, "full")[frame.size - 1 :]
    if ac[0] <= 1e-10:
        return 0.0
    lo, hi = int(sample_rate / 400), min(int(sample_rate / 60), ac.size - 1)
    lag = lo + int(np.argmax(ac[lo:hi]))
    return sample_rate / lag if ac[lag] / ac[0] >= voicing else 0.0


def lpc_resynthesis(
    x: np.ndarray, sample_rate: int, order: int, voicing: float, rng: np.random.Generator
) -> np.ndarray:
    """``x`` rebuilt from its per-frame LPC envelope, gain, F0 and voicing; same length/peak."""
    x = np.asarray(x, dtype=np.float64)
    win, hop = int(0.025 * sample_rate), int(0.010 * sample_rate)
    window = np.hanning(win)
    padded = np.concatenate([x, np.zeros(win)])
    out = np.zeros(x.size + win)
    zi = np.zeros(order)
    phase = 0.0
    for start in range(0, x.size, hop):
        frame = padded[start : start + win] * window
        a, gain = _lpc(frame, order)
        f0 = _f0(frame, sample_rate, voicing)
        if f0 > 0:
            period = sample_rate / f0
            exc = np.zeros(hop)
            while phase < hop:
                exc[int(phase)] = np.sqrt(period)  # unit power per sample
                phase += period
            phase -= hop
        else:
            exc = rng.standard_normal(hop)
            phase = 0.0
        # gain of the windowed frame, back to the signal's scale (Hann power 3/8)
        g = gain / np.sqrt(win * 0.375)
        seg, zi = scipy.signal.lfilter([g], np.concatenate([[1.0], -a]), exc, zi=zi)
        out[start : start + hop] = seg
    return _like(out, x)


def world_resynthesis(
    x: np.ndarray, sample_rate: int, frame_period: float, f0_floor: float, f0_ceil: float
) -> np.ndarray:
    """``x`` analysed and resynthesised by WORLD (see module doc); same length and peak."""
    with warnings.catch_warnings():  # its import may warn about packaging metadata
        warnings.simplefilter("ignore")
        import pyworld
    x = np.ascontiguousarray(x, dtype=np.float64)
    f0, times = pyworld.harvest(
        x, sample_rate, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period
    )
    fft_size = pyworld.get_cheaptrick_fft_size(sample_rate, f0_floor)  # one size for both
    envelope = pyworld.cheaptrick(x, f0, times, sample_rate, f0_floor=f0_floor, fft_size=fft_size)
    aperiodicity = pyworld.d4c(x, f0, times, sample_rate, fft_size=fft_size)
    y = pyworld.synthesize(f0, envelope, aperiodicity, sample_rate, frame_period)
    return _like(y, x)
