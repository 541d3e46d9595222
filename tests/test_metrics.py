"""speakerops.eval.metrics against independent brute-force implementations and hand cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.isotonic import IsotonicRegression

from speakerops.eval import metrics as M

TOL = 1e-9


# --------------------------------------------------------------------------- brute force
# Deliberately naive: python loops over candidate thresholds and the textbook formulas.


def bf_det(s, y):
    s = [float(v) for v in s]
    y = [bool(v) for v in y]
    nt = sum(y)
    nn = len(y) - nt
    thr = sorted(set(s)) + [math.inf]
    fmr, fnmr = [], []
    for t in thr:
        fa = sum(1 for si, yi in zip(s, y, strict=True) if not yi and si >= t)
        miss = sum(1 for si, yi in zip(s, y, strict=True) if yi and si < t)
        fmr.append(fa / nn)
        fnmr.append(miss / nt)
    return np.array(fmr), np.array(fnmr), np.array(thr)


def bf_eer(s, y):
    """min over pairs of DET points (i, j) and λ∈[0,1] of max(mixed FMR, mixed FNMR).

    This is the LP definition of the ROC-convex-hull EER (a 2-constraint LP has a basic
    optimum mixing at most two points); no hull is built.
    """
    x, yy, _ = bf_det(s, y)
    xi, xj = x[:, None], x[None, :]
    yi, yj = yy[:, None], yy[None, :]
    best = np.minimum(np.maximum(xi, yi), np.maximum(xj, yj))  # λ = 1 or 0
    den = (xi - xj) - (yi - yj)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = (yj - xj) / den
        inside = (den != 0) & (lam >= 0) & (lam <= 1)
        cross = xj + lam * (xi - xj)
    best = np.where(inside, np.minimum(best, cross), best)
    return float(best.min())


def bf_min_dcf(s, y, p, cm=1.0, cf=1.0):
    fmr, fnmr, _ = bf_det(s, y)
    return min(
        (cm * p * b + cf * (1 - p) * a) / min(cm * p, cf * (1 - p))
        for a, b in zip(fmr, fnmr, strict=True)
    )


def bf_act_dcf(llr, y, p, cm=1.0, cf=1.0):
    theta = math.log(cf * (1 - p) / (cm * p))
    tar = [v for v, t in zip(llr, y, strict=True) if t]
    non = [v for v, t in zip(llr, y, strict=True) if not t]
    pmiss = sum(1 for v in tar if not v >= theta) / len(tar)
    pfa = sum(1 for v in non if v >= theta) / len(non)
    return (cm * p * pmiss + cf * (1 - p) * pfa) / min(cm * p, cf * (1 - p))


def bf_cllr(llr, y):
    tar = [math.log(1 + math.exp(-v)) for v, t in zip(llr, y, strict=True) if t]
    non = [math.log(1 + math.exp(v)) for v, t in zip(llr, y, strict=True) if not t]
    return (sum(tar) / len(tar) + sum(non) / len(non)) / (2 * math.log(2))


def bf_pav(s, y):
    """Isotonic regression by the min-max formula on pooled ties:
    f(u_i) = max_{j<=i} min_{k>=i} mean(labels of groups j..k)."""
    s = np.asarray(s, float)
    y = np.asarray(y, float)
    u = np.unique(s)
    w = np.array([np.sum(s == v) for v in u], float)
    t = np.array([np.sum(y[s == v]) for v in u], float)
    cw = np.concatenate(([0.0], np.cumsum(w)))
    ct = np.concatenate(([0.0], np.cumsum(t)))
    k_n = len(u)
    mean = np.full((k_n, k_n), np.nan)
    for j in range(k_n):
        for k in range(j, k_n):
            mean[j, k] = (ct[k + 1] - ct[j]) / (cw[k + 1] - cw[j])
    f = np.array([max(np.nanmin(mean[j, i:]) for j in range(i + 1)) for i in range(k_n)])
    return np.array([f[np.searchsorted(u, v)] for v in s])


def bf_min_cllr(s, y):
    """Cllr of PAV LLRs, written without infinities:
    e^{llr} = p/(1-p) · N_non/N_tar, so a target costs log(p·Nn + (1-p)·Nt) − log(p·Nn)
    and a non-target log(p·Nn + (1-p)·Nt) − log((1-p)·Nt)."""
    p = bf_pav(s, y)
    y = np.asarray(y, bool)
    nt, nn = y.sum(), (~y).sum()
    tar = [math.log(q * nn + (1 - q) * nt) - math.log(q * nn) for q in p[y]]
    non = [math.log(q * nn + (1 - q) * nt) - math.log((1 - q) * nt) for q in p[~y]]
    return (sum(tar) / nt + sum(non) / nn) / (2 * math.log(2))


# --------------------------------------------------------------------------- data


def _random(seed, n=300, tied=False, p_tar=0.3):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < p_tar
    y[:2] = [True, False]
    s = rng.normal(size=n) + 1.5 * y
    if tied:
        s = np.round(s, 1)
    return s, y.astype(int)


CASES = [(seed, tied) for seed in range(4) for tied in (False, True)]
IDS = [f"seed{seed}-{'tied' if tied else 'cont'}" for seed, tied in CASES]


# --------------------------------------------------------------------------- brute-force agreement


@pytest.mark.parametrize(("seed", "tied"), CASES, ids=IDS)
def test_det_curve_matches_brute_force(seed, tied):
    s, y = _random(seed, tied=tied)
    fmr, fnmr, thr = M.det_curve(s, y)
    bfmr, bfnmr, bthr = bf_det(s, y)
    np.testing.assert_array_equal(thr, bthr)
    np.testing.assert_allclose(fmr, bfmr, atol=TOL, rtol=0)
    np.testing.assert_allclose(fnmr, bfnmr, atol=TOL, rtol=0)
    if tied:
        assert len(thr) < len(s)  # ties really were grouped


@pytest.mark.parametrize(("seed", "tied"), CASES, ids=IDS)
def test_eer_matches_brute_force_lp(seed, tied):
    s, y = _random(seed, tied=tied)
    assert M.eer(s, y) == pytest.approx(bf_eer(s, y), abs=TOL)


@pytest.mark.parametrize(("seed", "tied"), CASES, ids=IDS)
def test_eer_threshold_is_closest_crossing(seed, tied):
    s, y = _random(seed, tied=tied)
    e, t = M.eer_threshold(s, y)
    assert e == pytest.approx(M.eer(s, y), abs=0)
    fmr, fnmr, thr = bf_det(s, y)
    gap = np.abs(fmr - fnmr)
    assert t in set(thr[gap == gap.min()])
    s_arr, y_arr = np.asarray(s), np.asarray(y, bool)
    fa = np.mean(s_arr[~y_arr] >= t)
    miss = np.mean(s_arr[y_arr] < t)
    # the hull EER lies no higher than the best single threshold, and between the two rates
    # of some threshold next to the crossing
    assert e <= max(fa, miss) + TOL
    assert e <= min(np.maximum(fmr, fnmr)) + TOL


@pytest.mark.parametrize(("seed", "tied"), CASES, ids=IDS)
@pytest.mark.parametrize(
    ("p", "cm", "cf"), [(0.01, 1, 1), (0.05, 1, 1), (0.5, 1, 1), (0.2, 3, 0.5)]
)
def test_min_dcf_matches_brute_force(seed, tied, p, cm, cf):
    s, y = _random(seed, tied=tied)
    got = M.min_dcf(s, y, p, c_miss=cm, c_fa=cf)
    assert got == pytest.approx(bf_min_dcf(s, y, p, cm, cf), abs=TOL)
    assert 0.0 <= got <= 1.0 + TOL


@pytest.mark.parametrize(("seed", "tied"), CASES, ids=IDS)
@pytest.mark.parametrize(
    ("p", "cm", "cf"), [(0.01, 1, 1), (0.05, 1, 1), (0.5, 1, 1), (0.2, 3, 0.5)]
)
def test_act_dcf_matches_brute_force(seed, tied, p, cm, cf):
    s, y = _random(seed, tied=tied)
    llr = 2.0 * s - 1.0
    if tied:  # put some LLRs exactly on the Bayes threshold (accept if llr >= θ)
        llr[:10] = math.log(cf * (1 - p) / (cm * p))
    got = M.act_dcf(llr, y, p, c_miss=cm, c_fa=cf)
    assert got == pytest.approx(bf_act_dcf(llr, y, p, cm, cf), abs=TOL)
    assert got >= M.min_dcf(llr, y, p, c_miss=cm, c_fa=cf) - TOL


@pytest.mark.parametrize(("seed", "tied"), CASES, ids=IDS)
def test_cllr_matches_brute_force(seed, tied):
    s, y = _random(seed, tied=tied)
    llr = 3.0 * s - 2.0
    assert M.cllr(llr, y) == pytest.approx(bf_cllr(llr, y), abs=TOL)


@pytest.mark.parametrize(("seed", "tied"), CASES, ids=IDS)
def test_pav_matches_sklearn_and_minmax_formula(seed, tied):
    s, y = _random(seed, n=150, tied=tied)
    got = M.pav(s, y)
    ref = IsotonicRegression(increasing=True).fit(s, y).predict(s)
    np.testing.assert_allclose(got, ref, atol=TOL, rtol=0)
    np.testing.assert_allclose(got, bf_pav(s, y), atol=TOL, rtol=0)
    # ties pooled: equal scores, equal posteriors
    for v in np.unique(s):
        assert np.ptp(got[s == v]) == 0.0


@pytest.mark.parametrize(("seed", "tied"), CASES, ids=IDS)
def test_min_cllr_matches_brute_force(seed, tied):
    s, y = _random(seed, n=150, tied=tied)
    mc = M.min_cllr(s, y)
    assert mc == pytest.approx(bf_min_cllr(s, y), abs=TOL)
    # PAV LLRs are the optimum among monotone maps: better than any affine calibration
    for a, b in [(1.0, 0.0), (2.0, -1.0), (0.5, 0.3)]:
        assert mc <= M.cllr(a * np.asarray(s) + b, y) + TOL
    assert M.cllr(M.pav_llrs(s, y), y) == pytest.approx(mc, abs=TOL)
    # invariant to strictly increasing transforms of the scores
    assert M.min_cllr(np.exp(np.asarray(s)), y) == pytest.approx(mc, abs=TOL)


def test_calibration_loss_is_cllr_minus_min_cllr():
    s, y = _random(7, n=500)
    llr = 4.0 * s + 1.0  # over-confident and shifted
    cl = M.calibration_loss(llr, y)
    assert cl == pytest.approx(bf_cllr(llr, y) - bf_min_cllr(llr, y), abs=TOL)
    assert cl > 0.1


# --------------------------------------------------------------------------- hand cases


def test_hand_computed_four_trials():
    # Sorted: 0.2 non, 0.4 tar, 0.6 non, 0.8 tar.
    # t=0.2: FMR 2/2, FNMR 0 | t=0.4: 1/2, 0 | t=0.6: 1/2, 1/2 | t=0.8: 0, 1/2 | inf: 0, 1.
    # Hull vertices (1,0),(.5,0),(0,.5),(0,1); the edge x + y = 0.5 crosses the diagonal at
    # 0.25 (the best single threshold only reaches max(FMR, FNMR) = 0.5).
    s = [0.8, 0.4, 0.6, 0.2]
    y = [1, 1, 0, 0]
    fmr, fnmr, thr = M.det_curve(s, y)
    np.testing.assert_array_equal(thr, [0.2, 0.4, 0.6, 0.8, np.inf])
    np.testing.assert_array_equal(fmr, [1, 0.5, 0.5, 0, 0])
    np.testing.assert_array_equal(fnmr, [0, 0, 0.5, 0.5, 1])
    assert M.eer(s, y) == pytest.approx(0.25, abs=TOL)
    pfa, pmiss = M.rocch(s, y)
    np.testing.assert_allclose(pfa, [1, 0.5, 0, 0])
    np.testing.assert_allclose(pmiss, [0, 0, 0.5, 1])
    # t=0.6 gives FMR = FNMR = 0.5: the closest-to-equal threshold
    assert M.eer_threshold(s, y) == (pytest.approx(0.25), 0.6)
    # P=0.5: DCF/0.5 = FMR + FNMR, min 0.5.  P=0.01: DCF/0.01 = FNMR + 99·FMR, min 0.5 (t=0.8)
    assert M.min_dcf(s, y, 0.5) == pytest.approx(0.5, abs=TOL)
    assert M.min_dcf(s, y, 0.01) == pytest.approx(0.5, abs=TOL)
    # PAV of labels 0,1,0,1 (by score): [0], [1,0] pooled to 0.5, [1] -> posteriors in input
    # order: 0.8→1, 0.4→.5, 0.6→.5, 0.2→0.  Prior odds 2/2 -> LLRs +inf, 0, 0, -inf.
    np.testing.assert_allclose(M.pav(s, y), [1, 0.5, 0.5, 0])
    np.testing.assert_array_equal(M.pav_llrs(s, y), [np.inf, 0, 0, -np.inf])
    # minCllr = 1/(2 ln2)·[mean_tar(0, ln2) + mean_non(0, ln2)] = 1/(2 ln2)·ln2 = 0.5
    assert M.min_cllr(s, y) == pytest.approx(0.5, abs=TOL)


def test_hand_computed_llr_costs():
    # llr 0 everywhere: Cllr = 1/(2 ln2)·(ln2 + ln2) = 1
    assert M.cllr([0.0, 0.0], [1, 0]) == pytest.approx(1.0, abs=TOL)
    # tar ln3, non -ln3: each costs ln(1 + 1/3) = ln(4/3) -> Cllr = log2(4/3)
    assert M.cllr([math.log(3), -math.log(3)], [1, 0]) == pytest.approx(math.log2(4 / 3), abs=TOL)
    # infinitely confident and right: 0; stable for huge values (no overflow)
    assert M.cllr([np.inf, -np.inf], [1, 0]) == 0.0
    assert M.cllr([-800.0, 0.0], [1, 0]) == pytest.approx((800 + math.log(2)) / (2 * math.log(2)))
    # actDCF, P=0.5 -> θ = 0. tar [1, -1] -> 1 miss of 2; non [-2, 0] -> 0 >= θ accepted:
    # DCF = (0.5·0.5 + 0.5·0.5)/0.5 = 1.
    llr, y = [1.0, -1.0, -2.0, 0.0], [1, 1, 0, 0]
    assert M.act_dcf(llr, y, 0.5) == pytest.approx(1.0, abs=TOL)
    # non at -1e-12 is rejected: DCF = 0.5·0.5/0.5 = 0.5
    assert M.act_dcf([1.0, -1.0, -2.0, -1e-12], y, 0.5) == pytest.approx(0.5, abs=TOL)
    # P=0.01 -> θ = ln 99 = 4.595: everything rejected -> DCF = 0.01·1/0.01 = 1
    assert M.act_dcf(llr, y, 0.01) == pytest.approx(1.0, abs=TOL)
    assert M.bayes_threshold(0.01) == pytest.approx(math.log(99))
    assert M.bayes_threshold(0.2, c_miss=3, c_fa=0.5) == pytest.approx(math.log(0.5 * 0.8 / 0.6))


def test_perfect_reversed_constant():
    tar = np.array([2.0, 3.0, 4.0])
    non = np.array([-1.0, 0.0, 1.0, 1.5])
    s = np.concatenate((tar, non))
    y = np.r_[np.ones(3), np.zeros(4)]
    # perfect separation
    assert M.eer(s, y) == 0.0
    assert M.eer_threshold(s, y) == (0.0, 2.0)
    assert M.min_dcf(s, y, 0.01) == 0.0
    assert M.min_cllr(s, y) == 0.0
    # fully reversed: hull is the chance diagonal
    assert M.eer(-s, y) == pytest.approx(0.5, abs=TOL)
    assert M.min_dcf(-s, y, 0.01) == pytest.approx(1.0, abs=TOL)
    assert M.min_dcf(-s, y, 0.5) == pytest.approx(1.0, abs=TOL)
    assert M.min_cllr(-s, y) == pytest.approx(1.0, abs=TOL)
    # constant scores
    c = np.full(7, 0.3)
    assert M.eer(c, y) == pytest.approx(0.5, abs=TOL)
    assert M.min_dcf(c, y, 0.05) == pytest.approx(1.0, abs=TOL)
    assert M.min_cllr(c, y) == pytest.approx(1.0, abs=TOL)
    np.testing.assert_allclose(M.pav(c, y), 3 / 7)
    np.testing.assert_allclose(M.pav_llrs(c, y), 0.0, atol=TOL)
    fmr, fnmr, thr = M.det_curve(c, y)
    np.testing.assert_array_equal(thr, [0.3, np.inf])
    np.testing.assert_array_equal(fmr, [1, 0])
    np.testing.assert_array_equal(fnmr, [0, 1])


def test_bool_and_int_labels_agree():
    s, y = _random(3)
    assert M.eer(s, y) == M.eer(s, y.astype(bool)) == M.eer(list(s), [float(v) for v in y])


# --------------------------------------------------------------------------- summary dict


def test_verification_metrics_keys_and_values():
    s, y = _random(11, n=400)
    llr = 1.7 * s - 1.2
    out = M.verification_metrics(s, y)
    assert set(out) == {"eer", "min_dcf_0.01", "min_dcf_0.05"}
    full = M.verification_metrics(s, y, llrs=llr)
    assert set(full) == {
        "eer",
        "min_dcf_0.01",
        "min_dcf_0.05",
        "act_dcf_0.01",
        "act_dcf_0.05",
        "cllr",
        "min_cllr",
        "cal_loss",
    }
    assert full["eer"] == M.eer(s, y)
    assert full["min_dcf_0.01"] == M.min_dcf(s, y, 0.01)
    assert full["min_dcf_0.05"] == M.min_dcf(s, y, 0.05)
    assert full["act_dcf_0.05"] == M.act_dcf(llr, y, 0.05)
    assert full["cllr"] == M.cllr(llr, y)
    assert full["min_cllr"] == pytest.approx(M.min_cllr(s, y), abs=TOL)
    assert full["cal_loss"] == pytest.approx(full["cllr"] - full["min_cllr"], abs=TOL)
    assert all(isinstance(v, float) for v in full.values())
    assert set(M.verification_metrics(s, y, p_targets=(0.001,))) == {"eer", "min_dcf_0.001"}
    with pytest.raises(ValueError, match="llrs and labels have different lengths"):
        M.verification_metrics(s, y, llrs=llr[:-1])


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        ([], [], "empty"),
        ([0.1, 0.2], [1, 0, 1], "different lengths"),
        ([0.1, np.nan, 0.3], [1, 0, 1], "NaN"),
        ([0.1, 0.2], [1, 1], "no non-target"),
        ([0.1, 0.2], [0, 0], "no target"),
        ([0.1, 0.2], [1, 2], "0/1 or bool"),
        ([[0.1, 0.2]], [[1, 0]], "1-D"),
        (["a", "b"], [1, 0], "numeric"),
    ],
)
def test_bad_input_raises(scores, labels, match):
    for fn in (M.eer, M.det_curve, M.min_cllr, M.pav, M.cllr):
        with pytest.raises(ValueError, match=match):
            fn(scores, labels)


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.5])
def test_bad_prior_raises(p):
    with pytest.raises(ValueError, match="p_target"):
        M.min_dcf([0.1, 0.2], [1, 0], p)
    with pytest.raises(ValueError, match="p_target"):
        M.act_dcf([0.1, 0.2], [1, 0], p)


# --------------------------------------------------------------------------- large n


def test_million_trials_match_the_binormal_theory():
    """1e6 trials of a binormal system, d' = 2 (targets N(2, 1), non-targets N(0, 1)).

    Theory: EER = Φ(-d'/2); the Bayes threshold for prior P is t = ln((1 - P)/P)/d' + d'/2 and
    minDCF = [P Φ(t - d') + (1 - P) Φ(-t)] / min(P, 1 - P). An O(n^2) path would take hours
    here; its speed is measured by bench/bench_metrics.py, not asserted."""
    rng = np.random.default_rng(0)
    n = 1_000_000
    y = rng.random(n) < 0.1
    s = rng.normal(size=n) + 2.0 * y
    e = M.eer(s, y)
    m = M.min_dcf(s, y, 0.01)
    # d' = 2: theoretical EER = Φ(-1) = 0.1587
    assert e == pytest.approx(0.1587, abs=0.003)
    assert e == pytest.approx(norm.cdf(-1.0), abs=0.003)
    assert 0.0 < m < 1.0
    # 1e5 targets, 9e5 non-targets: sampling sd of minDCF(0.01) ~ 0.0025 (~440 false alarms
    # x 99), of minDCF(0.1) ~ 0.002; the empirical minimum sits slightly below the theory
    for p, tol in ((0.01, 0.01), (0.1, 0.006), (0.5, 0.006)):
        t = math.log((1 - p) / p) / 2.0 + 1.0
        want = (p * norm.cdf(t - 2.0) + (1 - p) * norm.sf(t)) / min(p, 1 - p)
        assert M.min_dcf(s, y, p) == pytest.approx(want, abs=tol), (p, want)
