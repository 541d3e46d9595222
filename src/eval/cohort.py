"""The AS-norm cohort (:mod:`speakerops.eval.scoring`): per-speaker unit-norm mean embeddings of
a seeded subset of speakers, built once (:func:`build_cohort`) for evaluation, packaging and the
drift checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from speakerops.eval.scoring import l2_normalize

__all__ = ["build_cohort", "select_cohort_speakers", "speaker_means"]


def speaker_means(embeddings: np.ndarray, speakers: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Cohort entries: the unit-norm mean of each speaker's unit-norm embeddings, speakers
    sorted by name. Returns (cohort [C, D] float32, speaker names)."""
    x = l2_normalize(np.asarray(embeddings))
    spk = np.asarray(speakers, dtype=object)
    if x.ndim != 2 or spk.shape != (x.shape[0],):
        raise ValueError(
            f"speaker_means: need [N, D] embeddings and N speaker labels, got {x.shape} and {spk.shape}"
        )
    names = sorted(set(spk.tolist()))
    codes = pd.Series(spk).map({s: i for i, s in enumerate(names)}).to_numpy(np.int64)
    order = np.argsort(codes, kind="stable")  # each speaker's rows, in their input order
    rows = np.split(order, np.cumsum(np.bincount(codes, minlength=len(names)))[:-1])
    means = np.stack([x[r].mean(axis=0) for r in rows])
    return l2_normalize(means).astype(np.float32), [str(s) for s in names]


def select_cohort_speakers(
    speakers: Sequence[Any], max_speakers: int, rng: np.random.Generator
) -> list[Any]:
    """The distinct speaker labels (missing ones dropped), sorted; with more than
    ``max_speakers``, a subset of that many drawn with ``rng`` (positions in the sorted list,
    without replacement), kept sorted."""
    names = sorted(set(pd.Series(speakers, dtype=object).dropna().tolist()))
    if len(names) > int(max_speakers):
        keep = np.sort(rng.choice(len(names), int(max_speakers), replace=False))
        names = [names[i] for i in keep]
    return names


def build_cohort(
    embeddings: np.ndarray, speakers: Sequence[Any], max_cohort: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[str]]:
    """The one cohort builder: per-speaker unit-norm means (:func:`speaker_means`) of the
    speakers :func:`select_cohort_speakers` keeps. Rows without a speaker label are left
    out. Returns (cohort [C, D] float32, speaker names as str)."""
    x = np.asarray(embeddings)
    labels = pd.Series(speakers, dtype=object)
    if len(labels) != len(x):
        raise ValueError(f"build_cohort: {len(x)} embeddings but {len(labels)} speaker labels")
    keep = labels.isin(select_cohort_speakers(labels, max_cohort, rng)).to_numpy()
    return speaker_means(x[keep], labels[keep].tolist())
