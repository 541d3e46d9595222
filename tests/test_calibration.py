"""speakerops.eval.calibration on simulated data whose true LLR is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from speakerops.eval import metrics as M
from speakerops.eval.calibration import (
    LinearCalibration,
    QualityCalibration,
    calibration_from_dict,
    log_min_duration,
)


def gaussian_llrs(n_tar, n_non, mu=2.0, seed=0):
    """Gaussian LLRs that are calibrated by construction: tar ~ N(mu, 2mu), non ~ N(-mu, 2mu)
    (variance 2mu), for which log N(l; mu, 2mu)/N(l; -mu, 2mu) = l exactly."""
    rng = np.random.default_rng(seed)
    sd = math.sqrt(2 * mu)
    llr = np.r_[rng.normal(mu, sd, n_tar), rng.normal(-mu, sd, n_non)]
    y = np.r_[np.ones(n_tar, bool), np.zeros(n_non, bool)]
    return llr, y


A_TRUE, B_TRUE = 0.5, -1.5  # raw scores s = (llr - b) / a, so llr = a·s + b


@pytest.mark.parametrize(("n_tar", "n_non"), [(20_000, 20_000), (4_000, 60_000)])
def test_linear_recovers_true_parameters(n_tar, n_non):
    llr, y = gaussian_llrs(n_tar, n_non, seed=n_non)
    s = (llr - B_TRUE) / A_TRUE
    cal = LinearCalibration(p_eff=0.5).fit(s, y)
    # Class reweighting to p_eff makes the fit independent of the class counts.
    assert cal.a == pytest.approx(A_TRUE, abs=0.03)
    assert cal.b == pytest.approx(B_TRUE, abs=0.08)
    # p_eff changes the weighting, not the target: still ~ the true LLR map
    cal2 = LinearCalibration(p_eff=0.1).fit(s, y)
    assert cal2.a == pytest.approx(A_TRUE, abs=0.05)
    assert cal2.b == pytest.approx(B_TRUE, abs=0.15)


def test_fit_is_deterministic_and_optimal():
    llr, y = gaussian_llrs(3000, 9000, seed=5)
    s = 3.0 * llr + 7.0
    c1 = LinearCalibration(p_eff=0.5).fit(s, y)
    c2 = LinearCalibration(p_eff=0.5).fit(s, y)
    assert (c1.a, c1.b) == (c2.a, c2.b)

    # the fit minimizes the P_eff = 0.5 weighted cross-entropy, which is ln2·Cllr for balanced
    # weights: nudging the parameters never lowers Cllr on the training data
    def cost(a, b):
        return M.cllr(a * s + b, y)

    base = cost(c1.a, c1.b)
    for da, db in [(1e-3, 0), (-1e-3, 0), (0, 1e-2), (0, -1e-2)]:
        assert cost(c1.a + da, c1.b + db) >= base - 1e-12


def test_calibration_improves_cllr_and_act_dcf_on_held_out():
    llr, y = gaussian_llrs(20_000, 40_000, mu=3.0, seed=2)
    raw = 10.0 * llr + 5.0  # badly scaled and shifted "scores"
    rng = np.random.default_rng(0)
    train = rng.random(llr.size) < 0.5
    test = ~train
    cal = LinearCalibration(p_eff=0.5).fit(raw[train], y[train])
    out = cal.transform(raw[test])
    yt = y[test]
    raw_cllr = M.cllr(raw[test], yt)
    cal_cllr = M.cllr(out, yt)
    assert cal_cllr <= raw_cllr
    assert raw_cllr > 1.5  # the raw scores really were miscalibrated (worse than chance)
    assert M.calibration_loss(out, yt) < 0.01
    for p in (0.01, 0.05):
        md = M.min_dcf(out, yt, p)
        assert M.act_dcf(out, yt, p) == pytest.approx(md, abs=0.05)
        assert M.act_dcf(raw[test], yt, p) > md + 0.2  # raw scores at θ are far off


def test_thresholds_match_decisions():
    llr, y = gaussian_llrs(2000, 8000, seed=3)
    s = (llr - B_TRUE) / A_TRUE
    cal = LinearCalibration(p_eff=0.5).fit(s, y)
    for p in (0.01, 0.05, 0.5):
        theta = cal.bayes_threshold(p)
        assert theta == pytest.approx(math.log((1 - p) / p))
        st = cal.score_threshold(p)
        assert cal.a * st + cal.b == pytest.approx(theta, abs=1e-12)
        np.testing.assert_array_equal(s >= st, cal.transform(s) >= theta - 1e-12)
    assert cal.bayes_threshold(0.2, c_miss=3, c_fa=0.5) == pytest.approx(math.log(0.4 / 0.6))
    neg = LinearCalibration(p_eff=0.5, a=-1.0, b=0.0)
    with pytest.raises(ValueError, match="positive slope"):
        neg.score_threshold(0.01)


def test_round_trip_dict_json():
    llr, y = gaussian_llrs(1000, 3000, seed=4)
    s = 2.0 * llr - 1.0
    cal = LinearCalibration(p_eff=0.3).fit(s, y)
    d = json.loads(json.dumps(cal.to_dict()))
    assert d["kind"] == "linear"
    assert all(isinstance(d[k], float) for k in ("a", "b", "p_eff"))
    back = calibration_from_dict(d)
    assert isinstance(back, LinearCalibration)
    np.testing.assert_array_equal(back.transform(s), cal.transform(s))
    assert back.p_eff == 0.3
    assert LinearCalibration.from_dict(d).score_threshold(0.01) == cal.score_threshold(0.01)


def quality_data(n, seed=0, m1=2.0, m0=-1.0, sig=1.5, k=1.2):
    """s | q, class ~ N(m_class + k·q, sig²), q ~ U(0, 2) for both classes, so the true LLR is
    ((m1-m0)/sig²)·(s - k·q) - (m1² - m0²)/(2 sig²) = a·s + b + c·q."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    q = rng.uniform(0.0, 2.0, 2 * n)
    s = np.where(y, rng.normal(m1, sig, 2 * n), rng.normal(m0, sig, 2 * n)) + k * q
    a = (m1 - m0) / sig**2
    return s, y, q, (a, -(m1**2 - m0**2) / (2 * sig**2), -a * k)


def test_quality_recovers_parameters_and_beats_linear():
    s, y, q, (a, b, c) = quality_data(30_000, seed=1)
    qc = QualityCalibration(p_eff=0.5).fit(s, y, q)
    assert qc.a == pytest.approx(a, abs=0.04)
    assert qc.b == pytest.approx(b, abs=0.06)
    assert qc.c == pytest.approx(c, abs=0.06)
    s2, y2, q2, _ = quality_data(30_000, seed=2)
    lc = LinearCalibration(p_eff=0.5).fit(s, y)
    assert M.cllr(qc.transform(s2, q2), y2) < M.cllr(lc.transform(s2), y2) - 0.02
    # scalar quality broadcasts; score threshold consistent with the LLR threshold
    np.testing.assert_allclose(qc.transform(s2[:5], 0.7), qc.transform(s2[:5], np.full(5, 0.7)))
    st = qc.score_threshold(0.05, q2[:5])
    np.testing.assert_allclose(qc.transform(st, q2[:5]), qc.bayes_threshold(0.05), atol=1e-12)
    assert qc.score_threshold(0.05, 0.3) == pytest.approx(float(qc.score_threshold(0.05, [0.3])[0]))


def test_quality_round_trip():
    s, y, q, _ = quality_data(2000, seed=3)
    qc = QualityCalibration(p_eff=0.5, quality_name="log_min_dur_s").fit(s, y, q)
    d = json.loads(json.dumps(qc.to_dict()))
    assert d["kind"] == "quality" and d["quality_name"] == "log_min_dur_s"
    back = calibration_from_dict(d)
    assert isinstance(back, QualityCalibration)
    np.testing.assert_array_equal(back.transform(s, q), qc.transform(s, q))


def test_log_min_duration():
    np.testing.assert_allclose(log_min_duration([2.0, 5.0], [3.0, 1.0]), np.log([2.0, 1.0]))
    with pytest.raises(ValueError, match="> 0"):
        log_min_duration([0.0], [1.0])


def test_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        LinearCalibration(p_eff=0.5).transform([1.0])
    with pytest.raises(RuntimeError, match="not fitted"):
        QualityCalibration(p_eff=0.5).to_dict()
    with pytest.raises(ValueError, match="no target"):
        LinearCalibration(p_eff=0.5).fit([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="NaN"):
        LinearCalibration(p_eff=0.5).fit([0.1, np.nan, 0.3], [0, 1, 1])
    with pytest.raises(ValueError, match="quality has 2 values"):
        QualityCalibration(p_eff=0.5).fit([0.1, 0.2, 0.3], [0, 1, 1], [1.0, 2.0])
    with pytest.raises(ValueError, match="quality contains non-finite"):
        QualityCalibration(p_eff=0.5).fit([0.1, 0.2, 0.3], [0, 1, 1], [1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="constant"):
        QualityCalibration(p_eff=0.5).fit([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1], [1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="p_eff"):
        LinearCalibration(p_eff=1.0).fit([0.1, 0.2], [0, 1])
    with pytest.raises(ValueError, match="unknown calibration kind"):
        calibration_from_dict({"kind": "isotonic"})
    with pytest.raises(ValueError, match="'kind'"):
        calibration_from_dict({"a": 1.0})
    with pytest.raises(ValueError, match="missing"):
        calibration_from_dict({"kind": "quality", "a": 1.0, "b": 0.0})
    with pytest.raises(ValueError, match="finite"):
        calibration_from_dict({"kind": "linear", "a": float("nan"), "b": 0.0})


def test_separable_data_stays_finite():
    s = np.r_[np.linspace(1, 2, 50), np.linspace(-2, -1, 50)]
    y = np.r_[np.ones(50), np.zeros(50)]
    cal = LinearCalibration(p_eff=0.5).fit(s, y)
    assert math.isfinite(cal.a) and cal.a > 5  # large, confident, but finite
    assert M.cllr(cal.transform(s), y) < 0.01
