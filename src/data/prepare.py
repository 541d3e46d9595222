"""The `prepare` stage: corpus -> manifest, speaker-disjoint splits, hashed trial lists, quarantine.

Every file is decoded once; an unreadable, empty, NaN-filled, silent, too-short, clipped or
DC-shifted file goes to `quarantine.csv` with its reason and the run goes on, and so does every
entry the file lister skipped (a directory named like audio, a dangling link, an unsupported
format, a file the corpus layout cannot place, duplicate utterance ids). Outputs in `data.prepared_dir`:
`manifest.csv`, `quarantine.csv`, `trials_calibration.csv`, `trials_eval.csv` (+ `.sha256`),
`prepare.json` (counts and hashes); with `data.eval_channels`, a folder per channel condition
of the eval split (:mod:`speakerops.data.channel_copy`).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig
from tqdm.auto import tqdm

from speakerops.core.config import compose
from speakerops.data import corpora
from speakerops.data.audio import AudioError, load_audio
from speakerops.data.channel_copy import eval_channels, write_channel_copies
from speakerops.data.listing import QUARANTINE_COLUMNS, FileListing
from speakerops.data.manifest import (
    METADATA_COLUMNS,
    assign_splits,
    make_trials,
    read_manifest,
    segment_rows,
    write_trials,
)
from speakerops.data.pins import write_trial_inputs
from speakerops.data.quality import QualitySettings, level_refusals


def _setting(data: DictConfig, key: str):
    """``data.<key>``; a hand-built data config without it gets the one default in conf/."""
    value = data.get(key)
    return compose().data[key] if value is None else value


def _probe(path: str, min_duration: float, quality: QualitySettings) -> tuple[float, int] | str:
    """(duration, native sample rate) of a usable file, or the reason it is unusable."""
    try:
        wav, rate = load_audio(path, None, min_duration)
    except AudioError as exc:
        return str(exc)
    refusals = level_refusals(wav, quality, path)
    if refusals:
        return "; ".join(r[3] for r in refusals)
    return wav.size / rate, rate


def validate_files(
    candidates: pd.DataFrame,
    min_duration: float,
    quality: QualitySettings,
    workers: int = 2,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decode and check every candidate; returns (usable rows with duration and sample_rate,
    quarantine)."""
    paths = candidates["path"].tolist()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(
            tqdm(
                pool.map(lambda p: _probe(p, min_duration, quality), paths),
                total=len(paths),
                desc="prepare: checking audio",
                disable=not progress,
            )
        )
    ok = [isinstance(r, tuple) for r in results]
    good = candidates[ok].copy()
    good["duration"] = [r[0] for r in results if isinstance(r, tuple)]
    good["sample_rate"] = [r[1] for r in results if isinstance(r, tuple)]
    bad = candidates[[not o for o in ok]][["utt_id", "path"]].copy()
    bad["reason"] = [r for r in results if isinstance(r, str)]
    return good, bad


def _list_and_validate(
    corpus: DictConfig, data: DictConfig, progress: bool, segment: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    listing = FileListing()
    candidates = corpora.list_corpus(
        corpus.corpus,
        corpus.get("root"),
        listing,
        data.get("synthetic"),
        data.get("synthetic_dir"),
    )
    quality = QualitySettings.from_config(_setting(data, "quality"))
    good, bad = validate_files(
        candidates, float(data.min_duration), quality, int(data.get("workers", 2)), progress
    )
    quarantine = pd.concat([listing.quarantine(), bad[QUARANTINE_COLUMNS]], ignore_index=True)
    if good.empty:
        first = quarantine["reason"].iloc[0] if len(quarantine) else "no candidate files"
        raise ValueError(
            f"corpus {corpus.corpus}: no usable audio ({len(quarantine)} entries quarantined, "
            f"e.g. {first})"
        )
    if segment and data.get("segment_seconds"):
        good = segment_rows(good, float(data.segment_seconds), float(data.min_duration))
    return good, quarantine


def build_manifest(data: DictConfig, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """List the configured corpus, validate it and assign speaker-disjoint splits.

    With `data.eval_corpus` ({corpus, root, main_fraction}) every speaker of that second corpus
    is an eval speaker, and the main corpus gives the eval split only its ``main_fraction`` of
    readers (held out from train and calibration like any eval speaker; absent or 0: the main
    corpus is split into train and calibration only).
    """
    good, quarantine = _list_and_validate(data, data, progress)
    eval_corpus = data.get("eval_corpus")
    main_eval = float(eval_corpus.get("main_fraction", 0.0)) if eval_corpus else None
    split = assign_splits(
        good["speaker"].tolist(),
        float(data.calibration_fraction),
        float(data.eval_fraction) if main_eval is None else main_eval,
        int(data.split_seed),
    )
    good["split"] = good["speaker"].map(split)
    if eval_corpus:
        held, bad = _list_and_validate(eval_corpus, data, progress, segment=False)
        clash = set(held["speaker"]) & set(good["speaker"])
        if clash:
            raise ValueError(
                f"data.eval_corpus shares speakers with data.corpus: {sorted(clash)[:5]}"
            )
        good = pd.concat([good, held.assign(split="eval")], ignore_index=True)
        quarantine = pd.concat([quarantine, bad], ignore_index=True)
    for extra in data.get("extra_manifests") or []:
        rows = read_manifest(extra).assign(split="train")
        clash = set(rows["speaker"]) & set(good.loc[good["split"] != "train", "speaker"])
        if clash:
            raise ValueError(
                f"{extra}: speakers {sorted(clash)[:5]} are held-out eval/calibration speakers"
            )
        good = pd.concat([good, rows], ignore_index=True)
    for col in METADATA_COLUMNS:
        if col not in good.columns:
            good[col] = "unknown"
        good[col] = good[col].fillna("unknown").astype(str)
    return good.reset_index(drop=True), quarantine


def prepare(data: DictConfig, progress: bool = True) -> dict:
    """Run the stage and return its summary (also written to `prepare.json`)."""
    out = Path(data.prepared_dir)
    eval_channels(data)  # a bad channel list is refused before any file is read
    out.mkdir(parents=True, exist_ok=True)
    manifest, quarantine = build_manifest(data, progress)
    columns = ["utt_id", "path", "speaker", "duration", "sample_rate", *METADATA_COLUMNS, "split"]
    extra = [c for c in manifest.columns if c not in columns]
    manifest = manifest[columns + extra]
    manifest.to_csv(out / "manifest.csv", index=False)
    quarantine.to_csv(out / "quarantine.csv", index=False)
    t = data.trials
    hashes, input_hashes, written = {}, {}, {}
    for split in ("calibration", "eval"):
        rows = manifest[manifest["split"] == split]
        if split == "eval" and data.get("official_trials"):
            trials = corpora.read_voxceleb_trials(data.official_trials)
        elif rows["speaker"].nunique() >= 2:
            trials = make_trials(
                rows, int(t.targets_per_utt), int(t.nontargets_per_utt), int(t.seed)
            )
        else:
            continue
        hashes[split] = write_trials(trials, out / f"trials_{split}.csv")
        written[split] = trials
        input_hashes[split] = write_trial_inputs(trials, manifest, out / f"trials_{split}.csv")
    summary = {
        "corpus": data.corpus,
        "n_utterances": int(len(manifest)),
        "n_quarantined": int(len(quarantine)),
        "speakers": {
            s: int(manifest.loc[manifest.split == s, "speaker"].nunique())
            for s in ("train", "calibration", "eval")
        },
        "trial_hashes": hashes,
        "trial_input_hashes": input_hashes,
        "channels": write_channel_copies(data, out, manifest, written),
    }
    (out / "prepare.json").write_text(json.dumps(summary, indent=2))
    return summary
