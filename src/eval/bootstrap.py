"""Confidence intervals by bootstrapping SPEAKERS, not trials.

Trials of one enrollment speaker are correlated (same voice, same enrollment audio), so
resampling trials independently gives intervals that are far too narrow. Here each bootstrap
replicate draws S enrollment speakers with replacement out of the S present; a drawn speaker
brings ALL its trials (targets and non-targets), once per time it was drawn.

* A replicate that lacks target or non-target trials is **redrawn** (so exactly ``n_boot``
  valid replicates are used; at most ``max_redraws`` redraws in total, then ``ValueError``).
* Intervals are percentile intervals: [q((1−c)/2), q((1+c)/2)] of the replicate values
  (numpy's default linear quantile). The point estimate is the metric on the full data; a
  percentile interval usually, but not provably, contains it.
* Deterministic for a given ``seed`` (``numpy.random.default_rng``).

Metric functions: ``fn(scores, labels, **extra) -> float`` where ``extra`` holds the
replicate's slices of the optional per-trial arrays given as ``extra`` (e.g. ``llrs``), all
indexed by the same resample::

    speaker_bootstrap(scores, labels, spk, {
        "eer": lambda s, y, **_: eer(s, y),
        "cllr": lambda s, y, llrs: cllr(llrs, y),
    }, extra={"llrs": llrs})

:func:`verification_metric_fns` builds these for the standard metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import metrics as _m
from .trials import validate_trials

__all__ = [
    "Interval",
    "paired_bootstrap",
    "percentile_interval",
    "speaker_bootstrap",
    "speaker_resamples",
    "verification_metric_fns",
]

MetricFn = Callable[..., float]


class Interval(NamedTuple):
    """A bootstrap result: point estimate on the full data and percentile interval."""

    point: float
    low: float
    high: float


def verification_metric_fns(
    p_targets: Sequence[float] = (0.01, 0.05), with_llrs: bool = False
) -> dict[str, MetricFn]:
    """Metric functions for :func:`speaker_bootstrap`, named as in
    :func:`speakerops.eval.metrics.verification_metrics`. With ``with_llrs`` the functions
    for actDCF, Cllr, minCllr and calibration loss expect ``extra={"llrs": llrs}``."""
    fns: dict[str, MetricFn] = {"eer": lambda s, y, **_: _m.eer(s, y)}
    for p in p_targets:
        fns[f"min_dcf_{p:g}"] = lambda s, y, _p=p, **_: _m.min_dcf(s, y, _p)
    if with_llrs:
        for p in p_targets:
            fns[f"act_dcf_{p:g}"] = lambda s, y, llrs, _p=p, **_: _m.act_dcf(llrs, y, _p)
        fns["cllr"] = lambda s, y, llrs, **_: _m.cllr(llrs, y)
        fns["min_cllr"] = lambda s, y, llrs, **_: _m.min_cllr(llrs, y)
        fns["cal_loss"] = lambda s, y, llrs, **_: _m.calibration_loss(llrs, y)
    return fns


def speaker_resamples(
    labels: ArrayLike,
    speakers: ArrayLike,
    n_boot: int,
    seed: int,
    max_redraws: int | None = None,
) -> Iterator[NDArray[np.intp]]:
    """The ``n_boot`` speaker resamples: each the trial indices (with multiplicity) of S
    enrollment speakers drawn with replacement out of the S present, redrawn while it lacks
    target or non-target trials (at most ``max_redraws`` redraws in total, default
    ``10·n_boot``, then ``ValueError``). Arguments are checked before the first draw."""
    y = np.asarray(labels).astype(bool)
    n = y.size
    spk = np.asarray(speakers)
    if spk.ndim != 1 or spk.size != n:
        raise ValueError(f"speakers must be 1-D with one entry per trial ({n}), got {spk.shape}")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    n_boot = int(n_boot)
    max_redraws = 10 * n_boot if max_redraws is None else int(max_redraws)
    # Per-speaker index ranges in speaker-sorted trial order.
    try:
        _, codes = np.unique(spk, return_inverse=True)
    except TypeError as exc:
        raise ValueError(f"speakers must be sortable labels (e.g. str or int): {exc}") from exc
    codes = codes.ravel()
    n_spk = int(codes.max()) + 1
    if n_spk < 2:
        raise ValueError("speaker bootstrap needs at least 2 enrollment speakers, got 1")
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=n_spk)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    tar_counts = np.bincount(codes, weights=y, minlength=n_spk).astype(np.int64)

    def draws() -> Iterator[NDArray[np.intp]]:
        rng = np.random.default_rng(seed)
        redraws = 0
        b = 0
        while b < n_boot:
            draw = rng.integers(0, n_spk, n_spk)
            lens = counts[draw]
            total = int(lens.sum())
            n_tar = int(tar_counts[draw].sum())
            if n_tar == 0 or n_tar == total:
                redraws += 1
                if redraws > max_redraws:
                    raise ValueError(
                        f"{redraws} speaker resamples lacked target or non-target trials "
                        f"(max_redraws={max_redraws}): too few speakers with both kinds of trials"
                    )
                continue
            # indices of all trials of the drawn speakers, with multiplicity
            offs = np.cumsum(lens) - lens
            pos = np.repeat(starts[draw] - offs, lens) + np.arange(total)
            yield order[pos]
            b += 1

    return draws()


def percentile_interval(values: Sequence[float], confidence: float) -> dict[str, float]:
    """``{value, low, high, n_replicates}`` of ``[point, replicate 1, …]``: the point (first
    entry) and the percentile interval of the replicates that are not NaN (NaN bounds and
    ``n_replicates`` 0 when none is)."""
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    v = np.asarray(values, dtype=np.float64)
    point, reps = float(v[0]), v[1:]
    finite = reps[~np.isnan(reps)]
    alpha = 1.0 - float(confidence)
    if finite.size == 0:
        return {"value": point, "low": math.nan, "high": math.nan, "n_replicates": 0}
    with np.errstate(invalid="ignore"):
        lo, hi = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return {"value": point, "low": float(lo), "high": float(hi), "n_replicates": int(finite.size)}


def speaker_bootstrap(
    scores: ArrayLike,
    labels: ArrayLike,
    speakers: ArrayLike,
    metric_fns: Mapping[str, MetricFn],
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    *,
    extra: Mapping[str, ArrayLike] | None = None,
    max_redraws: int | None = None,
) -> dict[str, Interval]:
    """Speaker-level bootstrap: ``{name: Interval(point, low, high)}`` for each metric.

    ``speakers``: the enrollment speaker of each trial (any hashable labels). ``extra``:
    optional per-trial arrays passed to every metric as keyword arguments, sliced with the
    same resample (:func:`speaker_resamples`; ``max_redraws`` bounds its redraws).
    """
    s, y = validate_trials(scores, labels)
    n = s.size
    spk = np.asarray(speakers)
    if spk.ndim != 1 or spk.size != n:
        raise ValueError(f"speakers must be 1-D with one entry per trial ({n}), got {spk.shape}")
    if not metric_fns:
        raise ValueError("metric_fns is empty: nothing to bootstrap")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    arrays: dict[str, NDArray] = {}
    for k, v in (extra or {}).items():
        a = np.asarray(v)
        if a.shape[:1] != (n,):
            raise ValueError(f"extra array {k!r} has shape {a.shape}, expected {n} per-trial rows")
        arrays[k] = a
    resamples = speaker_resamples(y, spk, n_boot, seed, max_redraws)

    def call(fn: MetricFn, idx: NDArray | None) -> float:
        if idx is None:
            return float(fn(s, y, **arrays))
        return float(fn(s[idx], y[idx], **{k: a[idx] for k, a in arrays.items()}))

    names = list(metric_fns)
    points = {name: call(metric_fns[name], None) for name in names}
    values = np.empty((int(n_boot), len(names)))
    for b, idx in enumerate(resamples):
        for j, name in enumerate(names):
            values[b, j] = call(metric_fns[name], idx)

    alpha = 1.0 - float(confidence)
    lo, hi = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    return {
        name: Interval(points[name], float(lo[j]), float(hi[j])) for j, name in enumerate(names)
    }


def paired_bootstrap(
    first: ArrayLike,
    second: ArrayLike,
    labels: ArrayLike,
    speakers: ArrayLike,
    metric_fns: Mapping[str, MetricFn | tuple[MetricFn, MetricFn]],
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    *,
    extra: Mapping[str, ArrayLike] | None = None,
) -> dict[str, dict[str, float]]:
    """Paired speaker bootstrap of ``metric(first) − metric(second)`` for two systems' scores
    of the same trials: each replicate applies the SAME speaker resample
    (:func:`speaker_resamples`) to both, so the interval of the difference is the paired one
    the speaker gates use (:func:`speakerops.eval.assess.assess`); ``{name:
    percentile_interval(...)}`` (``value`` is the difference on the full data). A metric given
    as a pair of functions applies the first to ``first`` and the second to ``second`` (a
    figure whose settings depend on the system, e.g. its own ASV operating point)."""
    a, y = validate_trials(first, labels)
    b, _ = validate_trials(second, labels)
    arrays = {k: np.asarray(v) for k, v in (extra or {}).items()}
    everything = np.arange(a.size)
    rows = [everything, *speaker_resamples(y, speakers, n_boot, seed)]

    def diff(fn, idx: NDArray) -> float:
        f1, f2 = fn if isinstance(fn, tuple) else (fn, fn)
        kw = {k: v[idx] for k, v in arrays.items()}
        return float(f1(a[idx], y[idx], **kw)) - float(f2(b[idx], y[idx], **kw))

    return {
        name: percentile_interval([diff(fn, idx) for idx in rows], confidence)
        for name, fn in metric_fns.items()
    }
