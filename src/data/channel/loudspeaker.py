"""A small loudspeaker (float64 numpy): what a replay attack plays the victim's voice through.

    y = EQ_spk{ NL(x) },   NL(x) = tanh(d · x̂) / tanh(d) + h2 · (x̂² − mean x̂²),   x̂ = x / max|x|

* non-linearity ``NL``: a driven soft clip (odd harmonics, drive ``d``) plus a second-order
  term (even harmonics, weight ``h2``), as a small driver overdriven near its excursion limit;
* band limit ``EQ_spk``: 4th-order high- and low-pass corners (``hp``, ``lp`` in Hz, the
  driver's low-frequency roll-off and its cone break-up) and one resonance bump (``res_hz``,
  ``res_db``) near the low corner, applied in one FFT.

The parameters of one device are drawn by :func:`loudspeaker_params` from a numpy generator in
a fixed order; the replay attack (:mod:`speakerops.data.spoof.replay`) follows it with a room
(:func:`speakerops.data.channel.room.reverberate`) and a second microphone
(:func:`speakerops.data.channel.recording.apply_recording_channel`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.fft as sfft

from speakerops.data.channel.dsp import next_fast_len


def loudspeaker_params(ranges: dict[str, Any], rng: np.random.Generator) -> dict[str, float]:
    """One device: each of ``hp``, ``lp``, ``res_db``, ``drive``, ``h2`` ~ U(range) (the
    ``[low, high]`` pairs of ``ranges``); the resonance sits at 1.2-2x the low corner."""
    p = {k: float(rng.uniform(*ranges[k])) for k in ("hp", "lp", "res_db", "drive", "h2")}
    p["res_hz"] = p["hp"] * float(rng.uniform(1.2, 2.0))
    return p


def loudspeaker_response_db(freqs: np.ndarray, p: dict[str, float]) -> np.ndarray:
    """The magnitude response of ``EQ_spk`` in dB at ``freqs`` (Hz)."""
    f = np.maximum(freqs, 1.0)
    db = -10.0 * np.log10(1.0 + (p["hp"] / f) ** 8)
    db += -10.0 * np.log10(1.0 + (f / p["lp"]) ** 8)
    octaves = np.log2(f / p["res_hz"])
    db += p["res_db"] * np.exp(-0.5 * (octaves / 0.25) ** 2)
    return db


def play_through_loudspeaker(x: np.ndarray, sample_rate: int, p: dict[str, float]) -> np.ndarray:
    """``x`` through the non-linearity and the band limit of device ``p`` (same length, peak
    of the input)."""
    peak = float(np.max(np.abs(x)))
    if peak <= 0.0:
        return np.asarray(x, dtype=np.float64)
    xn = np.asarray(x, dtype=np.float64) / peak
    y = np.tanh(p["drive"] * xn) / np.tanh(p["drive"])
    y += p["h2"] * (xn**2 - np.mean(xn**2))
    n = y.size
    nfft = next_fast_len(max(n, 2))
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    Y = sfft.rfft(y, nfft) * 10.0 ** (loudspeaker_response_db(freqs, p) / 20.0)
    y = sfft.irfft(Y, nfft)[:n]
    return y / (np.max(np.abs(y)) + 1e-12) * peak
