"""The source-filter speech model: phones -> per-frame control tracks -> waveform.

All at the internal rate of 16 kHz, on an STFT grid of 512-sample Hann frames, hop 128 = 8 ms
(see the package docstring for the model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from speakerops.data.channel.dsp import smoothstep
from speakerops.data.synthetic.phones import (
    ACCENTS,
    BANDWIDTHS,
    CONSONANT_NAMES,
    CONSONANT_P,
    CONSONANTS,
    F45,
    PAUSES,
    PHONOTACTICS,
    VOWEL_NAMES,
    VOWEL_P,
    VOWELS,
)
from speakerops.data.synthetic.speakers import SpeakerProfile

INTERNAL_SAMPLE_RATE = 16000
_N_FFT = 512
HOP = 128
_FREQS = np.fft.rfftfreq(_N_FFT, 1.0 / INTERNAL_SAMPLE_RATE)  # (257,)
_WINDOW = np.hanning(_N_FFT + 1)[:-1]  # periodic Hann: Σ w² over hops of N/4 = 1.5
_WINDOW32 = _WINDOW.astype(np.float32)
_FREQS32 = _FREQS.astype(np.float32)
_OLA_NORM = float(np.sum(_WINDOW**2) / HOP)

# Within-speaker (per recording) spreads: s.d. of log factors of speaking rate, formants,
# breathiness and f0; s.d. of the glottal tilt (dB/octave, vocal effort) and of the slow
# loudness contour (dB).
SESSION_SPREAD: dict[str, float] = {
    "rate": 0.06,
    "formant": 0.012,
    "breathiness": 0.2,
    "f0": 0.025,
    "tilt_db_per_oct": 1.0,
    "loudness_db": 2.0,
}


# --- utterance plan: phones → per-frame control tracks ---------------------------------------
@dataclass
class _Tracks:
    formants: np.ndarray  # (T, 5) Hz
    bandwidths: np.ndarray  # (T, 5) Hz
    f0: np.ndarray  # (T,) Hz
    voice: np.ndarray  # (T,) linear amplitude of voicing
    asp: np.ndarray  # (T,) aspiration amplitude (through the tract)
    fric: np.ndarray  # (T,) frication amplitude (band-shaped noise)
    fric_centre: np.ndarray  # (T,) Hz
    fric_bw: np.ndarray  # (T,) Hz
    nasal: np.ndarray  # (T,) 0..1
    phones: list[tuple[str, int, int]]  # (phone, start frame, end frame)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    k = np.hanning(width + 2)[1:-1]
    k /= k.sum()
    pad = width // 2
    xp = np.pad(x, [(pad, width - 1 - pad)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    if x.ndim == 1:
        return np.convolve(xp, k, mode="valid")
    return np.stack([np.convolve(xp[:, j], k, mode="valid") for j in range(x.shape[1])], axis=1)


def _vowel_formants(speaker: SpeakerProfile, vowel_idx: int, sess: np.ndarray) -> np.ndarray:
    name = VOWEL_NAMES[vowel_idx]
    f = np.array([*VOWELS[name], *F45])
    shift = ACCENTS[speaker.accent]["vowels"].get(name)
    if shift is not None:
        f[:3] *= shift
    vo = speaker.vowel_offsets[vowel_idx]
    f[0] *= vo[0]
    f[1] *= vo[1]
    f *= np.asarray(speaker.formant_offsets) * speaker.vtl_scale * sess
    # keep formants ordered and apart
    for k in range(1, 5):
        f[k] = max(f[k], f[k - 1] + 200.0)
    return f


def plan_tracks(speaker: SpeakerProfile, rng: np.random.Generator, n_frames: int) -> _Tracks:
    fr = INTERNAL_SAMPLE_RATE / HOP  # frames per second
    ss = SESSION_SPREAD
    rate = speaker.speaking_rate * float(np.exp(rng.normal(0.0, ss["rate"])))
    sess = np.exp(rng.normal(0.0, ss["formant"], size=5))  # session-level formant wobble
    # phone sequence as (name, frames, stress)
    seq: list[tuple[str, int, float]] = []
    lead = int(rng.uniform(*PAUSES["edge_s"]) * fr)
    trail = int(rng.uniform(*PAUSES["edge_s"]) * fr)
    seq.append(("sil", lead, 0.0))
    total = lead
    while total < n_frames - trail:
        for _syll in range(int(rng.integers(1, 4))):
            stress = float(rng.normal(0.0, 2.5))
            if rng.random() < PHONOTACTICS["p_onset"]:
                c = CONSONANT_NAMES[int(rng.choice(len(CONSONANT_NAMES), p=CONSONANT_P))]
                kind = CONSONANTS[c][0]
                if kind == "stop":
                    seq.append(("clo", int(rng.uniform(0.035, 0.075) * fr / rate) + 1, 0.0))
                    seq.append((c, int(rng.uniform(0.012, 0.025) * fr) + 1, 0.0))
                    seq.append(("h", int(rng.uniform(0.015, 0.05) * fr / rate) + 1, 0.0))
                else:
                    seq.append((c, int(rng.uniform(0.05, 0.12) * fr / rate) + 1, 0.0))
            v = VOWEL_NAMES[int(rng.choice(len(VOWEL_NAMES), p=VOWEL_P))]
            vdur = rng.uniform(0.08, 0.2) * (1.0 + 0.08 * max(stress, 0.0)) / rate
            seq.append((v, int(vdur * fr) + 2, stress))
            if rng.random() < PHONOTACTICS["p_coda"]:
                c = CONSONANT_NAMES[int(rng.choice(len(CONSONANT_NAMES), p=CONSONANT_P))]
                if CONSONANTS[c][0] == "stop":
                    seq.append(("clo", int(rng.uniform(0.03, 0.06) * fr / rate) + 1, 0.0))
                    seq.append((c, int(rng.uniform(0.012, 0.025) * fr) + 1, 0.0))
                else:
                    seq.append((c, int(rng.uniform(0.05, 0.11) * fr / rate) + 1, 0.0))
        if rng.random() < PAUSES["p_after_word"]:
            seq.append(("sil", int(rng.uniform(*PAUSES["pause_s"]) * fr) + 1, 0.0))
        total = sum(s[1] for s in seq)

    T = n_frames
    voice = np.zeros(T)
    asp = np.zeros(T)
    fric = np.zeros(T)
    fc = np.full(T, 4000.0)
    fbw = np.full(T, 3000.0)
    nasal = np.zeros(T)
    vowel_centres: list[float] = []
    vowel_targets: list[np.ndarray] = []
    phones: list[tuple[str, int, int]] = []
    pos = 0
    db = lambda x: 10.0 ** (x / 20.0)  # noqa: E731
    for name, dur, stress in seq:
        a, b = pos, min(pos + dur, T)
        pos += dur
        if a >= T:
            break
        phones.append((name, a, b))
        if name in VOWELS:
            vi = VOWEL_NAMES.index(name)
            ft = _vowel_formants(speaker, vi, sess)
            vowel_centres.append(0.5 * (a + b))
            vowel_targets.append(ft)
            # intrinsic level: open vowels (high F1) louder
            level = 6.0 * np.log2(VOWELS[name][0] / 500.0) + stress
            voice[a:b] = db(level)
        elif name in CONSONANTS:
            kind, centre, bw, level, voiced = CONSONANTS[name]
            if kind == "fric" or kind == "stop":
                fric[a:b] = db(level)
                fc[a:b] = centre * speaker.fricative_scale * (speaker.vtl_scale**0.5)
                fbw[a:b] = bw
                if voiced:
                    voice[a:b] = db(-10.0)
            elif kind == "asp":
                asp[a:b] = db(level)
            elif kind == "nasal":
                voice[a:b] = db(level)
                nasal[a:b] = 1.0
    if not vowel_targets:  # very short utterance: one neutral vowel target
        vowel_centres.append(T / 2)
        vowel_targets.append(_vowel_formants(speaker, VOWEL_NAMES.index("V"), sess))
    centres = np.asarray(vowel_centres)
    targets = np.asarray(vowel_targets)
    t = np.arange(T, dtype=float)
    formants = np.stack([np.interp(t, centres, targets[:, k]) for k in range(5)], axis=1)
    formants = _smooth(formants, 5)
    bandwidths = np.broadcast_to(BANDWIDTHS * speaker.bandwidth_scale, (T, 5)).copy()
    bandwidths[:, 0] *= 1.0 + 2.0 * speaker.breathiness
    bandwidths[:, :3] *= 1.0 + 0.8 * nasal[:, None]

    # smooth amplitude tracks (≈ 24 ms) to avoid clicks
    voice = _smooth(voice, 3)
    asp = _smooth(asp, 2)
    fric = _smooth(fric, 2)
    nasal = _smooth(nasal, 3)
    # slow utterance-level loudness contour (±2 dB)
    slow = _smooth(rng.normal(0.0, 1.0, T), 41)
    slow = slow / (np.std(slow) + 1e-9) * ss["loudness_db"]
    gain = db(slow)
    voice *= gain
    asp *= gain
    fric *= gain
    asp = asp + speaker.breathiness * float(np.exp(rng.normal(0.0, ss["breathiness"]))) * voice

    # f0 contour: session level, declination, phrase accents, slow wander (semitones)
    f0_sess = speaker.f0_mean_hz * float(np.exp(rng.normal(0.0, ss["f0"])))
    st = np.linspace(1.5, -1.5 - rng.uniform(0.0, 1.5), T) * speaker.f0_range_st / 4.0
    n_acc = max(1, int(T / fr / 0.9))
    for _ in range(n_acc):
        c = rng.uniform(0, T)
        w = rng.uniform(0.1, 0.3) * fr
        st += rng.uniform(0.2, 1.0) * speaker.f0_range_st * np.exp(-0.5 * ((t - c) / w) ** 2)
    wander = _smooth(rng.normal(0.0, 1.0, T), 25)
    st += wander / (np.std(wander) + 1e-9) * 0.4
    st -= np.mean(st)
    f0 = f0_sess * 2.0 ** (st / 12.0)
    return _Tracks(formants, bandwidths, f0, voice, asp, fric, fc, fbw, nasal, phones)


# --- source-filter synthesis ----------------------------------------------------------------
def _pulse_train(f0_frames: np.ndarray, n: int, speaker: SpeakerProfile, rng) -> np.ndarray:
    """Glottal pulses with jitter/shimmer; unit mean power (amplitude √period)."""
    centres = np.arange(len(f0_frames)) * HOP
    f0 = np.interp(np.arange(n), centres, f0_frames)
    phase = np.cumsum(f0 / INTERNAL_SAMPLE_RATE) + rng.uniform()
    idx = np.flatnonzero(np.diff(np.floor(phase)) > 0) + 1
    period = INTERNAL_SAMPLE_RATE / f0[idx]
    pos = idx + rng.normal(0.0, speaker.jitter, idx.size) * period
    amp = np.sqrt(period) * np.exp(rng.normal(0.0, speaker.shimmer, idx.size))
    pos = np.clip(pos, 0.0, n - 2.0)
    i0 = pos.astype(np.int64)
    frac = pos - i0
    x = np.zeros(n)
    np.add.at(x, i0, amp * (1.0 - frac))
    np.add.at(x, i0 + 1, amp * frac)
    return x


def _stft(x: np.ndarray) -> np.ndarray:
    xp = np.pad(x.astype(np.float32), (_N_FFT // 2, _N_FFT // 2 + HOP))
    frames = np.lib.stride_tricks.sliding_window_view(xp, _N_FFT)[::HOP]
    return sfft.rfft(frames * _WINDOW32, axis=1)


def _istft(spec: np.ndarray, n: int) -> np.ndarray:
    frames = sfft.irfft(spec, n=_N_FFT, axis=1) * _WINDOW32
    T = frames.shape[0]
    q = _N_FFT // HOP
    out = np.zeros((T + q - 1) * HOP, dtype=np.float64)
    for j in range(q):
        out[j * HOP : j * HOP + T * HOP] += frames[:, j * HOP : (j + 1) * HOP].reshape(-1)
    return out[_N_FFT // 2 : _N_FFT // 2 + n] / _OLA_NORM


def _vocal_tract_power(formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """|T(t, f)|² = Π_k (F_k² + b_k²)² / (((f − F_k)² + b_k²)((f + F_k)² + b_k²)), float32."""
    f = _FREQS32[None, :]
    out = np.ones((formants.shape[0], _FREQS.size), dtype=np.float32)
    for k in range(formants.shape[1]):
        F = formants[:, k : k + 1].astype(np.float32)
        b2 = (0.5 * bandwidths[:, k : k + 1].astype(np.float32)) ** 2
        num = F * F + b2
        out *= num * num / (((f - F) ** 2 + b2) * ((f + F) ** 2 + b2))
    return out


def clean_speech(speaker: SpeakerProfile, rng: np.random.Generator, n: int) -> np.ndarray:
    n_frames = n // HOP + 2
    tr = plan_tracks(speaker, rng, n_frames)
    tilt = speaker.tilt_db_per_oct + float(rng.normal(0.0, SESSION_SPREAD["tilt_db_per_oct"]))
    pulses = _pulse_train(tr.f0, n, speaker, rng)
    noise = rng.standard_normal(n)
    P = _stft(pulses)
    W = _stft(noise)
    T = min(P.shape[0], tr.f0.shape[0])
    P, W = P[:T], W[:T]
    f = _FREQS32[None, :]
    col = lambda v: v[:T, None].astype(np.float32)  # noqa: E731
    vt = np.sqrt(_vocal_tract_power(tr.formants[:T], tr.bandwidths[:T]))
    # fixed spectral zero of the speaker: 1 − (1 − g)/(1 + ((f − Z)/(B/2))²), g = 10^(−depth/20)
    zg = 10.0 ** (-speaker.zero_depth_db / 20.0)
    vt *= 1.0 - (1.0 - zg) / (1.0 + ((f - speaker.zero_hz) / (0.5 * speaker.zero_bw_hz)) ** 2)
    # glottal tilt: 10^(−tilt·log2(1 + f/f0)/20) = (1 + f/f0)^(−tilt·log10(2)/20·log2(10))
    src = np.power(1.0 + f / col(tr.f0), np.float32(-tilt / (20.0 * np.log10(2.0))))
    voiced = col(tr.voice) * src * vt
    nasal = np.flatnonzero(tr.nasal[:T] > 1e-3)
    if nasal.size:  # nasal murmur: (nasal_db − 12) dB above ~600 Hz
        k = (speaker.nasal_db - 12.0) / 20.0 * np.log(10.0)
        voiced[nasal] *= np.exp(k * tr.nasal[nasal, None] * smoothstep(f, 350, 900)).astype(
            np.float32
        )
    asp_shape = (smoothstep(f, 500.0, 2500.0) * 0.9 + 0.1) * 0.3
    band = 1.0 / (1.0 + ((f - col(tr.fric_centre)) / (0.5 * col(tr.fric_bw))) ** 2)
    noisy = col(tr.asp) * vt * asp_shape + col(tr.fric) * band
    return _istft(P * voiced + W * noisy, n)
