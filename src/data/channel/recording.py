"""The recording channel of the synthetic corpus (float64 numpy, 16 kHz in):

    x ↦ g · [(x ∗ h_RIR) ∗ h_mic + n]

an exponentially decaying synthetic room (:func:`room.decaying_noise_rir_np`), a random
channel-typical microphone EQ, stationary coloured noise through the same microphone (plus
mains hum on some laptop / far-field recordings) at a drawn SNR against the active speech,
and for ``"phone"`` the telephone line (:func:`telephone.phone_band_np`, 8 kHz µ-law).
Every parameter is drawn from the recording's numpy generator, in a fixed order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.fft as sfft

from speakerops.data.channel.dsp import mel, next_fast_len, smoothstep

# eq_sd: dB s.d. of the random smooth EQ bumps; tilt_sd: dB/octave s.d. of a random tilt;
# hp/lp: high-/low-pass corner ranges (Hz); snr: SNR range (dB); rt60: reverb time range (s)
# or None; drr: direct-to-reverberant ratio range (dB); noise_slope: noise colour range
# (dB/octave); weight: how often the channel is drawn.
CHANNELS: dict[str, dict[str, Any]] = {
    "studio": {
        "eq_sd": 1.5,
        "tilt_sd": 0.5,
        "hp": (40.0, 75.0),
        "lp": (7500.0, 7900.0),
        "snr": (40.0, 55.0),
        "rt60": (0.05, 0.15),
        "drr": (15.0, 25.0),
        "noise_slope": (-3.0, 0.0),
        "weight": 0.22,
    },
    "headset": {
        "eq_sd": 2.5,
        "tilt_sd": 0.8,
        "hp": (60.0, 130.0),
        "lp": (6900.0, 7850.0),
        "snr": (32.0, 48.0),
        "rt60": None,
        "drr": (99.0, 99.0),
        "noise_slope": (-4.0, 0.0),
        "weight": 0.27,
    },
    "laptop": {
        "eq_sd": 3.5,
        "tilt_sd": 1.0,
        "hp": (95.0, 205.0),
        "lp": (6400.0, 7700.0),
        "snr": (25.0, 40.0),
        "rt60": (0.08, 0.2),
        "drr": (11.0, 17.0),
        "noise_slope": (-5.0, -1.0),
        "weight": 0.27,
    },
    "far_field": {
        "eq_sd": 3.0,
        "tilt_sd": 1.0,
        "hp": (50.0, 130.0),
        "lp": (6100.0, 7700.0),
        "snr": (20.0, 35.0),
        "rt60": (0.2, 0.4),
        "drr": (4.0, 12.0),
        "noise_slope": (-6.0, -2.0),
        "weight": 0.16,
    },
    "phone": {
        "eq_sd": 2.5,
        "tilt_sd": 0.8,
        "hp": (250.0, 350.0),
        "lp": (3200.0, 3500.0),
        "snr": (25.0, 40.0),
        "rt60": (0.05, 0.15),
        "drr": (13.0, 19.0),
        "noise_slope": (-3.0, 0.0),
        "weight": 0.08,
    },
}
CHANNEL_NAMES = tuple(CHANNELS)
_CHANNEL_P = np.array([CHANNELS[c]["weight"] for c in CHANNEL_NAMES], dtype=float)
CHANNEL_P = _CHANNEL_P / _CHANNEL_P.sum()


def decaying_noise_rir_np(
    rt60: float, drr_db: float, rng: np.random.Generator, sample_rate: int
) -> np.ndarray:
    """The synthetic corpus's room (float64 numpy): direct path + exponentially decaying noise
    tail (-60 dB at ``rt60``, at most 1 s), lightly smoothed (high frequencies decay faster),
    starting 2-10 ms after the direct sound, at ``-drr_db`` dB."""
    n = int(min(rt60, 1.0) * sample_rate)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
    # high frequencies decay faster: light one-pole smoothing of the tail
    tail = np.convolve(tail, [0.5, 0.3, 0.2], mode="same")
    delay = int(rng.uniform(0.002, 0.01) * sample_rate)
    tail[: delay + 1] = 0.0
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / (np.sum(tail**2) + 1e-12))
    tail[0] = 1.0
    return tail


def mulaw_roundtrip_np(x: np.ndarray, mu: int = 255) -> np.ndarray:
    """8-bit µ-law encode/decode in float64 numpy (the synthetic corpus's phone codec):
    ``y = sgn(x) ln(1 + µ|x|) / ln(1 + µ)``, quantized to 256 levels, expanded with ``expm1``.

    The same law as :func:`apply_codec` ``"mulaw"`` (torchaudio, float32); the corpus bytes
    are pinned to this float64 form.
    """
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    q = np.round((y + 1.0) * 127.5) / 127.5 - 1.0
    return np.sign(q) * np.expm1(np.abs(q) * np.log1p(mu)) / mu


def phone_band_np(y: np.ndarray, nfft: int, freqs: np.ndarray) -> np.ndarray:
    """The synthetic corpus's phone line (float64 numpy, 16 kHz in, 8 kHz out): 300-3400 Hz
    (smoothstep edges 200-320 and 3350-3700 Hz) in one FFT of size ``nfft`` (``freqs`` its
    bins), decimated by 2, 8-bit µ-law at peak 0.95."""
    n = y.size
    Y = sfft.rfft(y, nfft)
    band = smoothstep(freqs, 200.0, 320.0) * (1.0 - smoothstep(freqs, 3350.0, 3700.0))
    y = sfft.irfft(Y * band, nfft)[:n][::2].copy()
    peak = np.max(np.abs(y)) + 1e-12
    return mulaw_roundtrip_np(y / peak * 0.95) * peak / 0.95


def draw_channel(u: float) -> str:
    """The channel name for a U(0, 1) draw ``u`` (probabilities ~ ``weight``)."""
    return CHANNEL_NAMES[int(np.searchsorted(np.cumsum(CHANNEL_P), u, side="right"))]


def channel_params(name: str, rng: np.random.Generator) -> dict[str, Any]:
    """The parameters of one recording of channel ``name`` (draw order fixed)."""
    spec = CHANNELS[name]
    p: dict[str, Any] = {
        "bump_centres": rng.uniform(mel(np.array(150.0)), mel(np.array(7000.0)), 7),
        "bump_widths": rng.uniform(150.0, 450.0, 7),
        "bump_gains": rng.normal(0.0, spec["eq_sd"], 7),
        "tilt": rng.normal(0.0, spec["tilt_sd"]),
        "hp": rng.uniform(*spec["hp"]),
        "lp": rng.uniform(*spec["lp"]),
        "snr": rng.uniform(*spec["snr"]),
        "noise_slope": rng.uniform(*spec["noise_slope"]),
        "hum": rng.random() < 0.3 and name in ("laptop", "far_field"),
        "hum_f": 50.0 if rng.random() < 0.5 else 60.0,
        "peak": rng.uniform(0.25, 0.9),
    }
    if spec["rt60"] is not None:
        p["rt60"] = rng.uniform(*spec["rt60"])
        p["drr"] = rng.uniform(*spec["drr"])
    else:
        p["rt60"] = None
    return p


def eq_db(freqs: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """Microphone colouring in dB: mel-domain Gaussian bumps + tilt + 2nd-order HP/LP corners."""
    m = mel(freqs)[:, None]
    eq = np.sum(
        p["bump_gains"] * np.exp(-0.5 * ((m - p["bump_centres"]) / p["bump_widths"]) ** 2), 1
    )
    eq += p["tilt"] * np.log2(np.maximum(freqs, 50.0) / 1000.0)
    fs = np.maximum(freqs, 1.0)
    eq += -10.0 * np.log10(1.0 + (p["hp"] / fs) ** 4)
    eq += -10.0 * np.log10(1.0 + (fs / p["lp"]) ** 4)
    return eq


def apply_recording_channel(
    x: np.ndarray,
    sample_rate: int,
    name: str,
    rng: np.random.Generator,
    snr_override: float | None,
    lowpass_hz: float | None,
) -> tuple[np.ndarray, int, dict[str, Any]]:
    """Reverb, mic EQ and noise in one FFT; then telephone band for ``phone`` (at half the
    rate: the presets are for 16 kHz in, 8 kHz phone lines).

    Returns (audio, its sample rate, channel parameters used).
    """
    sr = sample_rate
    n = x.size
    p = channel_params(name, rng)
    rir = decaying_noise_rir_np(p["rt60"], p["drr"], rng, sr) if p["rt60"] is not None else None
    L = n + (rir.size if rir is not None else 0)
    nfft = next_fast_len(max(L, 2))
    freqs = np.fft.rfftfreq(nfft, 1.0 / sr)
    X = sfft.rfft(x, nfft)
    if rir is not None:
        X *= sfft.rfft(rir, nfft)
    grid = np.linspace(0.0, sr / 2.0, 1025)  # the EQ is smooth: evaluate on a grid, interpolate
    eq = np.interp(freqs, grid, 10.0 ** (eq_db(grid, p) / 20.0))
    if lowpass_hz is not None:
        eq = eq / np.sqrt(1.0 + (np.maximum(freqs, 1.0) / float(lowpass_hz)) ** 8)
    X *= eq
    # coloured stationary noise synthesized in the frequency domain (through the same mic)
    Nz = rng.standard_normal(freqs.size) + 1j * rng.standard_normal(freqs.size)
    Nz *= 10.0 ** (p["noise_slope"] * np.log2(np.maximum(freqs, 50.0) / 1000.0) / 20.0) * eq
    y = sfft.irfft(X, nfft)[:n]
    noise = sfft.irfft(Nz, nfft)[:n]
    if p["hum"]:
        t = np.arange(n) / sr
        hum = sum(np.sin(2 * np.pi * k * p["hum_f"] * t) / k for k in (1, 2, 3))
        noise = noise / (np.std(noise) + 1e-12) + 0.5 * hum / np.std(hum)
    snr = p["snr"] if snr_override is None else min(p["snr"], float(snr_override))
    p["snr"] = snr
    # SNR against the active-speech power (frames within 30 dB of the loudest)
    fr = y[: n - n % 400].reshape(-1, 400) if n >= 400 else y[None, :]
    e = np.mean(fr**2, axis=1) + 1e-20
    ps = float(np.mean(e[e > e.max() * 1e-3]))
    pn = float(np.mean(noise**2)) + 1e-20
    y = y + noise * np.sqrt(ps / pn * 10.0 ** (-snr / 10.0))
    out_sr = sr
    if name == "phone":
        # 300–3400 Hz telephone band at 8 kHz, 8-bit µ-law
        y = phone_band_np(y, nfft, freqs)
        out_sr = sr // 2
    peak = np.max(np.abs(y)) + 1e-12
    y = y / peak * p["peak"]
    return y, out_sr, p
