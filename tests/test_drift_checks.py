"""The drift decision (check_drift) on seeded synthetic windows, the config group, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from threadpoolctl import threadpool_limits

from speakerops.drift.checks import (
    check_drift,
    cohort_topk_scores,
    one_per_group,
    random_pair_scores,
)
from speakerops.drift.config import drift_config, drift_defaults
from speakerops.drift.results import DriftRefusal
from speakerops.drift.simulated_traffic import synthetic_population, synthetic_window
from speakerops.eval.cohort import build_cohort
from speakerops.registry.reference import Reference

CONF = Path(__file__).resolve().parents[1] / "conf"
REPS = 20


@pytest.fixture(scope="module")
def reference() -> Reference:
    emb, meta = synthetic_population(6000, n_speakers=2000, p_phone=0.1, seed=1000)
    scores = pd.DataFrame(
        {"set": ["eval"] * 4, "label": [1, 0, 1, 0], "score": [0.8, 0.1, 0.7, 0.05]}
    )
    return Reference(emb, meta, scores, model_name="speaker-encoder", model_version="1")


def _window(seed: int, p_phone: float, n: int = 3000, **kw) -> pd.DataFrame:
    # fresh speakers every time: production speakers are not the reference's
    return synthetic_window(n, n_speakers=n // 3, p_phone=p_phone, seed=seed, **kw)


def test_acceptance_same_distribution_rarely_drifts_shifted_channel_always_does(reference):
    """20 seeded repetitions each: same channel mix as the reference (10 % phone) vs a
    shifted channel mix (90 % phone), new speakers in every window."""
    with threadpool_limits(1):  # as the drift job runs it (drift.threads=1)
        same = [check_drift(_window(seed, 0.1), reference) for seed in range(REPS)]
        shifted = [check_drift(_window(100 + seed, 0.9), reference) for seed in range(REPS)]

    false_alarms = sum(r.drifted for r in same)
    assert false_alarms <= 0.05 * REPS, [r.fired for r in same if r.drifted]
    assert all(r.drifted for r in shifted)
    # the embedding test itself carries the decision, not only the metadata
    assert all("embedding" in r.fired for r in shifted)
    assert sum("embedding" in r.fired for r in same) <= 0.05 * REPS
    aucs_same = [r.check("embedding").score for r in same]
    aucs_shift = [r.check("embedding").score for r in shifted]
    assert max(aucs_same) < 0.55 < min(aucs_shift), (max(aucs_same), min(aucs_shift))
    for r in shifted:
        assert {"sample_rate", "channel", "snr_db", "score_cohort_topk"} <= set(r.fired)
        assert "duration_s" not in r.fired  # durations do not depend on the channel here


def test_one_per_speaker_is_what_keeps_new_speakers_from_looking_like_drift(reference):
    """Several utterances per speaker let the row-split domain classifier learn who is in
    each set; without the one-per-speaker step a same-distribution window 'drifts'."""
    window = _window(7, 0.1)
    with_dedup = check_drift(window, reference)
    without = check_drift(window, reference, {"embedding": {"one_per_speaker": False}})
    assert with_dedup.check("embedding").score < 0.55
    assert without.check("embedding").score > 0.55 and without.check("embedding").drifted
    assert with_dedup.check("embedding").n_current < 0.4 * len(window)  # ~1 row per speaker


def _compose(*overrides: str):
    with initialize_config_dir(version_base=None, config_dir=str(CONF)):
        return compose(config_name=None, overrides=list(overrides))


def test_config_group_matches_code_defaults_and_mmd_option_works(reference):
    on_disk = yaml.safe_load((CONF / "drift" / "default.yaml").read_text())
    assert on_disk == drift_defaults()
    cfg = _compose("+drift=mmd", "drift.seed=3")
    d = drift_config(cfg)  # the whole tree: reads cfg.drift
    assert d.embedding.method == "mmd" and d.embedding.max_rows == 2000 and d.seed == 3
    assert d.columns.channel.stattest == "jensenshannon"  # the rest comes from default.yaml

    same = check_drift(_window(1, 0.1), reference, cfg)
    shifted = check_drift(_window(2, 0.9), reference, cfg)
    assert same.check("embedding").method == "mmd" and not same.check("embedding").drifted
    assert shifted.check("embedding").drifted and shifted.check("embedding").score > 0.015
    assert shifted.check("embedding").n_current <= 2000


def test_mixed_model_versions_are_refused_with_the_reason(reference):
    window = pd.concat(
        [_window(1, 0.1, n=600, model_version="1"), _window(2, 0.1, n=400, model_version="2")],
        ignore_index=True,
    )
    with pytest.raises(DriftRefusal) as err:
        check_drift(window, reference)
    msg = str(err.value)
    assert "mixes embeddings of 2 model versions" in msg
    assert "speaker-encoder v1 (600 rows)" in msg and "speaker-encoder v2 (400 rows)" in msg
    assert "never compared" in msg


def test_other_refusals(reference):
    with pytest.raises(
        DriftRefusal,
        match="come from speaker-encoder v2 but the reference belongs to speaker-encoder v1",
    ):
        check_drift(_window(1, 0.1, n=600, model_version="2"), reference)
    with pytest.raises(DriftRefusal, match="model 'other'"):
        check_drift(_window(1, 0.1, n=600, model_name="other"), reference)
    with pytest.raises(DriftRefusal, match="64 dimensions, the reference 192"):
        check_drift(_window(1, 0.1, n=600, dim=64), reference)
    with pytest.raises(DriftRefusal, match="fewer than drift.window.min_rows=200"):
        check_drift(_window(1, 0.1, n=150), reference)
    with pytest.raises(DriftRefusal, match="holds no production embeddings"):
        check_drift(_window(1, 0.1).iloc[:0], reference)
    broken = _window(1, 0.1, n=600)
    broken.loc[3, "emb_010"] = np.nan
    with pytest.raises(DriftRefusal, match="1 window row"):
        check_drift(broken, reference)


def test_missing_channel_is_skipped_not_guessed(reference):
    window = _window(3, 0.1, n=900)
    window["channel"] = None
    res = check_drift(window, reference)
    ch = res.check("channel")
    assert ch.skipped == "no values on the current side" and not ch.drifted
    assert any("channel skipped" in w for w in res.warnings)


def test_label_free_scores():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    speakers = np.repeat(np.array(["a", "b", "c", "d", "e"], dtype=object), 10)
    cohort, owner = build_cohort(x, speakers, max_cohort=10, rng=rng)
    assert list(owner) == ["a", "b", "c", "d", "e"]
    means = np.stack([x[speakers == s].mean(0) for s in owner])
    np.testing.assert_allclose(
        cohort, means / np.linalg.norm(means, axis=1, keepdims=True), atol=1e-5
    )
    own = np.array([list(owner).index(s) for s in speakers])
    top1 = cohort_topk_scores(x, cohort, 1, exclude=own)
    sims = x @ cohort.T
    sims[np.arange(50), own] = -np.inf
    np.testing.assert_allclose(top1, sims.max(axis=1), atol=1e-6)
    # leaving the own speaker in makes the score higher: that is why reference rows leave it out
    assert cohort_topk_scores(x, cohort, 1).mean() > top1.mean()
    pairs = random_pair_scores(x, np.random.default_rng(1))
    assert pairs.shape == (50,) and np.all(pairs < 0.999)  # never paired with itself
    keep = one_per_group(
        np.array(["a", "a", None, "b", None], dtype=object), np.random.default_rng(0)
    )
    assert len(keep) == 4 and 3 in keep and {2, 4} <= set(keep)
