"""Speaker-verification metrics: the ONE place their definitions live.

Conventions (every function):

* ``scores`` / ``llrs``: 1-D float arrays, higher = more likely the same speaker.
  ``llrs`` are natural-log likelihood ratios (calibrated scores).
* ``labels``: 1-D bool/int array, 1 (True) = target trial (same speaker), 0 = non-target.
* Decision rule everywhere: **accept if score >= threshold**.
* FMR (false-match rate, P_fa) = #{non-targets with s >= t} / N_non;
  FNMR (false-non-match rate, P_miss) = #{targets with s < t} / N_tar.
* Bad input (empty, mismatched lengths, NaN scores, labels other than 0/1, no targets or no
  non-targets) raises ``ValueError`` naming the argument and the problem
  (:func:`speakerops.eval.trials.validate_trials`). ``±inf`` scores are
  allowed (e.g. LLRs of a perfectly separated PAV fit).

Choices (documented here once, tested against brute force in ``tests/test_metrics.py``):

* **EER is the ROCCH-EER** (BOSARIS ``rocch2eer``): the error rate where the convex hull of the
  (FMR, FNMR) points crosses FMR = FNMR. Equivalently (LP duality) the smallest
  ``max(FMR, FNMR)`` reachable by mixing two thresholds. It is exact, invariant to how tied
  scores are ordered, and never above the "closest threshold" EER.
* Tied scores are always pooled: a threshold can never split trials with equal scores.

Everything is vectorized and O(n log n) (one sort; PAV is scipy's linear-time C++ routine).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import isotonic_regression

# the operating point and its Bayes threshold are defined once, in the base layer (the policy
# file states the operating point); re-exported here with the metrics that use them
from speakerops.core.policy import bayes_threshold
from speakerops.core.policy import check_prior as _check_prior
from speakerops.eval.trials import validate_trials

__all__ = [
    "act_dcf",
    "bayes_threshold",
    "calibration_loss",
    "cllr",
    "det_curve",
    "eer",
    "eer_threshold",
    "min_cllr",
    "min_dcf",
    "pav",
    "pav_llrs",
    "rocch",
    "verification_metrics",
]

_LN2 = math.log(2.0)


# --------------------------------------------------------------------------- tie groups


@dataclass(frozen=True)
class _Groups:
    """Trials sorted by score with equal scores pooled into groups.

    ``values[k]`` is the k-th distinct score (ascending); ``n_tar[k]``/``n_non[k]`` its counts;
    ``tar_below[k]``/``non_below[k]``: counts of trials with score < values[k]
    (length K + 1, the last entry = totals). ``order``/``sizes`` map groups back to trials.
    """

    values: NDArray[np.float64]
    n_tar: NDArray[np.int64]
    n_non: NDArray[np.int64]
    tar_below: NDArray[np.int64]
    non_below: NDArray[np.int64]
    order: NDArray[np.intp]
    sizes: NDArray[np.int64]

    @property
    def n_target(self) -> int:
        return int(self.tar_below[-1])

    @property
    def n_nontarget(self) -> int:
        return int(self.non_below[-1])


def _groups(s: NDArray[np.float64], y: NDArray[np.bool_]) -> _Groups:
    order = np.argsort(s)  # tie order is irrelevant: equal scores are pooled
    ss = s[order]
    yy = y[order]
    n = ss.size
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(ss[1:], ss[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    tar_cum = np.concatenate(([0], np.cumsum(yy, dtype=np.int64)))
    bounds = np.append(starts, n)
    tar_below = tar_cum[bounds]
    non_below = bounds - tar_below
    sizes = np.diff(bounds)
    n_tar = np.diff(tar_below)
    return _Groups(
        values=ss[starts],
        n_tar=n_tar,
        n_non=sizes - n_tar,
        tar_below=tar_below,
        non_below=non_below,
        order=order,
        sizes=sizes,
    )


def _det_from_groups(g: _Groups) -> tuple[NDArray, NDArray, NDArray]:
    nt, nn = g.n_target, g.n_nontarget
    fnmr = g.tar_below / nt
    fmr = (nn - g.non_below) / nn
    thresholds = np.append(g.values, np.inf)
    return fmr, fnmr, thresholds


# --------------------------------------------------------------------------- DET / EER


def det_curve(
    scores: ArrayLike, labels: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Exact DET/ROC operating points ``(fmr, fnmr, thresholds)``, thresholds ascending.

    For every distinct score t (ties pooled: a threshold never splits equal scores) plus
    t = +inf ("reject everything"):

        FMR(t)  = #{non-targets: s >= t} / N_non
        FNMR(t) = #{targets:     s <  t} / N_tar

    ``fmr`` is non-increasing, ``fnmr`` non-decreasing; the first point is (1, 0), the
    last (0, 1). Length = number of distinct scores + 1.
    """
    s, y = validate_trials(scores, labels)
    return _det_from_groups(_groups(s, y))


def _pav_groups(g: _Groups):
    """PAV on the pooled tie groups: weighted isotonic regression of the target fraction."""
    w = g.sizes.astype(np.float64)
    return isotonic_regression(g.n_tar / w, weights=w, increasing=True)


def _rocch_from_groups(g: _Groups) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    res = _pav_groups(g)
    # PAV block j covers groups blocks[j]:blocks[j+1]; hull vertices sit at block boundaries.
    b = np.asarray(res.blocks)
    pmiss = g.tar_below[b] / g.n_target
    pfa = (g.n_nontarget - g.non_below[b]) / g.n_nontarget
    return pfa, pmiss


def rocch(scores: ArrayLike, labels: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Vertices ``(fmr, fnmr)`` of the ROC convex hull (BOSARIS ``rocch``), FMR descending.

    Obtained from PAV: the boundaries of the pool-adjacent-violators blocks of the labels
    sorted by score are exactly the vertices of the lower-left convex hull of the DET points.
    First vertex (1, 0), last (0, 1).
    """
    s, y = validate_trials(scores, labels)
    return _rocch_from_groups(_groups(s, y))


def _rocch_eer(pfa: NDArray, pmiss: NDArray) -> float:
    # BOSARIS rocch2eer: for each hull edge (x1,y1)-(x2,y2) the line through it meets the
    # diagonal at e = (x1*y2 - x2*y1) / ((x1 - x2) + (y2 - y1)); the hull lies above every
    # edge line, so EER = max over edges (horizontal / vertical edges contribute 0).
    x1, x2 = pfa[:-1], pfa[1:]
    y1, y2 = pmiss[:-1], pmiss[1:]
    dx = x1 - x2
    dy = y2 - y1
    ok = (dx != 0) & (dy != 0)
    if not ok.any():
        return 0.0
    e = (x1[ok] * y2[ok] - x2[ok] * y1[ok]) / (dx[ok] + dy[ok])
    return float(max(0.0, e.max()))


def eer(scores: ArrayLike, labels: ArrayLike) -> float:
    """Equal error rate, ROCCH-EER (as BOSARIS).

    EER = the value e where the convex hull of the DET points {(FMR(t), FNMR(t))} crosses
    FMR = FNMR; equivalently ``EER = min over λ∈[0,1], thresholds t1, t2 of
    max(λ·FMR(t1) + (1−λ)·FMR(t2), λ·FNMR(t1) + (1−λ)·FNMR(t2))``.
    0 for perfect separation, 0.5 for constant or fully reversed scores.
    """
    s, y = validate_trials(scores, labels)
    return _rocch_eer(*_rocch_from_groups(_groups(s, y)))


def _closest_threshold(fmr: NDArray, fnmr: NDArray, thr: NDArray) -> float:
    gap = np.abs(fmr - fnmr)
    k = np.lexsort((np.maximum(fmr, fnmr), gap))[0]
    return float(thr[k])


def eer_threshold(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """``(eer, threshold)``: the ROCCH-EER (see :func:`eer`) and a usable score threshold.

    The ROCCH-EER point may mix two thresholds; the threshold returned is the single DET
    threshold t (accept if s >= t) where the empirical rates are closest to equal:
    argmin_t |FMR(t) − FNMR(t)|, ties broken by the smaller max(FMR, FNMR), then the lower t.
    """
    s, y = validate_trials(scores, labels)
    g = _groups(s, y)
    fmr, fnmr, thr = _det_from_groups(g)
    return _rocch_eer(*_rocch_from_groups(g)), _closest_threshold(fmr, fnmr, thr)


# --------------------------------------------------------------------------- DCF


def _dcf_norm(p: float, c_miss: float, c_fa: float) -> float:
    return min(c_miss * p, c_fa * (1.0 - p))


def _min_dcf_det(fmr: NDArray, fnmr: NDArray, p: float, c_miss: float, c_fa: float) -> float:
    dcf = (c_miss * p * fnmr + c_fa * (1.0 - p) * fmr) / _dcf_norm(p, c_miss, c_fa)
    return float(dcf.min())


def min_dcf(
    scores: ArrayLike,
    labels: ArrayLike,
    p_target: float,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> float:
    """Minimum normalized detection cost over all thresholds (incl. accept/reject all).

        minDCF = min_t [C_miss·P·FNMR(t) + C_fa·(1−P)·FMR(t)] / min(C_miss·P, C_fa·(1−P))

    ≤ 1 always (1 = the best trivial system that accepts or rejects everything).
    """
    _check_prior(p_target, c_miss, c_fa)
    s, y = validate_trials(scores, labels)
    fmr, fnmr, _ = _det_from_groups(_groups(s, y))
    return _min_dcf_det(fmr, fnmr, float(p_target), float(c_miss), float(c_fa))


def act_dcf(
    llrs: ArrayLike,
    labels: ArrayLike,
    p_target: float,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> float:
    """Actual normalized detection cost of Bayes decisions on LLRs.

    Accept iff llr >= θ, θ = log(C_fa·(1−P) / (C_miss·P)); then

        actDCF = [C_miss·P·FNMR(θ) + C_fa·(1−P)·FMR(θ)] / min(C_miss·P, C_fa·(1−P))

    actDCF ≥ minDCF; the gap measures mis-calibration at this operating point.
    """
    theta = bayes_threshold(p_target, c_miss, c_fa)
    s, y = validate_trials(llrs, labels, name="llrs")
    p = float(p_target)
    fnmr = np.count_nonzero(s[y] < theta) / np.count_nonzero(y)
    fmr = np.count_nonzero(s[~y] >= theta) / np.count_nonzero(~y)
    return float((c_miss * p * fnmr + c_fa * (1.0 - p) * fmr) / _dcf_norm(p, c_miss, c_fa))


# --------------------------------------------------------------------------- Cllr / PAV


def _cllr(s: NDArray, y: NDArray) -> float:
    c_tar = np.logaddexp(0.0, -s[y]).mean()
    c_non = np.logaddexp(0.0, s[~y]).mean()
    return float((c_tar + c_non) / (2.0 * _LN2))


def cllr(llrs: ArrayLike, labels: ArrayLike) -> float:
    """Log-likelihood-ratio cost (bits), natural-log LLRs s:

        Cllr = 1/(2 ln 2) · [ mean_tar log(1 + e^(−s)) + mean_non log(1 + e^(s)) ]

    computed stably with ``np.logaddexp``. 1 for the uninformative LLR 0; 0 only for
    perfect, infinitely confident LLRs.
    """
    s, y = validate_trials(llrs, labels, name="llrs")
    return _cllr(s, y)


def pav(scores: ArrayLike, labels: ArrayLike) -> NDArray[np.float64]:
    """Pool-adjacent-violators fit: posteriors P(target | score), aligned with the input.

    The non-decreasing function f of the score minimizing Σ_i (f(s_i) − y_i)² (isotonic
    regression of the labels on the scores); equal scores are pooled first (they always get
    the same posterior). Values are block means of the labels, so they can be exactly 0 or 1.
    """
    s, y = validate_trials(scores, labels)
    g = _groups(s, y)
    return _pav_to_trials(g, _pav_groups(g).x)


def _pav_to_trials(g: _Groups, per_group: NDArray) -> NDArray[np.float64]:
    out = np.empty(g.order.size, dtype=np.float64)
    out[g.order] = np.repeat(per_group, g.sizes)
    return out


def _posterior_to_llr(p: NDArray, n_tar: int, n_non: int) -> NDArray[np.float64]:
    # logit(p) − log(N_tar/N_non); p == 0 / 1 map to −inf / +inf exactly (such trials
    # contribute exactly 0 to Cllr: a block at 0 holds only non-targets, at 1 only targets).
    log_prior_odds = math.log(n_tar / n_non)
    with np.errstate(divide="ignore"):
        llr = np.log(p) - np.log1p(-p) - log_prior_odds
    llr[p <= 0.0] = -np.inf
    llr[p >= 1.0] = np.inf
    return llr


def pav_llrs(scores: ArrayLike, labels: ArrayLike) -> NDArray[np.float64]:
    """Optimal monotone LLRs (BOSARIS ``optimal_llr`` without Laplace smoothing).

        llr_i = logit(PAV posterior_i) − log(N_tar / N_non)

    Posteriors of exactly 0 / 1 give −inf / +inf (handled exactly by :func:`cllr`).
    """
    s, y = validate_trials(scores, labels)
    g = _groups(s, y)
    p = _pav_to_trials(g, _pav_groups(g).x)
    return _posterior_to_llr(p, g.n_target, g.n_nontarget)


def _min_cllr_groups(g: _Groups) -> float:
    # Cllr of the PAV LLRs computed per tie group (all trials of a group share the LLR).
    p = _pav_groups(g).x
    llr = _posterior_to_llr(p, g.n_target, g.n_nontarget)
    with np.errstate(invalid="ignore"):
        c_tar = np.where(g.n_tar > 0, g.n_tar * np.logaddexp(0.0, -llr), 0.0).sum()
        c_non = np.where(g.n_non > 0, g.n_non * np.logaddexp(0.0, llr), 0.0).sum()
    return float((c_tar / g.n_target + c_non / g.n_nontarget) / (2.0 * _LN2))


def min_cllr(scores: ArrayLike, labels: ArrayLike) -> float:
    """Minimum Cllr: Cllr of the optimal monotone calibration of the scores (PAV).

        minCllr = Cllr(pav_llrs(scores, labels))

    Depends only on the order of the scores; 1 for constant or fully reversed scores,
    0 for perfect separation.
    """
    s, y = validate_trials(scores, labels)
    return _min_cllr_groups(_groups(s, y))


def calibration_loss(llrs: ArrayLike, labels: ArrayLike) -> float:
    """Calibration loss: Cllr − minCllr (≥ 0; the part of Cllr a monotone map would remove)."""
    s, y = validate_trials(llrs, labels, name="llrs")
    return _cllr(s, y) - _min_cllr_groups(_groups(s, y))


# --------------------------------------------------------------------------- summary


def _p_key(p: float) -> str:
    return f"{p:g}"


def verification_metrics(
    scores: ArrayLike,
    labels: ArrayLike,
    llrs: ArrayLike | None = None,
    p_targets: Sequence[float] = (0.01, 0.05),
) -> dict[str, float]:
    """All headline metrics in one pass (one sort of the scores, one of the LLRs).

    Keys: ``eer``, ``min_dcf_<P>`` for each P in ``p_targets`` (e.g. ``min_dcf_0.01``), and
    when ``llrs`` is given: ``act_dcf_<P>``, ``cllr``, ``min_cllr``, ``cal_loss``
    (= cllr − min_cllr). ``min_cllr`` is computed on the LLRs (equal to that of the scores
    when the calibration is monotone increasing). C_miss = C_fa = 1. Definitions: see
    :func:`eer`, :func:`min_dcf`, :func:`act_dcf`, :func:`cllr`, :func:`min_cllr`.
    """
    s, y = validate_trials(scores, labels)
    for p in p_targets:
        _check_prior(p, 1.0, 1.0)
    g = _groups(s, y)
    fmr, fnmr, _ = _det_from_groups(g)
    out: dict[str, float] = {"eer": _rocch_eer(*_rocch_from_groups(g))}
    for p in p_targets:
        out[f"min_dcf_{_p_key(p)}"] = _min_dcf_det(fmr, fnmr, float(p), 1.0, 1.0)
    if llrs is not None:
        l_arr, _ = validate_trials(llrs, y, name="llrs")
        for p in p_targets:
            out[f"act_dcf_{_p_key(p)}"] = act_dcf(l_arr, y, p)
        c = _cllr(l_arr, y)
        mc = _min_cllr_groups(_groups(l_arr, y))
        out["cllr"] = c
        out["min_cllr"] = mc
        out["cal_loss"] = c - mc
    return out
