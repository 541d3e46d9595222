"""Writing a synthetic corpus: utterance seeds and durations, WAV files, the two tables."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from speakerops.data.synthetic.speakers import SpeakerProfile, check_degrade, make_speakers
from speakerops.data.synthetic.speech import INTERNAL_SAMPLE_RATE
from speakerops.data.synthetic.utterance import synthesize


def _utt_seed(seed: int, spk_index: int, utt_index: int) -> int:
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0xC0C0, spk_index, utt_index])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def _corpus_job(job: tuple) -> dict[str, Any]:
    speaker, utt_index, useed, dur, sr, degrade, out_dir = job
    y, info = synthesize(speaker, useed, dur, sr, None, degrade)
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
    sample_rate: int = INTERNAL_SAMPLE_RATE,
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
    for name, v in (("n_speakers", n_speakers), ("utts_per_speaker", utts_per_speaker)):
        if int(v) != v or v < 1:
            raise ValueError(f"generate_corpus: {name} must be a positive integer, got {v!r}")
    if not 0.1 <= min_duration_s <= max_duration_s:
        raise ValueError(
            f"generate_corpus: need 0.1 <= min_duration_s <= max_duration_s, "
            f"got {min_duration_s!r}, {max_duration_s!r}"
        )
    check_degrade(degrade)
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
    return pd.DataFrame([s.to_dict() for s in speakers])
