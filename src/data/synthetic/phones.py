"""The phone inventory of the synthetic speech model: vowels (formants), consonants (noise
bands), accents (vowel shifts, rate, prosodic range), phonotactics and pauses."""

from __future__ import annotations

from typing import Any

import numpy as np

# Reference (male) formants F1..F3 in Hz (Peterson & Barney 1952); F4, F5 fixed.
VOWELS: dict[str, tuple[float, float, float]] = {
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
VOWEL_NAMES = tuple(VOWELS)
# vowel frequencies: reduced/central vowels are the most common, as in running speech
VOWEL_P = np.array([0.1, 0.16, 0.12, 0.08, 0.08, 0.05, 0.05, 0.07, 0.2, 0.09])
VOWEL_P = VOWEL_P / VOWEL_P.sum()
F45 = (3500.0, 4500.0)
BANDWIDTHS = np.array([70.0, 90.0, 130.0, 180.0, 250.0])
# Consonants: (kind, noise band centre Hz, band width Hz, level dB re vowel, voiced)
CONSONANTS: dict[str, tuple[str, float, float, float, bool]] = {
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
CONSONANT_NAMES = tuple(CONSONANTS)
CONSONANT_P = np.array([0.13, 0.07, 0.07, 0.06, 0.05, 0.04, 0.1, 0.14, 0.12, 0.1, 0.12])
CONSONANT_P = CONSONANT_P / CONSONANT_P.sum()

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


# P(onset consonant) and P(coda consonant) per syllable.
PHONOTACTICS: dict[str, float] = {"p_onset": 0.75, "p_coda": 0.3}
# Leading/trailing silence range (s), probability of a pause after a word, pause range (s).
PAUSES: dict[str, Any] = {"edge_s": (0.05, 0.25), "p_after_word": 0.15, "pause_s": (0.06, 0.25)}
