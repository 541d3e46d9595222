"""WADA-SNR estimate on real speech + real noise mixed at known SNRs."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speakerops.data.quality import _G_TABLE, SNR_TABLE_DB, estimate_snr_db, simulate_wada_table

from .conftest import SHARED_DATA

DATA = SHARED_DATA  # ../shared/data, or $SPEAKEROPS_SHARED_DATA (conftest.py)
# The 12 train-clean-100 utterances with the least background noise, ranked by an
# independent frame-energy estimate (mean power / mean power of the 10 % quietest 25 ms
# frames: all >= 59 dB), so a mixture's SNR is the nominal one to well under 0.1 dB.
CLEAN = [
    "3235-11599-0000", "254-12312-0000", "6064-300880-0000", "3240-131231-0000",
    "7264-92310-0000", "6836-61803-0000", "8630-305212-0000", "4362-15663-0000",
    "8419-286667-0000", "6385-220959-0000", "6818-68772-0000", "8051-118101-0000",
]  # fmt: skip
STATIONARY = ["white_noise", "pink_noise", "running_tap", "exercise_bike"]
LEVELS = (0, 5, 10, 15, 20)


def _need_data() -> None:
    if not (DATA / "librispeech" / "train-clean-100").is_dir() or not (DATA / "noise").is_dir():
        pytest.skip(f"real audio absent: {DATA} (see ../shared/data/README.md)")


@pytest.fixture(scope="module")
def estimates() -> dict[str, np.ndarray]:
    """noise name -> estimates [file, level] for speech + noise mixed at LEVELS dB, where
    SNR = 10 log10(sum speech^2 / sum noise^2) over the utterance (one noise segment per
    file, scaled per level)."""
    _need_data()
    rng = np.random.default_rng(0)
    out = {}
    for noise_name in [*STATIONARY, "doing_the_dishes"]:
        noise, nsr = sf.read(DATA / "noise" / f"{noise_name}.wav")
        noise = noise if noise.ndim == 1 else noise[:, 0]
        assert nsr == 16000
        rows = []
        for utt in CLEAN:
            speech, sr = sf.read(DATA / "librispeech" / "train-clean-100" / f"{utt}.flac")
            assert sr == 16000
            start = rng.integers(0, len(noise) - len(speech))
            seg = noise[start : start + len(speech)]
            row = []
            for snr in LEVELS:
                scaled = seg * np.sqrt(np.sum(speech**2) / np.sum(seg**2) / 10 ** (snr / 10))
                row.append(estimate_snr_db(speech + scaled, sr))
            rows.append(row)
        out[noise_name] = np.asarray(rows)
    return out


@pytest.mark.realdata
def test_ranks_known_snrs_for_every_file_and_noise(estimates):
    for name, est in estimates.items():
        increasing = np.all(np.diff(est, axis=1) > 0, axis=1)
        assert increasing.all(), (
            f"{name}: estimates not increasing with the SNR for {np.array(CLEAN)[~increasing]}"
        )


@pytest.mark.realdata
def test_within_a_few_db_for_stationary_noise(estimates):
    for name in STATIONARY:
        err = estimates[name] - np.asarray(LEVELS)[None, :]
        mean_err = err.mean(axis=0)
        assert np.all(np.abs(mean_err) <= 3.0), (
            f"{name}: mean error per level {np.round(mean_err, 2)} dB"
        )
        assert np.median(np.abs(err)) <= 2.0, (
            f"{name}: median |error| {np.median(np.abs(err)):.2f} dB"
        )
    # a non-stationary kitchen noise (clatter between quiet spells) reads a little clean
    err = estimates["doing_the_dishes"] - np.asarray(LEVELS)[None, :]
    assert np.all(np.abs(err.mean(axis=0)) <= 5.0), np.round(err.mean(axis=0), 2)


def test_scale_invariant_and_channels_averaged():
    rng = np.random.default_rng(1)
    speech = rng.gamma(0.4, 1.0, 32000) * rng.choice([-1, 1], 32000)
    x = speech + 0.3 * rng.standard_normal(32000)
    a = estimate_snr_db(x, 16000)
    assert estimate_snr_db(0.001 * x, 16000) == pytest.approx(a, abs=1e-6)
    assert estimate_snr_db(np.stack([x, x], axis=1), 16000) == pytest.approx(a, abs=1e-6)
    # pure Gaussian noise reads at the bottom of the table, clean Gamma speech near the top
    assert estimate_snr_db(rng.standard_normal(32000), 16000) < -5
    assert estimate_snr_db(speech, 16000) > 40


def test_bad_input_is_refused_clearly():
    assert np.isnan(estimate_snr_db(np.zeros(16000), 16000))
    with pytest.raises(ValueError, match="at least 0.1 s"):
        estimate_snr_db(np.ones(100), 16000)
    with pytest.raises(ValueError, match="NaN or inf"):
        estimate_snr_db(np.full(4000, np.nan), 16000)
    with pytest.raises(ValueError, match="sample_rate"):
        estimate_snr_db(np.ones(4000), 0)
    with pytest.raises(ValueError, match=r"\[T\] or \[T, C\]"):
        estimate_snr_db(np.ones((2, 2, 2000)), 16000)


def test_stored_table_matches_its_simulation():
    fresh = simulate_wada_table(200_000, seed=3)
    assert fresh.shape == _G_TABLE.shape == SNR_TABLE_DB.shape
    assert np.max(np.abs(fresh - _G_TABLE)) < 0.01
