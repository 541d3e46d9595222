"""The replay attack: a bona fide recording of the target speaker played back and re-recorded.

    y = mic₂{ (spk(x) ∗ h_room) }

one implementation, the channel simulator's: the loudspeaker
(:mod:`speakerops.data.channel.loudspeaker`: band limit and non-linearity), a real room impulse
response (``rir_dir``, prepared and applied by :mod:`speakerops.data.channel.room`; the
synthetic corpus's decaying-noise room when ``rir_dir`` is null), and the second microphone
with its noise (:func:`speakerops.data.channel.recording.apply_recording_channel`, a channel
preset drawn from ``mic_channels``; presets with their own phone line are refused).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speakerops.data.audio import audio_extensions, read_audio
from speakerops.data.channel.loudspeaker import loudspeaker_params, play_through_loudspeaker
from speakerops.data.channel.recording import (
    CHANNELS,
    apply_recording_channel,
    decaying_noise_rir_np,
)
from speakerops.data.channel.room import prepare_rir, reverberate
from speakerops.data.resample import resample


@functools.lru_cache(maxsize=8)
def load_rirs(rir_dir: str, sample_rate: int) -> tuple[tuple[str, np.ndarray], ...]:
    """Every impulse response under ``rir_dir`` (sorted by name; first channel of a
    multi-channel file) at ``sample_rate``, trimmed and unit-energy (``room.prepare_rir``)."""
    root = Path(rir_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"spoof replay rir_dir={rir_dir}: not a folder of impulse responses"
        )
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in audio_extensions())
    if not files:
        raise FileNotFoundError(f"spoof replay rir_dir={rir_dir}: no audio files in it")
    out = []
    for path in files:
        data, rate = read_audio(path)
        h = resample(np.ascontiguousarray(data[:, 0]), rate, sample_rate)
        h = prepare_rir(torch.from_numpy(h)[None, :], path)[0]
        out.append((path.name, h.numpy()))
    return tuple(out)


def check_mic_channels(names: list[str]) -> None:
    bad = [n for n in names if n not in CHANNELS or n == "phone"]
    if bad or not names:
        raise ValueError(
            f"spoof replay mic_channels={names}: expected recording presets other than phone "
            f"({', '.join(c for c in CHANNELS if c != 'phone')})"
        )


def replay(
    x: np.ndarray, sample_rate: int, spec: dict[str, Any], rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """``x`` replayed under the attack config ``spec`` (``loudspeaker`` ranges, ``rir_dir``,
    ``mic_channels``); returns the recording and what was drawn (loudspeaker, rir, mic)."""
    speaker = loudspeaker_params(spec["loudspeaker"], rng)
    y = play_through_loudspeaker(x, sample_rate, speaker)
    if spec.get("rir_dir"):
        rirs = load_rirs(str(spec["rir_dir"]), sample_rate)
        name, h = rirs[int(rng.integers(len(rirs)))]
        wet = reverberate(torch.from_numpy(y.astype(np.float32)), torch.from_numpy(h), sample_rate)
        y = wet.double().numpy()
    else:
        name = "decaying_noise"
        h = decaying_noise_rir_np(
            float(rng.uniform(0.2, 0.5)), float(rng.uniform(3, 10)), rng, sample_rate
        )
        y = np.convolve(y, h)[: y.size]
    mics = list(spec["mic_channels"])
    check_mic_channels(mics)
    mic = mics[int(rng.integers(len(mics)))]
    y, _, _ = apply_recording_channel(y, sample_rate, mic, rng, None, None)
    return y, {"rir": name, "mic": mic, **{f"spk_{k}": round(v, 3) for k, v in speaker.items()}}
