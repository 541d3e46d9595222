"""Simulated production traffic for the drift checks: a synthetic speaker-embedding population
and production-log-shaped windows drawn from it (tests, the benchmark and demos; not the
synthetic speech corpus, which is `speakerops.data.synthetic`).

Model (unit-norm embeddings in D dims):

    e = normalise( z_speaker + σ_w · ε / √D + [phone] · β · u_phone )

with speaker directions z ~ uniform on the sphere (a fresh set per call: production
speakers are new people), session noise ε ~ N(0, I), and a fixed "phone channel" direction
u_phone (the same in every call, derived from a constant seed) of length β. A phone
utterance is also 8 kHz (else 16 kHz) with a lower SNR (N(15, 6) vs N(25, 6) dB);
durations are log-normal around 6 s whatever the channel. ``p_phone`` sets the channel
mix: the reference and a same-distribution window share it, a shifted-channel window
raises it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from speakerops.drift.log import emb_column_names, speaker_pseudonym

_WORLD_SEED = 20240601


def phone_direction(dim: int) -> np.ndarray:
    u = np.random.default_rng([_WORLD_SEED, dim]).standard_normal(dim)
    return u / np.linalg.norm(u)


def synthetic_population(
    n: int,
    *,
    n_speakers: int,
    p_phone: float,
    seed: int,
    dim: int = 192,
    within_sd: float = 0.6,
    channel_shift: float = 0.35,
    speaker_prefix: str = "spk",
) -> tuple[np.ndarray, pd.DataFrame]:
    """``n`` embeddings [n, dim] float32 and their metadata (duration_s, sample_rate,
    snr_db, channel, speaker)."""
    rng = np.random.default_rng(seed)
    spk = rng.standard_normal((n_speakers, dim))
    spk /= np.linalg.norm(spk, axis=1, keepdims=True)
    sid = rng.integers(0, n_speakers, n)
    phone = rng.random(n) < p_phone
    e = spk[sid] + within_sd * rng.standard_normal((n, dim)) / np.sqrt(dim)
    e[phone] += channel_shift * phone_direction(dim)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    meta = pd.DataFrame(
        {
            "duration_s": np.clip(rng.lognormal(np.log(6.0), 0.5, n), 1.0, 30.0),
            "sample_rate": np.where(phone, 8000, 16000).astype(np.int32),
            "snr_db": np.where(phone, rng.normal(15, 6, n), rng.normal(25, 6, n)),
            "channel": np.where(phone, "phone", "mic"),
            "speaker": np.char.add(f"{speaker_prefix}{seed}_", sid.astype(str)),
        }
    )
    return e.astype(np.float32), meta


def synthetic_window(
    n: int,
    *,
    n_speakers: int,
    p_phone: float,
    seed: int,
    model_name: str = "speaker-encoder",
    model_version: str = "1",
    pseudonym_key: bytes = b"synthetic-pseudonym-key-0123456789",
    start: str = "2025-01-01",
    dim: int = 192,
    **kwargs,
) -> pd.DataFrame:
    """A production-log-shaped wide frame (as :func:`read_production_log` returns) drawn
    from :func:`synthetic_population`, speakers pseudonymised with ``pseudonym_key``."""
    emb, meta = synthetic_population(
        n, n_speakers=n_speakers, p_phone=p_phone, seed=seed, dim=dim, **kwargs
    )
    t0 = pd.Timestamp(start, tz="UTC")
    df = pd.DataFrame(
        {
            "utt_id": [f"u{seed}-{i:07d}" for i in range(n)],
            "model_name": model_name,
            "model_version": str(model_version),
            "timestamp": t0 + pd.to_timedelta(np.arange(n) * 1.0, unit="s"),
            "duration_s": meta["duration_s"],
            "sample_rate": meta["sample_rate"],
            "snr_db": meta["snr_db"],
            "channel": meta["channel"],
            "speaker_key": [speaker_pseudonym(s, pseudonym_key) for s in meta["speaker"]],
        }
    )
    return pd.concat([df, pd.DataFrame(emb, columns=emb_column_names(dim))], axis=1)
