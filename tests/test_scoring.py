"""speakerops.eval.scoring: cosine, AS-norm against brute force, the packaged scorer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from speakerops.eval.calibration import LinearCalibration, QualityCalibration
from speakerops.eval.cohort import speaker_means
from speakerops.eval.metrics import eer
from speakerops.eval.scoring import (
    ScoreNormalization,
    Scorer,
    asnorm_scores,
    cohort_stats,
    cosine_scores,
)


def brute_asnorm(e: np.ndarray, t: np.ndarray, cohort: np.ndarray, n: int) -> float:
    """s' = ½[(s − μ_e)/σ_e + (s − μ_t)/σ_t] from first principles, one trial at a time."""

    def unit(v):
        return v / np.linalg.norm(v)

    e, t = unit(e), unit(t)
    s = float(e @ t)
    stats = []
    for x in (e, t):
        sims = sorted((float(x @ unit(c)) for c in cohort), reverse=True)[:n]
        mu = sum(sims) / len(sims)
        sd = math.sqrt(sum((v - mu) ** 2 for v in sims) / len(sims))
        stats.append((mu, sd))
    (mu_e, sd_e), (mu_t, sd_t) = stats
    return 0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t)


def trial_list(n_utts: int, n_trials: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pairs = rng.choice(n_utts, size=(n_trials, 2))
    return pd.DataFrame(
        {
            "enroll": [f"u{a}" for a in pairs[:, 0]],
            "test": [f"u{b}" for b in pairs[:, 1]],
            "label": rng.integers(0, 2, n_trials),
        }
    )


@pytest.mark.parametrize(("top_n", "n_cohort"), [(5, 30), (30, 30), (50, 12)])
def test_asnorm_matches_brute_force(top_n: int, n_cohort: int) -> None:
    rng = np.random.default_rng(top_n)
    emb = {f"u{i}": rng.normal(size=16) for i in range(25)}
    cohort = rng.normal(size=(n_cohort, 16))
    trials = trial_list(25, 60, seed=1)
    got = asnorm_scores(emb, trials, cohort, top_n)
    want = [
        brute_asnorm(emb[a], emb[b], cohort, min(top_n, n_cohort))
        for a, b in zip(trials["enroll"], trials["test"], strict=True)
    ]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    norm = ScoreNormalization("asnorm", top_n, cohort.astype(np.float32))
    assert norm.effective_top_n == min(top_n, n_cohort)
    pair = norm.score_pairs(emb["u0"], emb["u1"])[0]
    assert pair == pytest.approx(
        brute_asnorm(emb["u0"], emb["u1"], cohort, min(top_n, n_cohort)), abs=1e-5
    )


def test_asnorm_is_symmetric_and_cosine_is_unchanged() -> None:
    rng = np.random.default_rng(0)
    emb = {f"u{i}": rng.normal(size=8) for i in range(10)}
    trials = trial_list(10, 30, seed=2)
    swapped = trials.rename(columns={"enroll": "test", "test": "enroll"})
    cohort = rng.normal(size=(20, 8))
    np.testing.assert_allclose(
        asnorm_scores(emb, trials, cohort, 7), asnorm_scores(emb, swapped, cohort, 7), atol=1e-12
    )
    cos = cosine_scores(emb, trials)
    manual = [
        emb[a] @ emb[b] / np.linalg.norm(emb[a]) / np.linalg.norm(emb[b])
        for a, b in zip(trials["enroll"], trials["test"], strict=True)
    ]
    np.testing.assert_allclose(cos, manual, atol=1e-12)
    np.testing.assert_allclose(ScoreNormalization("cosine").score(emb, trials), cos)


def test_asnorm_removes_hub_utterances_and_lowers_eer() -> None:
    """Utterances with a strong shared component (a recording condition) score high against
    everybody under cosine; the cohort statistics see that component and AS-norm removes it."""
    rng = np.random.default_rng(3)
    d, n_spk, per = 32, 40, 4
    common = rng.normal(size=d)
    common /= np.linalg.norm(common)

    def utterance(spk_vec):
        return spk_vec + 0.7 * rng.normal(size=d) / math.sqrt(d) * 3 + rng.uniform(0, 4.0) * common

    spk = rng.normal(size=(n_spk, d)) / math.sqrt(d) * 3
    emb, who = {}, {}
    for s in range(n_spk):
        for k in range(per):
            emb[f"s{s}u{k}"] = utterance(spk[s])
            who[f"s{s}u{k}"] = s
    cohort_spk = rng.normal(size=(200, d)) / math.sqrt(d) * 3
    cohort_utts = np.stack([utterance(c) for c in cohort_spk for _ in range(2)])
    cohort, names = speaker_means(cohort_utts, [str(i // 2) for i in range(len(cohort_utts))])
    assert cohort.shape == (200, d) and names == sorted(names)
    ids = list(emb)
    rows = [(a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]]
    trials = pd.DataFrame(rows, columns=["enroll", "test"])
    trials["label"] = [int(who[a] == who[b]) for a, b in rows]
    y = trials["label"].to_numpy()
    e_cos = eer(cosine_scores(emb, trials), y)
    e_as = eer(asnorm_scores(emb, trials, cohort, 50), y)
    assert e_as < 0.7 * e_cos, (e_as, e_cos)


def test_cohort_stats_and_normalization_validation() -> None:
    x = np.eye(3)
    mu, sd = cohort_stats(x, np.eye(3), 2)
    np.testing.assert_allclose(mu, 0.5)
    np.testing.assert_allclose(sd, 0.5)
    # mean and standard deviation (ddof 0) of the top 2 of 3 cosines, cohort rows unnormalized:
    # [1, 0] scores 1, 0.6, 0 -> top 2 {1, 0.6}; [0, 1] scores 0, 0.8, 1 -> top 2 {1, 0.8}
    cohort = np.array([[2.0, 0.0], [0.3, 0.4], [0.0, 5.0]])
    mu, sd = cohort_stats(np.array([[1.0, 0.0], [0.0, 3.0]]), cohort, 2)
    np.testing.assert_allclose(mu, [0.8, 0.9], atol=1e-12)
    np.testing.assert_allclose(sd, [0.2, 0.1], atol=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        cohort_stats(x, np.ones((1, 3)), 2)
    with pytest.raises(ValueError, match="top_n must be >= 2"):
        cohort_stats(x, np.eye(3), 1)
    with pytest.raises(ValueError, match="expected one of"):
        ScoreNormalization("znorm")
    with pytest.raises(ValueError, match="needs a cohort"):
        ScoreNormalization("asnorm")
    with pytest.raises(ValueError, match="speaker labels"):
        speaker_means(np.ones((3, 2)), ["a", "b"])
    with pytest.raises(KeyError, match="no embedding"):
        cosine_scores({"u0": np.ones(2)}, pd.DataFrame({"enroll": ["u0"], "test": ["u9"]}))


def test_settings_round_trip_through_a_dict() -> None:
    rng = np.random.default_rng(0)
    cohort = rng.normal(size=(6, 4)).astype(np.float32)
    norm = ScoreNormalization("asnorm", 3, cohort, [f"s{i}" for i in range(6)])
    back = ScoreNormalization.from_dict(norm.to_dict())
    assert (
        back.method == "asnorm" and back.top_n == 3 and back.cohort_speakers == norm.cohort_speakers
    )
    np.testing.assert_array_equal(back.cohort, cohort)
    assert ScoreNormalization.from_dict(None).method == "cosine"  # models packaged before AS-norm
    assert ScoreNormalization.from_dict({"method": "cosine"}).describe() == "cosine"
    assert "top-3 of 6" in norm.describe()


def test_scorer_gives_llrs_thresholds_and_decisions() -> None:
    cal = LinearCalibration(p_eff=0.5, a=4.0, b=-2.0)
    scorer = Scorer.from_extras({"calibration": cal.to_dict(), "scoring": {"method": "cosine"}})
    e = np.array([1.0, 0.0, 0.0])
    t = np.array([1.0, 1.0, 0.0])
    s = 1 / math.sqrt(2)
    out = scorer.verify(e, t, p_target=0.01)
    assert out["score"] == pytest.approx(s)
    assert out["llr"] == pytest.approx(4 * s - 2)
    assert out["threshold"] == pytest.approx(math.log(99))
    assert out["accept"] is False  # 0.83 < 4.60
    assert scorer.verify(e, t, p_target=0.5)["accept"] is True  # θ = 0
    np.testing.assert_allclose(scorer.to_llr(np.array([0.0, 1.0])), [-2.0, 2.0])
    # quality-aware calibration needs both durations
    q = QualityCalibration(p_eff=0.5, a=4.0, b=-2.0, c=0.5)
    qs = Scorer.from_extras({"calibration": q.to_dict()})
    with pytest.raises(ValueError, match="durations"):
        qs.verify(e, t)
    got = qs.verify(e, t, p_target=0.5, durations=(2.0, 8.0))["llr"]
    assert got == pytest.approx(4 * s - 2 + 0.5 * math.log(2.0))
    with pytest.raises(ValueError, match="no calibration"):
        Scorer.from_extras({}).to_llr(np.zeros(2))


def test_verify_decides_at_the_packaged_operating_point() -> None:
    cal = LinearCalibration(p_eff=0.5, a=4.0, b=-2.0).to_dict()
    op = {"p_target": 0.5, "c_miss": 1.0, "c_fa": 1.0, "llr_threshold": 0.0}
    packaged = Scorer.from_extras({"calibration": cal, "operating_point": op})
    e, t = np.array([1.0, 0.0, 0.0]), np.array([1.0, 1.0, 0.0])
    out = packaged.verify(e, t)
    assert out["p_target"] == 0.5 and out["threshold"] == 0.0 and out["accept"] is True
    assert packaged.verify(e, t, p_target=0.01)["threshold"] == pytest.approx(math.log(99))
    with pytest.raises(ValueError, match="no operating point"):
        Scorer.from_extras({"calibration": cal}).verify(e, t)
