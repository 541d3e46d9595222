"""`speakerops spoof prepare`: the prepared corpus's bona fide audio and the attacks made from
it, in attack-disjoint splits, with hashed protocols and trial lists.

Reads ``spoof.bonafide_manifest`` (the manifest of `speakerops prepare`). Writes in
``spoof.out_dir``:

* ``wav/<attack>/<utt_id>.wav``: 16-bit PCM at ``spoof.sample_rate`` (bona fide items are
  crops of their recording, as long as the spoofs, so duration tells nothing);
* ``manifest.csv``: utt_id, path, speaker (the speaker an item is or claims to be), gender,
  split, label (``bonafide`` | ``spoof``), attack (``bonafide`` or the attack id), kind,
  source_utt, text, duration, sample_rate, detail (what was drawn: voice, RIR, mic ...);
* ``attacks.csv``: the attack table (kind, system, splits, unseen);
* ``cm_<split>.csv`` (utt_id, speaker, attack, label: 1 bona fide / 0 spoof; and
  ``cm_deployment.csv``, bona fide only: the eval speakers' unused recordings) and
  ``sasv_trials_<split>.csv`` (calibration, eval: enroll, test, label, kind, attack), each with
  its ``.sha256``;
* ``quarantine.csv``: items that could not be made, with the reason (the run goes on);
* ``spoof.json``: counts per split and attack, the hashes.

Same config and seed, same bytes (files and lists), whatever ``spoof.workers`` is.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
import torch
from omegaconf import DictConfig, OmegaConf

from speakerops.data.audio import AudioError, load_audio
from speakerops.data.manifest import SPLITS, read_manifest, write_trials
from speakerops.data.spoof.protocol import (
    BONAFIDE,
    DEPLOYMENT,
    attack_table,
    check_splits,
    plan_jobs,
    sasv_trials,
)
from speakerops.data.spoof.replay import check_mic_channels, load_rirs, replay
from speakerops.data.spoof.tts import TTSError, check_engine, synthesize_tts
from speakerops.data.spoof.vocoder import griffin_lim, lpc_resynthesis, world_resynthesis

MANIFEST_COLUMNS = ["utt_id", "path", "speaker", "gender", "split", "label", "attack", "kind",
                    "source_utt", "text", "duration", "sample_rate", "detail"]  # fmt: skip
CM_COLUMNS = ("utt_id", "speaker", "attack", "label")
SASV_COLUMNS = ("enroll", "test", "label", "kind", "attack")


def _source(
    job: dict, sample_rate: int, max_seconds: float, rng: np.random.Generator
) -> np.ndarray:
    """The job's bona fide recording at ``sample_rate``, a seeded crop of ``max_seconds``."""
    src = job["source"]
    wav, _ = load_audio(src["path"], sample_rate, 0.0, src["start"], src["end"])
    n = int(max_seconds * sample_rate)
    if wav.size > n:
        off = int(rng.integers(wav.size - n + 1))
        wav = wav[off : off + n]
    return wav.astype(np.float64)


def render(job: dict, spoof: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """The audio of one job (float64, ``spoof.sample_rate``) and what was drawn for it."""
    sr = int(spoof["sample_rate"])
    rng = np.random.default_rng(job["seed"])
    if job["attack"] == BONAFIDE:
        return _source(job, sr, float(spoof["max_seconds"]), rng), {}
    spec = spoof["attacks"][job["attack"]]
    kind = spec["kind"]
    if kind == "tts":
        voices = spec["voices"]
        voice = str(voices.get(job["gender"], voices["unknown"]))
        y = synthesize_tts(spec["engine"], voice, job["text"], job["pitch"], sr)
        y = y.astype(np.float64)[: int(float(spoof["max_seconds"]) * sr)]
        return y / (np.max(np.abs(y)) + 1e-12) * rng.uniform(0.3, 0.9), {"voice": voice}
    x = _source(job, sr, float(spoof["max_seconds"]), rng)
    if kind == "vocoder" and spec["method"] == "griffin_lim":
        return griffin_lim(x, sr, int(spec["n_mels"]), int(spec["n_iter"])), {}
    if kind == "vocoder" and spec["method"] == "lpc":
        return lpc_resynthesis(x, sr, int(spec["order"]), float(spec["voicing"]), rng), {}
    if kind == "vocoder" and spec["method"] == "world":
        f0_range = [float(v) for v in spec["f0_range"]]
        return world_resynthesis(x, sr, float(spec["frame_period"]), *f0_range), {}
    if kind == "replay":
        return replay(x, sr, spec, rng)
    raise ValueError(f"spoof.attacks.{job['attack']}: unknown method {spec.get('method')!r}")


def _make(args: tuple[dict, dict, str]) -> dict[str, Any]:
    """Render and write one job; a row of the manifest, or {'reason': ...} when it failed."""
    job, spoof, out_dir = args
    rel = Path("wav") / job["attack"] / f"{job['utt_id']}.wav"
    # one torch thread, in a worker and in process alike: Griffin-Lim's result depends on the
    # thread count (measured: up to 0.02 apart at 1 vs 2 threads), and the bytes must not
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        y, detail = render(job, spoof)
        if not np.isfinite(y).all() or np.max(np.abs(y)) <= 0:
            raise ValueError("the attack produced silent or non-finite audio")
    except (TTSError, AudioError, ValueError, FileNotFoundError) as exc:
        return {"utt_id": job["utt_id"], "attack": job["attack"], "reason": str(exc)}
    finally:
        torch.set_num_threads(threads)
    path = Path(out_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    sr = int(spoof["sample_rate"])
    sf.write(str(path), np.clip(y, -1.0, 1.0), sr, subtype="PCM_16")
    return {
        "utt_id": job["utt_id"],
        "path": str(path),
        "speaker": job["speaker"],
        "gender": job["gender"],
        "split": job["split"],
        "label": BONAFIDE if job["attack"] == BONAFIDE else "spoof",
        "attack": job["attack"],
        "kind": job["kind"],
        "source_utt": job["source"]["utt"] if job["kind"] != "tts" else "",
        "text": job.get("text", "") if job["kind"] == "tts" else "",
        "duration": round(y.size / sr, 6),
        "sample_rate": sr,
        "detail": json.dumps(detail, sort_keys=True),
    }


def _plain(spoof: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(spoof, DictConfig):
        return OmegaConf.to_container(spoof, resolve=True)  # type: ignore[return-value]
    return dict(spoof)


def spoof_prepare(spoof_cfg: DictConfig | Mapping[str, Any], progress: bool = True) -> dict:
    """Run the stage (see module doc); returns the summary written to ``spoof.json``."""
    spoof = _plain(spoof_cfg)
    splits = check_splits(spoof)
    for a in sorted({a for ids in splits.values() for a in ids}):  # config errors stop the run
        spec = spoof["attacks"][a]
        if spec["kind"] == "tts":
            check_engine(spec["engine"])
        elif spec["kind"] == "replay":
            check_mic_channels(list(spec["mic_channels"]))
            if spec.get("rir_dir"):
                load_rirs(str(spec["rir_dir"]), int(spoof["sample_rate"]))
    manifest = read_manifest(spoof["bonafide_manifest"])
    if "split" not in manifest.columns:
        raise ValueError(
            f"{spoof['bonafide_manifest']}: no split column (run `speakerops prepare`)"
        )
    out = Path(spoof["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(manifest, spoof, splits)
    args = [(j, spoof, str(out)) for j in jobs]
    workers = int(spoof.get("workers") or 1)
    if workers > 1:
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
            results = list(ex.map(_make, args, chunksize=4))
    else:
        results = [_make(a) for a in args]
    rows = [r for r in results if "reason" not in r]
    bad = pd.DataFrame(
        [r for r in results if "reason" in r], columns=["utt_id", "attack", "reason"]
    )
    bad.to_csv(out / "quarantine.csv", index=False)
    if not rows:
        first = bad["reason"].iloc[0] if len(bad) else "no jobs (empty splits?)"
        raise ValueError(f"spoof prepare: nothing was made ({len(bad)} items failed, e.g. {first})")
    cm = pd.DataFrame(rows, columns=MANIFEST_COLUMNS).sort_values("utt_id").reset_index(drop=True)
    cm.to_csv(out / "manifest.csv", index=False)
    table = attack_table(spoof, splits)
    table.to_csv(out / "attacks.csv", index=False)
    hashes: dict[str, str] = {}
    for split in SPLITS:
        part = cm[cm["split"] == split].assign(label=lambda d: (d["label"] == BONAFIDE).astype(int))
        if part.empty:
            continue
        hashes[f"cm_{split}"] = write_trials(part, out / f"cm_{split}.csv", CM_COLUMNS)
        if split != "train":
            trials = sasv_trials(part, int(spoof["nontargets_per_enroll"]), int(spoof["seed"]))
            hashes[f"sasv_trials_{split}"] = write_trials(
                trials, out / f"sasv_trials_{split}.csv", SASV_COLUMNS
            )
    dep = cm[cm["split"] == DEPLOYMENT].assign(label=1)
    if not dep.empty:
        hashes[f"cm_{DEPLOYMENT}"] = write_trials(dep, out / f"cm_{DEPLOYMENT}.csv", CM_COLUMNS)
    counts = {
        s: {
            a: int(n) for a, n in cm[cm["split"] == s]["attack"].value_counts().sort_index().items()
        }
        for s in (*SPLITS, DEPLOYMENT)
    }
    summary = {
        "n_items": int(len(cm)),
        "n_quarantined": int(len(bad)),
        "counts": counts,
        "unseen_attacks": table.loc[table["unseen"], "attack"].tolist(),
        "hashes": hashes,
    }
    (out / "spoof.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
