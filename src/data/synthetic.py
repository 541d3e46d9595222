"""Embedded synthetic speech corpus: deterministic source-filter speech-like audio.

The default data when a user gives none. Each speaker has a fixed identity (f0, vocal-tract
length, idiosyncratic vowel formants, glottal tilt, jitter/shimmer, breathiness, speaking rate,
accent); each utterance has a new random phone sequence and prosody; each recording has its
own channel (microphone EQ, additive noise at an SNR, reverberation, telephone band).

Synthesis model (all at the internal rate of 16 kHz, on an STFT grid of 512-sample Hann frames,
hop 128 = 8 ms), per frame t and frequency f:

    Y(t, f) = P(t, f) · A_v(t) · G(t, f) · T(t, f)
            + W(t, f) · [A_h(t) · T(t, f) · R(f) + A_n(t) · F(t, f)]

with P the STFT of a jittered/shimmered glottal pulse train, W the STFT of white noise,
G(t, f) = 10^(−tilt·log2(1 + f/f0(t))/20) the glottal source tilt, T the vocal tract
(a cascade of five resonances, |H_k(f)|² = (F_k² + b_k²)² / (((f − F_k)² + b_k²)((f + F_k)² + b_k²)),
b_k = B_k/2), R a high-pass aspiration shape, F a fricative/burst band shape, and A_v, A_h, A_n
the voicing, aspiration and frication amplitudes. The waveform is the overlap-add inverse STFT.

The recording then goes through ``x ↦ g · [(x ∗ h_RIR) ∗ h_mic + n]`` (exponentially decaying
synthetic RIR, random channel-typical EQ, coloured noise at a drawn SNR) and, for ``"phone"``,
300–3400 Hz band-limiting at 8 kHz with 8-bit µ-law.

Everything is a pure function of the seeds: speaker ``i`` of ``make_speakers(n, seed)`` depends
only on ``(seed, i)``; a recording depends only on its speaker and its own seed, so a corpus is
bit-identical for the same seed whatever ``workers`` is.

Calibration (``IDENTITY_SPREAD``, ``SESSION_SPREAD``, ``CHANNELS``; numbers measured on 150
training / 50 held-out speakers × 6 utterances of 2–4 s): the naive mean-MFCC cosine baseline
(``speakerops.eval.baseline``) has an all-pairs EER of about 34 % (17 % with no channel at all,
so per-recording channels double it), while shrinkage LDA on channel-normalized utterance
statistics reaches about 7 % and a small ECAPA-TDNN on mean-normalized log-Mel gets further.
Speaker identity lives in f0, vocal-tract scale, per-speaker and per-vowel formant offsets,
voice quality (tilt, breathiness, jitter/shimmer, bandwidths, a fixed spectral zero) and
accent; within-speaker variation comes from the random phone content, prosody, session
wobble (``SESSION_SPREAD``) and the channel.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy.signal import resample_poly

__all__ = [
    "ACCENTS",
    "AGE_BANDS",
    "CHANNELS",
    "GENDERS",
    "INTERNAL_SAMPLE_RATE",
    "SpeakerProfile",
    "generate_corpus",
    "make_speakers",
    "speaker_matches",
    "synthesize_utterance",
    "utterance_plan",
]

INTERNAL_SAMPLE_RATE = 16000
_N_FFT = 512
_HOP = 128
_FREQS = np.fft.rfftfreq(_N_FFT, 1.0 / INTERNAL_SAMPLE_RATE)  # (257,)
_WINDOW = np.hanning(_N_FFT + 1)[:-1]  # periodic Hann: Σ w² over hops of N/4 = 1.5
_WINDOW32 = _WINDOW.astype(np.float32)
_FREQS32 = _FREQS.astype(np.float32)
_OLA_NORM = float(np.sum(_WINDOW**2) / _HOP)

GENDERS = ("f", "m")
AGE_BANDS = ("18-30", "31-50", "51+")

# --- phones ---------------------------------------------------------------------------------
# Reference (male) formants F1..F3 in Hz (Peterson & Barney 1952); F4, F5 fixed.
_VOWELS: dict[str, tuple[float, float, float]] = {
    "i": (270.0, 2290.0, 3010.0),
    "I": (390.0, 1990.0, 2550.0),
    "E": (530.0, 1840.0, 2480.0),
    "ae": (660.0, 1720.0, 2410.0),
    "A": (730.0, 1090.0, 2440.0),
    "O": (570.0, 840.0, 2410.0),
    "U": (440.0, 1020.0, 2240.0),
    "u": (300.0, 870.0, 2240.0),
    "V": (640.0, 1190.0, 2390.0),
    "3r": (490.0, 1350.0, 1690.0),
}
_VOWEL_NAMES = tuple(_VOWELS)
# vowel frequencies: reduced/central vowels are the most common, as in running speech
_VOWEL_P = np.array([0.1, 0.16, 0.12, 0.08, 0.08, 0.05, 0.05, 0.07, 0.2, 0.09])
_VOWEL_P = _VOWEL_P / _VOWEL_P.sum()
_F45 = (3500.0, 4500.0)
_BANDWIDTHS = np.array([70.0, 90.0, 130.0, 180.0, 250.0])
# Consonants: (kind, noise band centre Hz, band width Hz, level dB re vowel, voiced)
_CONSONANTS: dict[str, tuple[str, float, float, float, bool]] = {
    "s": ("fric", 5600.0, 2400.0, -24.0, False),
    "S": ("fric", 3000.0, 1600.0, -18.0, False),
    "f": ("fric", 4500.0, 7000.0, -38.0, False),
    "h": ("asp", 0.0, 0.0, -28.0, False),
    "z": ("fric", 5600.0, 2400.0, -28.0, True),
    "v": ("fric", 4500.0, 7000.0, -40.0, True),
    "p": ("stop", 1000.0, 2500.0, -16.0, False),
    "t": ("stop", 4500.0, 3000.0, -18.0, False),
    "k": ("stop", 2200.0, 1200.0, -15.0, False),
    "m": ("nasal", 0.0, 0.0, -8.0, True),
    "n": ("nasal", 0.0, 0.0, -8.0, True),
}
_CONSONANT_NAMES = tuple(_CONSONANTS)
_CONSONANT_P = np.array([0.13, 0.07, 0.07, 0.06, 0.05, 0.04, 0.1, 0.14, 0.12, 0.1, 0.12])
_CONSONANT_P = _CONSONANT_P / _CONSONANT_P.sum()

# An accent is a fixed set of (F1, F2, F3) multiplicative shifts on some vowels, plus a
# rate factor and a prosodic-range factor.
ACCENTS: dict[str, dict[str, Any]] = {
    "northern": {
        "vowels": {"V": (0.78, 0.86, 1.0), "ae": (0.9, 1.06, 1.0), "A": (1.0, 1.12, 1.0)},
        "rate": 1.0,
        "range": 0.9,
    },
    "southern": {
        "vowels": {"i": (1.12, 0.92, 1.0), "E": (0.9, 1.08, 1.0), "O": (1.08, 1.18, 1.0)},
        "rate": 0.9,
        "range": 1.15,
    },
    "coastal": {
        "vowels": {"u": (1.0, 1.45, 1.0), "U": (1.0, 1.22, 1.0), "A": (0.94, 1.1, 1.0)},
        "rate": 1.05,
        "range": 1.0,
    },
    "highland": {
        "vowels": {"I": (1.1, 0.94, 1.0), "3r": (1.05, 1.1, 1.35), "ae": (0.84, 1.12, 1.0)},
        "rate": 0.97,
        "range": 0.85,
    },
}

# --- channels -------------------------------------------------------------------------------
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
_CHANNEL_NAMES = tuple(CHANNELS)
_CHANNEL_P = np.array([CHANNELS[c]["weight"] for c in _CHANNEL_NAMES], dtype=float)
_CHANNEL_P = _CHANNEL_P / _CHANNEL_P.sum()


@dataclass(frozen=True)
class SpeakerProfile:
    """A synthetic speaker: id, metadata and the identity parameters of the generator.

    ``vtl_scale`` multiplies every formant (1 = reference male vocal tract; larger = shorter
    tract); ``formant_offsets`` are the speaker's own multiplicative offsets of F1..F5 and
    ``vowel_offsets`` of (F1, F2) per vowel; ``tilt_db_per_oct`` is the glottal source roll-off
    above f0; ``jitter``/``shimmer`` are relative s.d. of period/amplitude per glottal pulse;
    ``breathiness`` is the aspiration-to-voicing amplitude ratio; ``speaking_rate`` scales
    phone durations by 1/rate; ``fricative_scale`` scales fricative/burst band centres;
    ``nasal_db`` is the murmur level of nasals; ``zero_*`` a fixed spectral zero (the
    piriform-fossa antiresonance, 3.5–5.5 kHz scaled by the tract) on every tract-filtered sound.
    """

    speaker_id: str
    gender: str
    age_band: str
    accent: str
    f0_mean_hz: float
    f0_range_st: float
    vtl_scale: float
    formant_offsets: tuple[float, ...]
    vowel_offsets: tuple[tuple[float, float], ...]
    bandwidth_scale: float
    tilt_db_per_oct: float
    jitter: float
    shimmer: float
    breathiness: float
    speaking_rate: float
    fricative_scale: float
    nasal_db: float
    zero_hz: float
    zero_bw_hz: float
    zero_depth_db: float

    def metadata(self) -> dict[str, str]:
        """The speaker's group columns: speaker, gender, age_band, accent."""
        return {
            "speaker": self.speaker_id,
            "gender": self.gender,
            "age_band": self.age_band,
            "accent": self.accent,
        }

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain python values."""
        return asdict(self)


# Calibration constants (module-level so experiments can vary them; changing one changes every
# corpus). Between-speaker spreads, s.d. of natural-log factors unless noted: f0 per gender,
# vocal-tract scale (s.d. of the factor itself), per-speaker F1..F5 offsets, per-vowel (F1, F2)
# offsets, formant bandwidth scale, fricative band scale; uniform ranges for the depth (dB) of
# the speaker's spectral zero, the glottal tilt (dB/octave) and breathiness.
IDENTITY_SPREAD: dict[str, Any] = {
    "f0": (0.16, 0.18),  # (female, male) s.d. of ln f0
    "vtl": 0.07,
    "formant": [0.04, 0.05, 0.07, 0.08, 0.08],
    "vowel": [0.08, 0.07],
    "zero_depth_db": (8.0, 25.0),
    "bandwidth": 0.3,
    "tilt_db_per_oct": (6.0, 18.0),  # uniform range
    "breathiness": (0.02, 0.45),  # uniform range (× age factor)
    "fricative": 0.12,
}


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


# P(onset consonant) and P(coda consonant) per syllable.
PHONOTACTICS: dict[str, float] = {"p_onset": 0.75, "p_coda": 0.3}
# Leading/trailing silence range (s), probability of a pause after a word, pause range (s).
PAUSES: dict[str, Any] = {"edge_s": (0.05, 0.25), "p_after_word": 0.15, "pause_s": (0.06, 0.25)}


def _speaker_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5EED, index]))


def _make_speaker(index: int, seed: int) -> SpeakerProfile:
    rng = _speaker_rng(seed, index)
    gender = GENDERS[index % 2]  # exact balance in every prefix of the list
    age_band = AGE_BANDS[int(rng.choice(3, p=[0.4, 0.35, 0.25]))]
    accent = tuple(ACCENTS)[int(rng.integers(len(ACCENTS)))]
    old = age_band == "51+"
    mid = age_band == "31-50"
    if gender == "f":
        f0 = float(np.exp(rng.normal(np.log(205.0), IDENTITY_SPREAD["f0"][0])))
        vtl = float(rng.normal(1.15, IDENTITY_SPREAD["vtl"]))
        f0 *= 0.92 if old else (0.97 if mid else 1.0)
    else:
        f0 = float(np.exp(rng.normal(np.log(120.0), IDENTITY_SPREAD["f0"][1])))
        vtl = float(rng.normal(1.0, IDENTITY_SPREAD["vtl"]))
        f0 *= 1.05 if old else 1.0
    f0 = float(np.clip(f0, 65.0, 350.0))
    vtl = float(np.clip(vtl, 0.8, 1.45))
    age_k = 1.6 if old else (1.2 if mid else 1.0)
    acc = ACCENTS[accent]
    return SpeakerProfile(
        speaker_id=f"syn{index:04d}",
        gender=gender,
        age_band=age_band,
        accent=accent,
        f0_mean_hz=round(f0, 3),
        f0_range_st=round(float(rng.uniform(2.0, 6.0) * acc["range"]), 4),
        vtl_scale=round(vtl, 5),
        formant_offsets=tuple(
            round(float(v), 5) for v in np.exp(rng.normal(0.0, IDENTITY_SPREAD["formant"]))
        ),
        vowel_offsets=tuple(
            (round(float(a), 5), round(float(b), 5))
            for a, b in np.exp(rng.normal(0.0, IDENTITY_SPREAD["vowel"], size=(len(_VOWELS), 2)))
        ),
        bandwidth_scale=round(float(np.exp(rng.normal(0.0, IDENTITY_SPREAD["bandwidth"]))), 4),
        tilt_db_per_oct=round(float(rng.uniform(*IDENTITY_SPREAD["tilt_db_per_oct"])), 3),
        jitter=round(float(rng.uniform(0.003, 0.012) * age_k), 5),
        shimmer=round(float(rng.uniform(0.02, 0.07) * age_k), 5),
        breathiness=round(
            float(np.clip(rng.uniform(*IDENTITY_SPREAD["breathiness"]) * age_k, 0.0, 0.7)), 4
        ),
        speaking_rate=round(float(np.exp(rng.normal(0.0, 0.12)) * acc["rate"]), 4),
        fricative_scale=round(float(np.exp(rng.normal(0.0, IDENTITY_SPREAD["fricative"]))), 4),
        nasal_db=round(float(rng.uniform(-14.0, -4.0)), 3),
        zero_hz=round(float(rng.uniform(3500.0, 5500.0) * vtl), 2),
        zero_bw_hz=round(float(rng.uniform(300.0, 700.0)), 2),
        zero_depth_db=round(float(rng.uniform(*IDENTITY_SPREAD["zero_depth_db"])), 3),
    )


def make_speakers(n: int, seed: int = 0) -> list[SpeakerProfile]:
    """``n`` speakers ``syn0000 … ``; speaker ``i`` depends only on ``(seed, i)``.

    Genders alternate (f, m, f, …) so every prefix is balanced; age band (40/35/25 %) and
    accent (uniform) are drawn. Female f0 ~ logN(ln 205 Hz, 0.16), vocal-tract scale
    ~ N(1.15, 0.07); male f0 ~ logN(ln 120 Hz, 0.18), scale ~ N(1.0, 0.07) (``IDENTITY_SPREAD``):
    the distributions overlap. Age: "51+" lowers female and raises male f0 and scales jitter,
    shimmer and breathiness by 1.6 ("31-50": 1.2).
    """
    if int(n) != n or n < 0:
        raise ValueError(f"make_speakers: n must be a non-negative integer, got {n!r}")
    return [_make_speaker(i, seed) for i in range(int(n))]


# --- degradation hook -----------------------------------------------------------------------
_DEGRADE_KEYS = {"column", "value", "snr_db", "lowpass_hz", "channel"}


def _check_degrade(degrade: Mapping[str, Any] | None) -> None:
    if degrade is None:
        return
    if not isinstance(degrade, Mapping):
        raise TypeError(f"degrade must be a dict or None, got {type(degrade).__name__}")
    unknown = set(degrade) - _DEGRADE_KEYS
    if unknown:
        raise ValueError(
            f"degrade: unknown keys {sorted(unknown)}; allowed {sorted(_DEGRADE_KEYS)}"
        )
    if "column" not in degrade or "value" not in degrade:
        raise ValueError(f"degrade needs 'column' and 'value', got {dict(degrade)}")
    if degrade["column"] not in ("speaker", "gender", "age_band", "accent"):
        raise ValueError(
            f"degrade column {degrade['column']!r} is not one of speaker, gender, age_band, accent"
        )
    if not ({"snr_db", "lowpass_hz", "channel"} & set(degrade)):
        raise ValueError("degrade must set at least one of snr_db, lowpass_hz, channel")
    if "channel" in degrade and degrade["channel"] not in CHANNELS:
        raise ValueError(f"degrade channel {degrade['channel']!r} not in {list(CHANNELS)}")


def speaker_matches(speaker: SpeakerProfile, degrade: Mapping[str, Any] | None) -> bool:
    """Whether ``degrade`` applies to ``speaker`` (its ``value`` may be a value or a list)."""
    if degrade is None:
        return False
    _check_degrade(degrade)
    have = speaker.metadata()[degrade["column"]]
    want = degrade["value"]
    if isinstance(want, str | int | float):
        return have == want
    return have in set(want)


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
    name = _VOWEL_NAMES[vowel_idx]
    f = np.array([*_VOWELS[name], *_F45])
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


def _plan(speaker: SpeakerProfile, rng: np.random.Generator, n_frames: int) -> _Tracks:
    fr = INTERNAL_SAMPLE_RATE / _HOP  # frames per second
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
                c = _CONSONANT_NAMES[int(rng.choice(len(_CONSONANT_NAMES), p=_CONSONANT_P))]
                kind = _CONSONANTS[c][0]
                if kind == "stop":
                    seq.append(("clo", int(rng.uniform(0.035, 0.075) * fr / rate) + 1, 0.0))
                    seq.append((c, int(rng.uniform(0.012, 0.025) * fr) + 1, 0.0))
                    seq.append(("h", int(rng.uniform(0.015, 0.05) * fr / rate) + 1, 0.0))
                else:
                    seq.append((c, int(rng.uniform(0.05, 0.12) * fr / rate) + 1, 0.0))
            v = _VOWEL_NAMES[int(rng.choice(len(_VOWEL_NAMES), p=_VOWEL_P))]
            vdur = rng.uniform(0.08, 0.2) * (1.0 + 0.08 * max(stress, 0.0)) / rate
            seq.append((v, int(vdur * fr) + 2, stress))
            if rng.random() < PHONOTACTICS["p_coda"]:
                c = _CONSONANT_NAMES[int(rng.choice(len(_CONSONANT_NAMES), p=_CONSONANT_P))]
                if _CONSONANTS[c][0] == "stop":
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
        if name in _VOWELS:
            vi = _VOWEL_NAMES.index(name)
            ft = _vowel_formants(speaker, vi, sess)
            vowel_centres.append(0.5 * (a + b))
            vowel_targets.append(ft)
            # intrinsic level: open vowels (high F1) louder
            level = 6.0 * np.log2(_VOWELS[name][0] / 500.0) + stress
            voice[a:b] = db(level)
        elif name in _CONSONANTS:
            kind, centre, bw, level, voiced = _CONSONANTS[name]
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
        vowel_targets.append(_vowel_formants(speaker, _VOWEL_NAMES.index("V"), sess))
    centres = np.asarray(vowel_centres)
    targets = np.asarray(vowel_targets)
    t = np.arange(T, dtype=float)
    formants = np.stack([np.interp(t, centres, targets[:, k]) for k in range(5)], axis=1)
    formants = _smooth(formants, 5)
    bandwidths = np.broadcast_to(_BANDWIDTHS * speaker.bandwidth_scale, (T, 5)).copy()
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
    centres = np.arange(len(f0_frames)) * _HOP
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
    xp = np.pad(x.astype(np.float32), (_N_FFT // 2, _N_FFT // 2 + _HOP))
    frames = np.lib.stride_tricks.sliding_window_view(xp, _N_FFT)[::_HOP]
    return sfft.rfft(frames * _WINDOW32, axis=1)


def _istft(spec: np.ndarray, n: int) -> np.ndarray:
    frames = sfft.irfft(spec, n=_N_FFT, axis=1) * _WINDOW32
    T = frames.shape[0]
    q = _N_FFT // _HOP
    out = np.zeros((T + q - 1) * _HOP, dtype=np.float64)
    for j in range(q):
        out[j * _HOP : j * _HOP + T * _HOP] += frames[:, j * _HOP : (j + 1) * _HOP].reshape(-1)
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


def _clean_speech(speaker: SpeakerProfile, rng: np.random.Generator, n: int) -> np.ndarray:
    n_frames = n // _HOP + 2
    tr = _plan(speaker, rng, n_frames)
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
        voiced[nasal] *= np.exp(k * tr.nasal[nasal, None] * _smoothstep(f, 350, 900)).astype(
            np.float32
        )
    asp_shape = (_smoothstep(f, 500.0, 2500.0) * 0.9 + 0.1) * 0.3
    band = 1.0 / (1.0 + ((f - col(tr.fric_centre)) / (0.5 * col(tr.fric_bw))) ** 2)
    noisy = col(tr.asp) * vt * asp_shape + col(tr.fric) * band
    return _istft(P * voiced + W * noisy, n)


def _smoothstep(f: np.ndarray, lo: float, hi: float) -> np.ndarray:
    u = np.clip((f - lo) / (hi - lo), 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


# --- channel --------------------------------------------------------------------------------
def _mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _channel_params(name: str, rng: np.random.Generator) -> dict[str, Any]:
    spec = CHANNELS[name]
    p: dict[str, Any] = {
        "bump_centres": rng.uniform(_mel(np.array(150.0)), _mel(np.array(7000.0)), 7),
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


def _eq_db(freqs: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """Microphone colouring in dB: mel-domain Gaussian bumps + tilt + 2nd-order HP/LP corners."""
    m = _mel(freqs)[:, None]
    eq = np.sum(
        p["bump_gains"] * np.exp(-0.5 * ((m - p["bump_centres"]) / p["bump_widths"]) ** 2), 1
    )
    eq += p["tilt"] * np.log2(np.maximum(freqs, 50.0) / 1000.0)
    fs = np.maximum(freqs, 1.0)
    eq += -10.0 * np.log10(1.0 + (p["hp"] / fs) ** 4)
    eq += -10.0 * np.log10(1.0 + (fs / p["lp"]) ** 4)
    return eq


def _rir(p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Direct path + exponentially decaying noise tail (−60 dB at rt60), tail at −drr dB."""
    sr = INTERNAL_SAMPLE_RATE
    n = int(min(p["rt60"], 1.0) * sr)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / p["rt60"])
    # high frequencies decay faster: light one-pole smoothing of the tail
    tail = np.convolve(tail, [0.5, 0.3, 0.2], mode="same")
    delay = int(rng.uniform(0.002, 0.01) * sr)
    tail[: delay + 1] = 0.0
    tail *= np.sqrt(10.0 ** (-p["drr"] / 10.0) / (np.sum(tail**2) + 1e-12))
    tail[0] = 1.0
    return tail


def _apply_channel(
    x: np.ndarray,
    name: str,
    rng: np.random.Generator,
    snr_override: float | None,
    lowpass_hz: float | None,
) -> tuple[np.ndarray, int, dict[str, Any]]:
    """Reverb, mic EQ and noise in one FFT; then telephone band for ``phone``.

    Returns (audio, its sample rate, channel parameters used).
    """
    sr = INTERNAL_SAMPLE_RATE
    n = x.size
    p = _channel_params(name, rng)
    rir = _rir(p, rng) if p["rt60"] is not None else None
    L = n + (rir.size if rir is not None else 0)
    nfft = sfft.next_fast_len(max(L, 2), real=True)
    freqs = np.fft.rfftfreq(nfft, 1.0 / sr)
    X = sfft.rfft(x, nfft)
    if rir is not None:
        X *= sfft.rfft(rir, nfft)
    grid = np.linspace(0.0, sr / 2.0, 1025)  # the EQ is smooth: evaluate on a grid, interpolate
    eq = np.interp(freqs, grid, 10.0 ** (_eq_db(grid, p) / 20.0))
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
        Y = sfft.rfft(y, nfft)
        band = _smoothstep(freqs, 200.0, 320.0) * (1.0 - _smoothstep(freqs, 3350.0, 3700.0))
        y = sfft.irfft(Y * band, nfft)[:n][::2].copy()
        out_sr = 8000
        peak = np.max(np.abs(y)) + 1e-12
        y = _mulaw(y / peak * 0.95) * peak / 0.95
    peak = np.max(np.abs(y)) + 1e-12
    y = y / peak * p["peak"]
    return y, out_sr, p


def _mulaw(x: np.ndarray, mu: int = 255) -> np.ndarray:
    """8-bit µ-law encode/decode: y = sgn(x) ln(1 + µ|x|)/ln(1 + µ), quantized to 256 levels."""
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    q = np.round((y + 1.0) * 127.5) / 127.5 - 1.0
    return np.sign(q) * np.expm1(np.abs(q) * np.log1p(mu)) / mu


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return x
    g = gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g)


def _utterance_rng(speaker: SpeakerProfile, seed: int) -> np.random.Generator:
    key = zlib.crc32(speaker.speaker_id.encode())
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, key, 0x0A11]))


def utterance_plan(speaker: SpeakerProfile, seed: int) -> list[tuple[str, float, float]]:
    """The phone sequence (phone, start s, end s) of ``synthesize_utterance(speaker, seed, …)``
    for a 3 s utterance (for inspection; ``clo`` = stop closure, ``sil`` = pause)."""
    rng = _utterance_rng(speaker, seed)
    rng.random()  # the channel draw
    tr = _plan(speaker, rng, int(3.0 * INTERNAL_SAMPLE_RATE) // _HOP + 2)
    k = _HOP / INTERNAL_SAMPLE_RATE
    return [(ph, a * k, b * k) for ph, a, b in tr.phones]


def _synthesize(
    speaker: SpeakerProfile,
    seed: int,
    duration_s: float,
    sample_rate: int,
    channel: str | None,
    degrade: Mapping[str, Any] | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    if not isinstance(speaker, SpeakerProfile):
        raise TypeError(f"speaker must be a SpeakerProfile, got {type(speaker).__name__}")
    if not np.isfinite(duration_s) or duration_s <= 0.05 or duration_s > 600:
        raise ValueError(f"duration_s must be in (0.05, 600] seconds, got {duration_s!r}")
    if int(sample_rate) != sample_rate or not 4000 <= sample_rate <= 192000:
        raise ValueError(f"sample_rate must be an integer in [4000, 192000], got {sample_rate!r}")
    if channel is not None and channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; choose from {list(CHANNELS)}")
    _check_degrade(degrade)
    sample_rate = int(sample_rate)
    rng = _utterance_rng(speaker, seed)
    u = rng.random()  # always drawn, so an explicit channel does not shift the other draws
    if channel is None:
        channel = _CHANNEL_NAMES[int(np.searchsorted(np.cumsum(_CHANNEL_P), u, side="right"))]
    snr_override = lowpass = None
    if speaker_matches(speaker, degrade):
        assert degrade is not None
        channel = degrade.get("channel", channel)
        snr_override = degrade.get("snr_db")
        lowpass = degrade.get("lowpass_hz")
    n = int(round(duration_s * INTERNAL_SAMPLE_RATE))
    x = _clean_speech(speaker, rng, n)
    y, sr, params = _apply_channel(x, channel, rng, snr_override, lowpass)
    y = _resample(y, sr, sample_rate)
    n_out = int(round(duration_s * sample_rate))
    if y.size < n_out:
        y = np.pad(y, (0, n_out - y.size))
    y = np.clip(y[:n_out], -1.0, 1.0).astype(np.float32)
    info = {"channel": channel, "snr_db": float(params["snr"]), "rt60": params["rt60"]}
    return y, info


def synthesize_utterance(
    speaker: SpeakerProfile,
    seed: int,
    duration_s: float,
    sample_rate: int = 16000,
    channel: str | None = None,
    degrade: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """One recording of ``speaker``: float32 mono in [−1, 1], ``round(duration_s·sample_rate)``
    samples, a pure function of the arguments.

    ``channel`` is one of ``CHANNELS`` (drawn from the seed when None). ``degrade`` (e.g.
    ``{"column": "accent", "value": "coastal", "snr_db": 0.0}``; optional ``lowpass_hz``,
    ``channel``) worsens the recording only if the speaker is in the named group: SNR becomes
    ``min(drawn, snr_db)``, an extra 8th-order low-pass at ``lowpass_hz``, a forced channel.
    """
    return _synthesize(speaker, seed, duration_s, sample_rate, channel, degrade)[0]


# --- corpus ---------------------------------------------------------------------------------
def _utt_seed(seed: int, spk_index: int, utt_index: int) -> int:
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0xC0C0, spk_index, utt_index])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def _corpus_job(job: tuple) -> dict[str, Any]:
    import soundfile as sf

    speaker, utt_index, useed, dur, sr, degrade, out_dir = job
    y, info = _synthesize(speaker, useed, dur, sr, None, degrade)
    rel = Path("wav") / speaker.speaker_id / f"{speaker.speaker_id}-{utt_index:03d}.wav"
    path = Path(out_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, sr, subtype="PCM_16")
    return {
        "utt_id": f"{speaker.speaker_id}-{utt_index:03d}",
        "path": rel.as_posix(),
        "speaker": speaker.speaker_id,
        "channel": info["channel"],
        "duration": round(y.size / sr, 6),
        "sample_rate": sr,
        "snr_db": round(info["snr_db"], 3),
        "seed": useed,
    }


def generate_corpus(
    out_dir: str | Path,
    n_speakers: int,
    utts_per_speaker: int,
    seed: int = 0,
    sample_rate: int = 16000,
    min_duration_s: float = 2.0,
    max_duration_s: float = 4.0,
    degrade: Mapping[str, Any] | None = None,
    workers: int = 1,
    progress: bool = True,
):
    """Write a synthetic corpus and return its utterance table joined with speaker metadata.

    Layout: ``out_dir/wav/<speaker>/<utt_id>.wav`` (16-bit PCM), ``out_dir/speakers.csv``
    (speaker, gender, age_band, accent), ``out_dir/utterances.csv`` (utt_id, path relative to
    ``out_dir``, speaker, channel, duration, sample_rate, snr_db, seed: the utterance seed, so
    ``synthesize_utterance(speaker, seed, duration, sample_rate, channel)`` re-creates it).
    Durations ~ U[min, max] rounded to 10 ms. Bit-identical for the same arguments whatever
    ``workers`` is.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    for name, v in (("n_speakers", n_speakers), ("utts_per_speaker", utts_per_speaker)):
        if int(v) != v or v < 1:
            raise ValueError(f"generate_corpus: {name} must be a positive integer, got {v!r}")
    if not 0.1 <= min_duration_s <= max_duration_s:
        raise ValueError(
            f"generate_corpus: need 0.1 <= min_duration_s <= max_duration_s, "
            f"got {min_duration_s!r}, {max_duration_s!r}"
        )
    _check_degrade(degrade)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    speakers = make_speakers(int(n_speakers), seed)
    jobs = []
    for si, spk in enumerate(speakers):
        for ui in range(int(utts_per_speaker)):
            useed = _utt_seed(seed, si, ui)
            u = np.random.default_rng(useed).random()
            dur = round(min_duration_s + u * (max_duration_s - min_duration_s), 2)
            dur = float(min(max(dur, min_duration_s), max_duration_s))
            jobs.append((spk, ui, useed, dur, int(sample_rate), degrade, str(out)))
    bar = dict(total=len(jobs), disable=not progress, desc="synthetic corpus", unit="utt")
    if workers and workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # forkserver/spawn: never fork a parent that may hold torch or BLAS threads
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
        with ProcessPoolExecutor(max_workers=int(workers), mp_context=ctx) as ex:
            rows = list(tqdm(ex.map(_corpus_job, jobs, chunksize=16), **bar))
    else:
        rows = [_corpus_job(j) for j in tqdm(jobs, **bar)]
    spk_df = pd.DataFrame([s.metadata() for s in speakers])
    utt_df = pd.DataFrame(rows)
    spk_df.to_csv(out / "speakers.csv", index=False)
    utt_df.to_csv(out / "utterances.csv", index=False)
    return utt_df.merge(spk_df, on="speaker", how="left", validate="many_to_one")


def speakers_table(speakers: Iterable[SpeakerProfile]):
    """All identity parameters of ``speakers`` as a DataFrame (one row per speaker)."""
    import pandas as pd

    return pd.DataFrame([s.to_dict() for s in speakers])
