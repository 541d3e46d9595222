"""Rooms: impulse responses (real, image-source, or a decaying noise tail) and reverberation."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio.functional as AF

from speakerops.data.channel.dsp import next_fast_len
from speakerops.data.channel.level import EPS_POWER, power, uniform

SPEED_OF_SOUND = 343.0  # m/s


def prepare_rir(h: torch.Tensor, path: Path | None = None) -> torch.Tensor:
    """Per channel: trim the tail after 1 - 1e-6 of the energy, normalize to unit energy."""
    energy = h.double().square()
    total = energy.sum(dim=-1)
    if (total <= 0).any():
        raise ValueError(f"impulse response {path} has a silent channel")
    cum = energy.cumsum(dim=-1) / total[:, None]
    keep = int((cum < 1.0 - 1e-6).sum(dim=-1).max()) + 1
    h = h[:, : min(keep, h.shape[-1])]
    return (h / h.double().square().sum(dim=-1, keepdim=True).sqrt()).float()


def direct_path_index(h: torch.Tensor, sample_rate: int, window_ms: float = 1.0) -> int:
    """Index of the direct-path peak of a 1-D RIR.

    The first sample within 6 dB of the maximum (``|h| >= 0.5 max |h|``), refined to the largest
    ``|h|`` in the following ``window_ms`` (main lobe of a fractional delay). Equals
    ``argmax |h|`` for most RIRs, but not when a reflection is stronger than the direct sound
    (e.g. ``rir48000.wav`` peaks 3 ms after its onset); aligning on such a reflection would put
    the direct sound before the input.
    """
    a = h.abs()
    onset = int((a >= 0.5 * a.max()).nonzero()[0, 0])
    win = max(1, int(round(window_ms * 1e-3 * sample_rate)))
    return onset + int(a[onset : onset + win].argmax())


def convolve_aligned(x: torch.Tensor, h: torch.Tensor, d: int) -> torch.Tensor:
    """``(x * h)[d : d + N]``: with ``d`` the direct-path index the output is time-aligned."""
    n = x.shape[-1]
    fast = next_fast_len(n + h.shape[-1] - 1)
    h = torch.nn.functional.pad(h, (0, fast - (n + h.shape[-1] - 1)))
    return AF.fftconvolve(x, h)[d : d + n]


def reverberate(wav: torch.Tensor, h: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``y = (x * h)[d : d + N] * sqrt(P_x / P_y)`` with ``h`` normalized to unit energy and
    ``d`` its direct-path peak: same length, level and timing as ``wav`` (silence unchanged)."""
    p_in = power(wav)
    if p_in <= EPS_POWER:
        return wav
    h = h / h.double().square().sum().sqrt().float()
    y = convolve_aligned(wav.float(), h, direct_path_index(h, sample_rate))
    p_out = power(y)
    if p_out <= EPS_POWER:
        return wav
    return (y * math.sqrt(p_in / p_out)).to(wav.dtype)


@functools.lru_cache(maxsize=1)
def _import_pra() -> Any:
    """Import pyroomacoustics lazily (optional, ~0.6 s, once per process).

    Its RIR builder defaults to one thread per CPU; unless ``PRA_NUM_THREADS`` is set it is
    limited to torch's thread count (1 in DataLoader workers) to avoid oversubscription.
    """
    import pyroomacoustics as pra

    if "PRA_NUM_THREADS" not in os.environ:
        pra.constants.set("num_threads", max(1, torch.get_num_threads()))
    return pra


def exp_tail(
    length: int, rt60: float, sample_rate: int, generator: torch.Generator, t0: int = 0
) -> torch.Tensor:
    """Gaussian noise with amplitude envelope ``exp(-3 ln(10) t / RT60)`` (-60 dB at RT60)."""
    t = (torch.arange(length, dtype=torch.float32) + t0) / sample_rate
    return torch.randn(length, generator=generator) * torch.exp(-3.0 * math.log(10.0) * t / rt60)


def noise_rir(
    generator: torch.Generator,
    sample_rate: int,
    rt60: tuple[float, float],
    drr_db: tuple[float, float],
) -> torch.Tensor:
    """A direct path plus an exponentially decaying Gaussian tail: RT60 ~ U(``rt60``),
    direct-to-reverberant ratio ~ U(``drr_db``)."""
    t60 = uniform(generator, *rt60)
    drr = uniform(generator, *drr_db)
    tail = exp_tail(max(1, int(t60 * sample_rate)), t60, sample_rate, generator, t0=1)
    tail = tail * math.sqrt(10.0 ** (-drr / 10.0) / max(power(tail) * tail.numel(), 1e-30))
    return torch.cat([torch.ones(1), tail])


def room_rir(
    generator: torch.Generator,
    sample_rate: int,
    rt60: tuple[float, float],
    drr_db: tuple[float, float],
    early_order: int,
) -> torch.Tensor:
    """A random shoebox (pyroomacoustics): image-source early reflections up to
    ``early_order``, absorption from Sabine ``a = 0.161 V / (S RT60)``, then a stochastic
    exponential tail fitted to the early energy (falls back to :func:`noise_rir` when the
    room's mixing time is out of reach)."""
    pra = _import_pra()

    t60 = uniform(generator, *rt60)
    dims = np.array(
        [
            uniform(generator, 3.0, 10.0),
            uniform(generator, 3.0, 10.0),
            uniform(generator, 2.5, 4.0),
        ]
    )
    margin = 0.5

    def point() -> np.ndarray:
        return np.array([uniform(generator, margin, d - margin) for d in dims])

    src, mic = point(), point()
    for _ in range(8):  # keep the source at least 0.5 m from the microphone
        if np.linalg.norm(src - mic) >= 0.5:
            break
        mic = point()
    volume = float(np.prod(dims))
    surface = 2.0 * float(dims[0] * dims[1] + dims[0] * dims[2] + dims[1] * dims[2])
    absorption = float(np.clip(0.161 * volume / (surface * t60), 0.01, 0.99))
    room = pra.ShoeBox(
        dims.tolist(),
        fs=sample_rate,
        materials=pra.Material(absorption),
        max_order=early_order,
        air_absorption=False,
        use_rand_ism=False,
    )
    room.add_source(src.tolist())
    room.add_microphone(mic.tolist())
    # pyroomacoustics' 10 Hz high-pass designs an IIR filter per call (~1 ms): skip it, the
    # band below 20 Hz does not reach the fbank; restore the global setting afterwards.
    hpf = pra.constants.get("rir_hpf_enable")
    pra.constants.set("rir_hpf_enable", False)
    try:
        room.compute_rir()
    finally:
        pra.constants.set("rir_hpf_enable", hpf)
    h = torch.as_tensor(np.asarray(room.rir[0][0]), dtype=torch.float32)
    d = int(h.abs().argmax())
    # image sources of order <= N cover the sphere of radius (N - 1) / sqrt(sum 1/L^2)
    t_direct = float(np.linalg.norm(src - mic)) / SPEED_OF_SOUND
    r_complete = (early_order - 1) / math.sqrt(float(np.sum(1.0 / dims**2)))
    mix = d + int((r_complete / SPEED_OF_SOUND - t_direct) * sample_rate)
    w0 = d + max(1, (mix - d) // 2)
    if mix - w0 < 16 or mix > h.numel():
        return noise_rir(generator, sample_rate, rt60, drr_db)
    # energy envelope E(t) = E0 exp(-6 ln(10) t / RT60): estimate E0 on [w0, mix)
    decay = 6.0 * math.log(10.0) / (t60 * sample_rate)
    k = torch.arange(w0, mix, dtype=torch.float64) - d
    e0 = float((h[w0:mix].double().square() * torch.exp(decay * k)).mean())
    n_tail = max(0, d + int(t60 * sample_rate) - mix)
    tail = exp_tail(n_tail, t60, sample_rate, generator, t0=mix - d) * math.sqrt(e0)
    return torch.cat([h[:mix], tail])
