"""speakerops.eval.bootstrap: speaker-level resampling, determinism, interval behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from speakerops.eval import metrics as M
from speakerops.eval.bootstrap import (
    Interval,
    paired_bootstrap,
    speaker_bootstrap,
    speaker_resamples,
    verification_metric_fns,
)


def sim(n_spk, per=20, seed=0):
    """Per speaker: per/2 target + per/2 non-target trials; a speaker-level offset shifts
    all its scores (the correlation that makes trial-level bootstrapping too optimistic)."""
    rng = np.random.default_rng(seed)
    spk = np.repeat(np.arange(n_spk), per)
    y = np.tile(np.r_[np.ones(per // 2, bool), np.zeros(per // 2, bool)], n_spk)
    offset = rng.normal(0, 0.7, n_spk)[spk]
    s = rng.normal(0, 1, spk.size) + 2.5 * y + offset * y
    return s, y, spk


def eer_fn(s, y, **_):
    return M.eer(s, y)


def test_deterministic_for_seed_and_contains_point():
    s, y, spk = sim(60)
    fns = {"eer": eer_fn, "min_dcf_0.05": lambda s, y, **_: M.min_dcf(s, y, 0.05)}
    a = speaker_bootstrap(s, y, spk, fns, n_boot=200, seed=3)
    b = speaker_bootstrap(s, y, spk, fns, n_boot=200, seed=3)
    c = speaker_bootstrap(s, y, spk, fns, n_boot=200, seed=4)
    assert a == b
    assert a["eer"] != c["eer"]
    for name, iv in a.items():
        assert isinstance(iv, Interval)
        assert iv.low <= iv.point <= iv.high, name
        assert iv.low < iv.high
    assert a["eer"].point == M.eer(s, y)
    assert a["min_dcf_0.05"].point == M.min_dcf(s, y, 0.05)


def test_interval_narrows_with_more_speakers():
    width = {}
    for n_spk in (20, 200):
        s, y, spk = sim(n_spk, seed=1)
        iv = speaker_bootstrap(s, y, spk, {"eer": eer_fn}, n_boot=200, seed=0)["eer"]
        width[n_spk] = iv.high - iv.low
    # ~ 1/sqrt(#speakers): expect a ratio near sqrt(10) ≈ 3.2
    assert width[200] < 0.6 * width[20]


def test_confidence_level_orders_intervals():
    s, y, spk = sim(50, seed=2)
    w = {}
    for conf in (0.5, 0.95):
        iv = speaker_bootstrap(s, y, spk, {"eer": eer_fn}, n_boot=200, confidence=conf)["eer"]
        w[conf] = iv.high - iv.low
    assert w[0.5] < w[0.95]


def test_speakers_not_trials_are_resampled():
    # speaker k has 2k+3 trials whose score is exactly k (+0.5 for its targets), so in any
    # replicate the number of trials from speaker k must be a multiple of 2k+3.
    sizes = {k: 2 * k + 3 for k in range(8)}
    s = np.concatenate([np.full(m, float(k)) for k, m in sizes.items()])
    spk = np.concatenate([np.full(m, f"spk{k}") for k, m in sizes.items()])
    y = np.concatenate([np.r_[np.ones(2, bool), np.zeros(m - 2, bool)] for m in sizes.values()])
    s = s + 0.5 * y
    rng = np.random.default_rng(0)
    perm = rng.permutation(s.size)  # trial order must not matter
    s, y, spk = s[perm], y[perm], spk[perm]
    seen = []

    def record(sb, yb, **_):
        counts = {k: int(np.sum(np.floor(sb) == k)) for k in sizes}
        seen.append(counts)
        assert sb.size == sum(counts.values())
        return float(sb.size)

    out = speaker_bootstrap(s, y, spk, {"n": record}, n_boot=100, seed=1)
    assert len(seen) == 101  # point estimate + 100 replicates
    multiplicities = set()
    for counts in seen[1:]:
        for k, c in counts.items():
            assert c % sizes[k] == 0, (k, c)
            multiplicities.add(c // sizes[k])
        # S speakers drawn in total
        assert sum(c // sizes[k] for k, c in counts.items()) == len(sizes)
    assert {0, 1, 2} <= multiplicities  # speakers really were dropped and repeated
    assert out["n"].point == s.size


def test_extra_arrays_follow_the_same_resample():
    s, y, spk = sim(30, seed=5)
    llrs = 2.0 * s - 1.0
    utt = np.arange(s.size)

    def check(sb, yb, llrs, utt):
        np.testing.assert_array_equal(llrs, 2.0 * sb - 1.0)
        np.testing.assert_array_equal(yb, y[utt])
        return M.cllr(llrs, yb)

    out = speaker_bootstrap(s, y, spk, {"cllr": check}, n_boot=50, extra={"llrs": llrs, "utt": utt})
    assert out["cllr"].point == M.cllr(llrs, y)
    fns = verification_metric_fns(with_llrs=True)
    full = speaker_bootstrap(s, y, spk, fns, n_boot=30, extra={"llrs": llrs})
    ref = M.verification_metrics(s, y, llrs=llrs)
    assert set(full) == set(ref)
    for k, iv in full.items():
        assert iv.point == pytest.approx(ref[k], abs=1e-12)
    assert set(verification_metric_fns()) == {"eer", "min_dcf_0.01", "min_dcf_0.05"}


def test_resamples_lacking_a_class_are_redrawn():
    # spk a, c: only targets; spk b: only non-targets -> (2/3)^3 of draws lack non-targets
    s = np.array([2.0, 2.5, 0.0, 0.3, 1.8, 2.2])
    y = np.array([1, 1, 0, 0, 1, 1])
    spk = np.array(["a", "a", "b", "b", "c", "c"])
    calls = []

    def fn(sb, yb, **_):
        assert 0 < yb.sum() < yb.size
        calls.append(1)
        return M.eer(sb, yb)

    out = speaker_bootstrap(s, y, spk, {"eer": fn}, n_boot=100, seed=0)
    assert len(calls) == 101 and out["eer"].point == 0.0
    with pytest.raises(ValueError, match="lacked target or non-target"):
        speaker_bootstrap(s, y, spk, {"eer": fn}, n_boot=100, seed=0, max_redraws=0)


def test_bad_arguments():
    s, y, spk = sim(5)
    with pytest.raises(ValueError, match="one entry per trial"):
        speaker_bootstrap(s, y, spk[:-1], {"eer": eer_fn})
    with pytest.raises(ValueError, match="at least 2"):
        speaker_bootstrap(s, y, np.zeros(s.size), {"eer": eer_fn})
    with pytest.raises(ValueError, match="n_boot"):
        speaker_bootstrap(s, y, spk, {"eer": eer_fn}, n_boot=0)
    with pytest.raises(ValueError, match="confidence"):
        speaker_bootstrap(s, y, spk, {"eer": eer_fn}, confidence=1.0)
    with pytest.raises(ValueError, match="empty"):
        speaker_bootstrap(s, y, spk, {})
    with pytest.raises(ValueError, match="extra array 'llrs'"):
        speaker_bootstrap(s, y, spk, {"eer": eer_fn}, extra={"llrs": s[:3]})
    with pytest.raises(ValueError, match="NaN"):
        speaker_bootstrap(np.r_[np.nan, s[1:]], y, spk, {"eer": eer_fn})


def test_speaker_intervals_wider_than_trial_intervals_under_correlation():
    # with a per-speaker offset, treating trials as independent understates the uncertainty
    s, y, spk = sim(100, seed=1)
    by_spk = speaker_bootstrap(s, y, spk, {"eer": eer_fn}, n_boot=300)["eer"]
    by_trial = speaker_bootstrap(s, y, np.arange(s.size), {"eer": eer_fn}, n_boot=300)["eer"]
    assert by_spk.high - by_spk.low > 1.2 * (by_trial.high - by_trial.low)


def test_paired_bootstrap_uses_the_same_speakers_for_both_systems():
    rng = np.random.default_rng(3)
    spk = np.repeat(np.arange(12), 20)
    y = np.tile(np.r_[np.ones(5), np.zeros(15)], 12).astype(bool)
    a = rng.normal(size=y.size) + 2.0 * y
    b = a + rng.normal(scale=0.3, size=y.size)  # a noisier copy of the same system
    fns = {"eer": lambda s, y: M.eer(s, y)}
    d = paired_bootstrap(a, b, y, spk, fns, n_boot=80, seed=5)["eer"]
    assert d["value"] == pytest.approx(M.eer(a, y) - M.eer(b, y)) and d["n_replicates"] == 80
    # each replicate is eer(a[rows]) − eer(b[rows]) on ONE resample (brute force)
    reps = [M.eer(a[r], y[r]) - M.eer(b[r], y[r]) for r in speaker_resamples(y, spk, 80, 5)]
    lo, hi = np.quantile(reps, [0.025, 0.975])
    assert (d["low"], d["high"]) == pytest.approx((lo, hi))
    # identical systems: every paired replicate is exactly 0 (unpaired intervals would not be)
    same = paired_bootstrap(a, a.copy(), y, spk, fns, n_boot=40, seed=1)["eer"]
    assert same["low"] == same["high"] == same["value"] == 0.0
    # a figure with per-system settings: one function each
    two = paired_bootstrap(a, b, y, spk, {"x": (lambda s, y: 1.0, lambda s, y: 0.25)}, n_boot=5)
    assert two["x"]["low"] == two["x"]["high"] == 0.75
    with pytest.raises(ValueError, match="different lengths"):
        paired_bootstrap(a, b[:-1], y, spk, fns)
