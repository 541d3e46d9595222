"""Trial lists: the pinned sets a stage scores (with their content-hash check) and the check
every metric applies to a list of scores and labels.

* :func:`load_trial_set`: `trials_<split>.csv` joined with the manifest (both sides'
  speakers, durations and metadata); refuses a list whose bytes no longer match the `.sha256`
  that `prepare` wrote beside it.
* :func:`validate_trials`: scores as float64 and labels as bool, or a ``ValueError`` naming the
  argument and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from speakerops.data.manifest import read_manifest, read_trials
from speakerops.data.pins import check_trial_inputs

__all__ = ["TrialSet", "load_trial_set", "trial_table", "validate_trials"]


@dataclass
class TrialSet:
    """A pinned trial list with both sides' speakers, durations and metadata."""

    name: str
    path: Path
    sha256: str
    table: pd.DataFrame  # enroll, test, label, enroll_speaker, speaker, enroll_duration, duration, <col>, enroll_<col>
    inputs_sha256: str | None = None  # the pinned manifest rows + audio bytes behind the list

    @property
    def labels(self) -> np.ndarray:
        return self.table["label"].to_numpy().astype(bool)

    @property
    def utterances(self) -> set[str]:
        return set(self.table["enroll"]) | set(self.table["test"])


def load_trial_set(
    prepared_dir: str | Path, split: str, manifest: pd.DataFrame | None = None
) -> TrialSet:
    """`trials_<split>.csv` joined with the manifest; refuses a list whose bytes no longer
    match the `.sha256` written beside it by `prepare`, and a list whose manifest rows or
    audio bytes no longer match the pin `prepare` wrote (:mod:`speakerops.data.pins`)."""
    prepared = Path(prepared_dir)
    path = prepared / f"trials_{split}.csv"
    trials, sha = read_trials(path)
    recorded = path.with_suffix(".csv.sha256")
    if recorded.is_file():
        want = recorded.read_text().split()[0]
        if want != sha:
            raise ValueError(
                f"{path}: sha256 {sha[:12]}… differs from {recorded.name} ({want[:12]}…): "
                "the trial list changed after `prepare`"
            )
    if manifest is None:
        manifest = read_manifest(prepared / "manifest.csv")
    inputs = check_trial_inputs(path, trials, manifest)
    return TrialSet(split, path, sha, trial_table(trials, manifest), inputs)


def trial_table(trials: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Trials with, for each manifest column, the test side as `<col>` and the enrollment
    side as `enroll_<col>` (`speaker`, `duration`, metadata columns)."""
    meta = manifest.drop_duplicates("utt_id").set_index("utt_id")
    missing = (set(trials["enroll"]) | set(trials["test"])) - set(meta.index)
    if missing:
        raise ValueError(
            f"{len(missing)} trial utterances are not in the manifest, e.g. {sorted(missing)[:3]}"
        )
    cols = [c for c in meta.columns if c not in ("path", "split", "sample_rate")]
    out = trials[["enroll", "test", "label"]].reset_index(drop=True).copy()
    test_side = meta.loc[out["test"], cols].reset_index(drop=True)
    enroll_side = meta.loc[out["enroll"], cols].reset_index(drop=True)
    for c in cols:
        out[c] = test_side[c].to_numpy()
        out[f"enroll_{c}"] = enroll_side[c].to_numpy()
    return out


def validate_trials(
    scores: ArrayLike, labels: ArrayLike, *, name: str = "scores"
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Check a trial list and return ``(scores as float64, labels as bool)``.

    Raises ``ValueError`` for: non-1-D input, empty input, mismatched lengths, NaN scores,
    labels other than 0/1/True/False, and a list with no target or no non-target trial.
    """
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc
    lab = np.asarray(labels)
    if s.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {s.shape}")
    if lab.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {lab.shape}")
    if s.size == 0:
        raise ValueError(f"{name} is empty: a trial list needs at least one trial")
    if s.shape != lab.shape:
        raise ValueError(f"{name} and labels have different lengths ({s.size} vs {lab.size})")
    nan = np.isnan(s)
    if nan.any():
        raise ValueError(
            f"{name} contains {int(nan.sum())} NaN value(s) (first at index "
            f"{int(np.flatnonzero(nan)[0])})"
        )
    if lab.dtype == np.bool_:
        y = lab
    else:
        try:
            lf = lab.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"labels must be 0/1 or bool: {exc}") from exc
        bad = ~((lf == 0.0) | (lf == 1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"labels must be 0/1 or bool, got {lab[i]!r} at index {i}")
        y = lf == 1.0
    n_tar = int(y.sum())
    if n_tar == 0:
        raise ValueError(f"trial list has no target trials (all {y.size} labels are 0)")
    if n_tar == y.size:
        raise ValueError(f"trial list has no non-target trials (all {y.size} labels are 1)")
    return s, y
