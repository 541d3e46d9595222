"""Synthetic speakers: identity parameters drawn per ``(seed, index)``, group metadata, and
the degradation hook that worsens the recordings of one group."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from speakerops.data.channel.recording import CHANNELS
from speakerops.data.synthetic.phones import ACCENTS, VOWELS

GENDERS = ("f", "m")
AGE_BANDS = ("18-30", "31-50", "51+")


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
            for a, b in np.exp(rng.normal(0.0, IDENTITY_SPREAD["vowel"], size=(len(VOWELS), 2)))
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


def check_degrade(degrade: Mapping[str, Any] | None) -> None:
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
    check_degrade(degrade)
    have = speaker.metadata()[degrade["column"]]
    want = degrade["value"]
    if isinstance(want, str | int | float):
        return have == want
    return have in set(want)
