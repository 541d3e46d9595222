"""One recording: clean speech from the speech model through a recording channel, at the
requested rate; a pure function of the speaker and the seed."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from math import gcd
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from speakerops.data.channel.recording import CHANNELS, apply_recording_channel, draw_channel
from speakerops.data.synthetic.speakers import SpeakerProfile, check_degrade, speaker_matches
from speakerops.data.synthetic.speech import HOP, INTERNAL_SAMPLE_RATE, clean_speech, plan_tracks


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """SciPy polyphase resampling: the corpus bytes are pinned to it (not the project's sinc
    resampler, `speakerops.data.resample`, which reads and augments audio)."""
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
    tr = plan_tracks(speaker, rng, int(3.0 * INTERNAL_SAMPLE_RATE) // HOP + 2)
    k = HOP / INTERNAL_SAMPLE_RATE
    return [(ph, a * k, b * k) for ph, a, b in tr.phones]


def synthesize(
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
    check_degrade(degrade)
    sample_rate = int(sample_rate)
    rng = _utterance_rng(speaker, seed)
    u = rng.random()  # always drawn, so an explicit channel does not shift the other draws
    if channel is None:
        channel = draw_channel(u)
    snr_override = lowpass = None
    if speaker_matches(speaker, degrade):
        assert degrade is not None
        channel = degrade.get("channel", channel)
        snr_override = degrade.get("snr_db")
        lowpass = degrade.get("lowpass_hz")
    n = int(round(duration_s * INTERNAL_SAMPLE_RATE))
    x = clean_speech(speaker, rng, n)
    y, sr, params = apply_recording_channel(
        x, INTERNAL_SAMPLE_RATE, channel, rng, snr_override, lowpass
    )
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
    sample_rate: int = INTERNAL_SAMPLE_RATE,
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
    return synthesize(speaker, seed, duration_s, sample_rate, channel, degrade)[0]
