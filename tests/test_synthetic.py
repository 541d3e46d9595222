"""The embedded synthetic corpus: determinism, metadata, channels, degradation hook, and that
it is a real task (naive mean-MFCC fails, a learned proxy on normalized features does not)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from speakerops.data import synthetic as syn
from speakerops.eval.metrics import eer

from . import reference_systems as bl


def _band_fraction(y: np.ndarray, sr: int, lo: float) -> float:
    """Fraction of the signal energy above ``lo`` Hz."""
    p = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(y.size, 1.0 / sr)
    return float(p[f > lo].sum() / p.sum())


def _file_hashes(root) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- speakers -------------------------------------------------------------------------------
def test_speakers_deterministic_valid_and_prefix_stable():
    a = syn.make_speakers(12, seed=3)
    assert a == syn.make_speakers(12, seed=3)
    assert syn.make_speakers(5, seed=3) == a[:5]  # speaker i depends only on (seed, i)
    b = syn.make_speakers(12, seed=4)
    assert [s.f0_mean_hz for s in a] != [s.f0_mean_hz for s in b]
    assert [s.speaker_id for s in a] == [f"syn{i:04d}" for i in range(12)]
    assert [s.gender for s in a] == ["f", "m"] * 6
    assert {s.age_band for s in a} <= set(syn.AGE_BANDS)
    assert {s.accent for s in a} <= set(syn.ACCENTS)
    big = syn.make_speakers(200, seed=0)
    assert {s.accent for s in big} == set(syn.ACCENTS)
    assert {s.age_band for s in big} == set(syn.AGE_BANDS)
    f0 = np.array([s.f0_mean_hz for s in big])
    g = np.array([s.gender for s in big])
    assert np.median(f0[g == "f"]) > 1.4 * np.median(f0[g == "m"])
    assert f0[g == "f"].min() < f0[g == "m"].max()  # distributions overlap
    with pytest.raises(ValueError, match="non-negative integer"):
        syn.make_speakers(-1, 0)


# --- single recordings ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def speakers():
    return syn.make_speakers(8, seed=0)


def test_synthesize_deterministic_and_valid(speakers):
    s = speakers[1]
    y1 = syn.synthesize_utterance(s, seed=11, duration_s=2.5)
    y2 = syn.synthesize_utterance(s, seed=11, duration_s=2.5)
    y3 = syn.synthesize_utterance(s, seed=12, duration_s=2.5)
    y4 = syn.synthesize_utterance(speakers[2], seed=11, duration_s=2.5)
    assert y1.dtype == np.float32 and y1.shape == (40000,)
    assert np.array_equal(y1, y2)
    assert not np.array_equal(y1, y3) and not np.array_equal(y1, y4)
    for y in (y1, y3, y4):
        assert np.isfinite(y).all()
        assert np.abs(y).max() <= 1.0
        assert np.sqrt(np.mean(y**2)) > 1e-3  # not silent


@pytest.mark.parametrize("channel", list(syn.CHANNELS))
def test_channels(speakers, channel):
    y = syn.synthesize_utterance(speakers[3], seed=5, duration_s=2.0, channel=channel)
    assert y.shape == (32000,) and np.isfinite(y).all() and np.abs(y).max() <= 1.0
    assert np.sqrt(np.mean(y**2)) > 1e-3
    above4k = _band_fraction(y, 16000, 4000.0)
    if channel == "phone":  # 300–3400 Hz telephone band via 8 kHz
        assert above4k < 1e-4
        assert _band_fraction(y, 16000, 3600.0) < 1e-3
    else:  # the same utterance keeps its high band on the other channels
        assert above4k > 1e-3


def test_sample_rate_option(speakers):
    y8 = syn.synthesize_utterance(speakers[3], seed=2, duration_s=1.5, sample_rate=8000)
    assert y8.shape == (12000,) and y8.dtype == np.float32
    assert np.isfinite(y8).all() and np.sqrt(np.mean(y8**2)) > 1e-3
    y22 = syn.synthesize_utterance(speakers[3], seed=2, duration_s=1.5, sample_rate=22050)
    assert y22.shape == (33075,)
    # the same recording at another rate: the 16 kHz one resampled by an independent
    # resampler (torchaudio's sinc) is within 2.3 % (8 kHz) and 0.6 % (22.05 kHz) RMS; another
    # recording, or the 16 kHz samples merely cut to length, is ~150 % away
    y16 = torch.from_numpy(syn.synthesize_utterance(speakers[3], seed=2, duration_s=1.5))
    for y, rate in ((y8, 8000), (y22, 22050)):
        ref = AF.resample(y16, 16000, rate).numpy()[: y.size]
        assert ref.size == y.size
        rel = float(np.sqrt(np.mean((y - ref) ** 2) / np.mean(ref**2)))
        assert rel < 0.05, (rate, rel)


def test_bad_arguments(speakers):
    with pytest.raises(ValueError, match="unknown channel 'radio'"):
        syn.synthesize_utterance(speakers[0], 0, 1.0, channel="radio")
    with pytest.raises(ValueError, match="duration_s"):
        syn.synthesize_utterance(speakers[0], 0, -1.0)
    with pytest.raises(ValueError, match="sample_rate"):
        syn.synthesize_utterance(speakers[0], 0, 1.0, sample_rate=100)
    with pytest.raises(ValueError, match="'height' is not one of"):
        syn.synthesize_utterance(speakers[0], 0, 1.0, degrade={"column": "height", "value": 1})
    with pytest.raises(ValueError, match="at least one of"):
        syn.synthesize_utterance(speakers[0], 0, 1.0, degrade={"column": "accent", "value": "x"})


def test_degrade_changes_only_the_group(speakers):
    group = speakers[0].accent
    degrade = {"column": "accent", "value": group, "snr_db": -5.0}
    in_group = [s for s in speakers if s.accent == group]
    out_group = [s for s in speakers if s.accent != group]
    assert in_group and out_group
    for s in speakers:
        y0 = syn.synthesize_utterance(s, seed=4, duration_s=1.5, channel="studio")
        y1 = syn.synthesize_utterance(s, seed=4, duration_s=1.5, channel="studio", degrade=degrade)
        if s.accent == group:
            # much noisier: the quietest 10 % of 20 ms frames rise towards the speech level
            q = [
                np.quantile(np.sqrt(np.mean(y.reshape(-1, 320) ** 2, 1)), 0.1) / np.std(y)
                for y in (y0, y1)
            ]
            assert q[1] > 3 * q[0], (s.speaker_id, q)
        else:
            assert np.array_equal(y0, y1), s.speaker_id
    # a list of values and the band-limiting option
    lp = {"column": "speaker", "value": [speakers[1].speaker_id], "lowpass_hz": 1500.0}
    y = syn.synthesize_utterance(speakers[1], 7, 2.0, channel="studio", degrade=lp)
    y_ref = syn.synthesize_utterance(speakers[1], 7, 2.0, channel="studio")
    assert _band_fraction(y, 16000, 3000.0) < 0.2 * _band_fraction(y_ref, 16000, 3000.0)


# --- corpus ---------------------------------------------------------------------------------
def test_generate_corpus_layout_and_bit_identical(tmp_path):
    kw = dict(n_speakers=4, utts_per_speaker=2, seed=7, min_duration_s=1.0, max_duration_s=1.6)
    df = syn.generate_corpus(tmp_path / "a", progress=False, **kw)
    df_b = syn.generate_corpus(tmp_path / "b", workers=2, progress=False, **kw)
    syn.generate_corpus(tmp_path / "c", progress=False, **{**kw, "seed": 8})

    assert len(df) == 8
    assert {
        "utt_id",
        "path",
        "speaker",
        "channel",
        "duration",
        "gender",
        "age_band",
        "accent",
    } <= set(df.columns)
    assert df["utt_id"].is_unique
    assert set(df["channel"]) <= set(syn.CHANNELS)
    assert df["duration"].between(1.0, 1.6).all()
    assert set(df["gender"]) <= {"f", "m"} and set(df["age_band"]) <= set(syn.AGE_BANDS)
    spk = pd.read_csv(tmp_path / "a" / "speakers.csv")
    assert list(spk.columns) == ["speaker", "gender", "age_band", "accent"]
    assert list(spk["speaker"]) == ["syn0000", "syn0001", "syn0002", "syn0003"]
    utt = pd.read_csv(tmp_path / "a" / "utterances.csv")
    assert {"utt_id", "path", "speaker", "channel", "duration"} <= set(utt.columns)
    for row in df.itertuples():
        assert row.path == f"wav/{row.speaker}/{row.utt_id}.wav"
        info = sf.info(tmp_path / "a" / row.path)
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert abs(info.frames / 16000 - row.duration) < 1e-6

    # bit-identical across runs and worker counts; a different seed differs
    pd.testing.assert_frame_equal(df, df_b)
    assert _file_hashes(tmp_path / "a") == _file_hashes(tmp_path / "b")
    ha, hc = _file_hashes(tmp_path / "a"), _file_hashes(tmp_path / "c")
    assert ha.keys() == hc.keys() and all(ha[k] != hc[k] for k in ha)

    # each file is synthesize_utterance(speaker, seed, duration, channel=channel), 16-bit
    spk = {p.speaker_id: p for p in syn.make_speakers(4, seed=7)}
    for row in df.iloc[[0, 5]].itertuples():
        x, _ = sf.read(tmp_path / "a" / row.path, dtype="float64")
        y = syn.synthesize_utterance(spk[row.speaker], row.seed, row.duration, channel=row.channel)
        assert np.max(np.abs(x - y)) <= 1.0 / 32768 + 1e-9


def test_generate_corpus_degrade_and_rate(tmp_path):
    kw = dict(
        n_speakers=6,
        utts_per_speaker=2,
        seed=1,
        min_duration_s=1.0,
        max_duration_s=1.2,
        progress=False,
    )
    base = syn.generate_corpus(tmp_path / "base", **kw)
    group = base.loc[0, "accent"]
    deg = syn.generate_corpus(
        tmp_path / "deg", degrade={"column": "accent", "value": group, "snr_db": 0.0}, **kw
    )
    hit = (deg["accent"] == group).to_numpy()
    assert hit.any() and (~hit).any()
    assert (deg.loc[hit, "snr_db"] <= 0.0).all()
    pd.testing.assert_frame_equal(deg[~hit], base[~hit])
    hb, hd = _file_hashes(tmp_path / "base"), _file_hashes(tmp_path / "deg")
    for row in deg.itertuples():
        assert (hb[row.path] == hd[row.path]) == (row.accent != group), row.utt_id

    low = syn.generate_corpus(tmp_path / "8k", sample_rate=8000, **kw)
    assert (low["sample_rate"] == 8000).all()
    assert sf.info(tmp_path / "8k" / low.loc[0, "path"]).samplerate == 8000
    with pytest.raises(ValueError, match="n_speakers"):
        syn.generate_corpus(tmp_path / "bad", n_speakers=0, utts_per_speaker=1, progress=False)


def test_reference_systems_read_the_corpus_files(tmp_path):
    df = syn.generate_corpus(
        tmp_path, 6, 3, seed=5, min_duration_s=1.0, max_duration_s=1.2, progress=False
    )
    spk = {p.speaker_id: p for p in syn.make_speakers(6, seed=5)}
    ys = [
        syn.synthesize_utterance(spk[r.speaker], r.seed, r.duration, channel=r.channel)
        for r in df.itertuples()
    ]
    from_files = bl.mean_mfcc_embeddings([tmp_path / p for p in df["path"]], 16000)
    assert from_files.shape == (18, 20)
    from_arrays = bl.mean_mfcc_embeddings(ys, 16000)
    # equal up to 16-bit quantization (which only matters in near-empty bands)
    cos = np.sum(from_files * from_arrays, 1) / (
        np.linalg.norm(from_files, axis=1) * np.linalg.norm(from_arrays, axis=1)
    )
    assert cos.min() > 0.99
    e = bl.mean_mfcc_eer(df, root=tmp_path)
    assert e == bl.mean_mfcc_eer(
        df, waveforms=bl.load_waveforms([tmp_path / p for p in df["path"]], 16000)
    )
    assert 0.0 <= e <= 1.0
    # the EER of cosine scores over every unordered pair of distinct files, built here
    pairs = [(a, b) for a in range(18) for b in range(a + 1, 18)]
    unit = from_files / np.linalg.norm(from_files, axis=1, keepdims=True)
    speaker = df["speaker"].to_numpy()
    assert e == pytest.approx(
        eer([unit[a] @ unit[b] for a, b in pairs], [speaker[a] == speaker[b] for a, b in pairs]),
        abs=1e-12,
    )
    held_out = ["syn0003", "syn0004", "syn0005"]
    r = bl.reference_eers(df, test_speakers=held_out, root=tmp_path)
    assert r["n_test_speakers"] == 3 and r["n_train_speakers"] == 3
    assert 0.0 <= r["mean_mfcc_eer"] <= 1.0 and 0.0 <= r["lda_proxy_eer"] <= 1.0
    # each figure is its system on the held-out speakers only, the proxy fit on the others
    test = df["speaker"].isin(held_out).to_numpy()
    assert r["mean_mfcc_eer"] == bl.mean_mfcc_eer(df[test], root=tmp_path)
    waves = bl.load_waveforms([tmp_path / p for p in df["path"]], 16000)
    feats = np.stack([bl.utterance_stats(w, 16000) for w in waves])
    want = bl.lda_proxy_eer(feats[~test], speaker[~test], feats[test], speaker[test])
    assert r["lda_proxy_eer"] == want
    with pytest.raises(ValueError, match="lacks column"):
        bl.mean_mfcc_eer(df.drop(columns="path"), root=tmp_path)
    with pytest.raises(ValueError, match="cannot read audio file"):
        bl.load_waveforms([tmp_path / "speakers.csv"], 16000)


# --- it is a real task ----------------------------------------------------------------------
N_TRAIN, N_TEST, UTTS = 40, 20, 4


@pytest.fixture(scope="module")
def small_task():
    """40 training and 20 held-out speakers × 4 utterances of 3–3.5 s, in memory."""
    spks = syn.make_speakers(N_TRAIN + N_TEST, seed=2024)
    waves, labels = [], []
    for k, s in enumerate(spks):
        for u in range(UTTS):
            rng = np.random.default_rng([2024, k, u])
            dur = 3.0 + 0.5 * rng.random()
            waves.append(syn.synthesize_utterance(s, int(rng.integers(2**31)), dur))
            labels.append(s.speaker_id)
    return waves, np.array(labels), np.arange(len(labels)) >= N_TRAIN * UTTS


def test_naive_baseline_fails_and_learned_proxy_does_not(small_task):
    waves, labels, test = small_task
    test_waves = [w for w, t in zip(waves, test, strict=True) if t]
    i, j, y = bl.all_pairs_trials(labels[test])
    base = bl.eer(bl.pair_cosines(bl.mean_mfcc_embeddings(test_waves, 16000), i, j), y)
    feats = np.stack([bl.utterance_stats(w, 16000) for w in waves])
    proxy = bl.lda_proxy_eer(feats[~test], labels[~test], feats[test], labels[test])
    print(f"mean-MFCC EER {base:.3f}, LDA proxy EER {proxy:.3f}")
    assert base >= 0.10
    assert proxy <= base / 3.0
    assert proxy > 0.0  # within-speaker variation exists: not a trivial task
