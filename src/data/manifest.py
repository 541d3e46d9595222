"""Manifests, speaker-disjoint splits and hashed trial lists.

A manifest is a table with one row per recording:
    utt_id, path, speaker, duration, sample_rate, <metadata columns>, split
A trial list is a CSV `enroll,test,label` (label 1 = same speaker) whose sha256 travels with
every figure computed from it, so a gate can refuse to compare runs scored on different lists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from speakerops.core.jsonio import sha256_file

MANIFEST_COLUMNS = ["utt_id", "path", "speaker", "duration", "sample_rate", "split"]
METADATA_COLUMNS = ["gender", "age_band", "accent", "channel"]
SPLITS = ("train", "calibration", "eval")


def assign_splits(
    speakers: list[str], calibration_fraction: float, eval_fraction: float, seed: int
) -> dict[str, str]:
    """Speaker-disjoint split: a seeded permutation of the sorted speaker ids, cut by fraction.

    Every split asked for (fraction > 0) gets at least 2 speakers when there are enough.
    """
    if not 0 <= calibration_fraction <= 1 or not 0 <= eval_fraction <= 1:
        raise ValueError("split fractions must lie in [0, 1]")
    if calibration_fraction + eval_fraction > 1 + 1e-9:
        raise ValueError(
            f"calibration_fraction + eval_fraction = {calibration_fraction + eval_fraction} > 1"
        )
    order = sorted(set(speakers))
    rng = np.random.default_rng(seed)
    order = [order[i] for i in rng.permutation(len(order))]
    n = len(order)

    def count(fraction: float) -> int:
        return 0 if fraction <= 0 else min(n, max(2, int(round(fraction * n))))

    n_eval = count(eval_fraction)
    n_cal = min(count(calibration_fraction), n - n_eval)
    split = {}
    for i, spk in enumerate(order):
        split[spk] = "eval" if i < n_eval else "calibration" if i < n_eval + n_cal else "train"
    return split


def make_trials(
    manifest: pd.DataFrame,
    n_targets_per_utt: int = 3,
    n_nontargets_per_utt: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """Seeded verification trials among the rows of `manifest` (one split).

    Each utterance serves as enrollment for up to `n_targets_per_utt` later utterances of its
    speaker and `n_nontargets_per_utt` utterances of other speakers; duplicates (either order)
    are removed, so the list is deterministic for a seed and a manifest.
    """
    if manifest["speaker"].nunique() < 2:
        raise ValueError("need at least two speakers to build trials")
    rng = np.random.default_rng(seed)
    df = manifest.sort_values("utt_id").reset_index(drop=True)
    utts = df["utt_id"].to_numpy()
    spk = df["speaker"].to_numpy()
    by_spk: dict[str, np.ndarray] = {s: np.flatnonzero(spk == s) for s in np.unique(spk)}
    pairs: set[tuple[str, str, int]] = set()
    for i in range(len(df)):
        same = by_spk[spk[i]]
        same = same[same != i]
        if len(same):
            for j in rng.choice(same, size=min(n_targets_per_utt, len(same)), replace=False):
                a, b = sorted((utts[i], utts[j]))
                pairs.add((a, b, 1))
        others = np.flatnonzero(spk != spk[i])
        for j in rng.choice(others, size=min(n_nontargets_per_utt, len(others)), replace=False):
            a, b = sorted((utts[i], utts[j]))
            pairs.add((a, b, 0))
    trials = pd.DataFrame(sorted(pairs), columns=["enroll", "test", "label"])
    return trials


def row_spans(rows: pd.DataFrame) -> list[tuple[float | None, float | None]]:
    """(start, end) in seconds of each manifest row; (None, None) = the whole file.

    Manifests of segmented corpora carry `start`/`end` columns (NaN for whole files)."""
    if "start" not in rows.columns:
        return [(None, None)] * len(rows)
    out = []
    for a, b in zip(rows["start"], rows["end"], strict=True):
        whole = pd.isna(a)
        out.append((None, None) if whole else (float(a), float(b)))
    return out


def segment_rows(manifest: pd.DataFrame, seconds: float, min_seconds: float) -> pd.DataFrame:
    """Cut each recording into consecutive `seconds`-long segments (`<utt_id>_<k>`); a tail
    shorter than `min_seconds` is dropped, a recording shorter than `seconds` stays whole."""
    rows = []
    for rec in manifest.to_dict("records"):
        n = max(1, int(rec["duration"] // seconds))
        if n == 1:
            rows.append({**rec, "start": float("nan"), "end": float("nan")})
            continue
        for k in range(n):
            start = k * seconds
            end = min(rec["duration"], start + seconds)
            if end - start >= min_seconds:
                rows.append(
                    {
                        **rec,
                        "utt_id": f"{rec['utt_id']}_{k}",
                        "start": start,
                        "end": end,
                        "duration": end - start,
                        "source_utt": rec["utt_id"],
                    }
                )
    return pd.DataFrame(rows)


def write_trials(
    trials: pd.DataFrame, path: str | Path, columns: tuple[str, ...] = ("enroll", "test", "label")
) -> str:
    """Write a trial list (its `columns`) as CSV and its sha256 beside it (`<path>.sha256`);
    returns the hash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    trials[list(columns)].to_csv(path, index=False)
    digest = sha256_file(path)
    path.with_suffix(path.suffix + ".sha256").write_text(f"{digest}  {path.name}\n")
    return digest


def read_trials(path: str | Path) -> tuple[pd.DataFrame, str]:
    """Read a trial list and return it with the sha256 of its bytes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: trial list not found (run `speakerops prepare` first)")
    trials = pd.read_csv(path, dtype={"enroll": str, "test": str, "label": int})
    missing = {"enroll", "test", "label"} - set(trials.columns)
    if missing:
        raise ValueError(f"{path}: trial list lacks columns {sorted(missing)}")
    return trials, sha256_file(path)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest CSV, checking its required columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found (run `speakerops prepare` first)")
    df = pd.read_csv(path, dtype={"utt_id": str, "speaker": str})
    missing = {"utt_id", "path", "speaker"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: manifest lacks columns {sorted(missing)}")
    return df
