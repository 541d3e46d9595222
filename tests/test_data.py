"""Audio I/O, corpus adapters, manifests, splits, trials and quarantine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from scipy.signal import resample_poly

from speakerops.data import corpora
from speakerops.data.audio import AudioError, load_audio
from speakerops.data.listing import FileListing
from speakerops.data.manifest import assign_splits, make_trials, read_trials, write_trials
from speakerops.data.prepare import prepare

from .conftest import shared, tone, write_wav


def data_cfg(tmp_path: Path, **kw) -> OmegaConf:
    base = {
        "corpus": "folder",
        "root": None,
        "prepared_dir": str(tmp_path / "prepared"),
        "min_duration": 0.5,
        "calibration_fraction": 0.25,
        "eval_fraction": 0.25,
        "split_seed": 0,
        "official_trials": None,
        "extra_manifests": [],
        "workers": 2,
        "trials": {"targets_per_utt": 2, "nontargets_per_utt": 2, "seed": 0},
    }
    base.update(kw)
    return OmegaConf.create(base)


def test_load_audio_resamples_and_mixes_down(tmp_path: Path) -> None:
    stereo = np.stack([tone(1.0, 8000), tone(1.0, 8000, 300.0)], axis=1)
    path = write_wav(tmp_path / "s.wav", stereo, 8000)
    wav, rate = load_audio(path, 16000)
    assert rate == 16000 and wav.ndim == 1 and abs(wav.size - 16000) <= 1
    # the mixdown is the channel mean (of the 16-bit samples the file holds)
    native, native_rate = load_audio(path)
    assert native_rate == 8000
    np.testing.assert_allclose(native, stereo.mean(axis=1), rtol=0, atol=2 / 32768)
    # the resampled signal matches an independent polyphase resampler (scipy) to 1 % RMS;
    # linear interpolation is 3.5 % off, a skipped or wrong-ratio resampling far more
    ref = resample_poly(native.astype(np.float64), 2, 1)
    assert wav.size == ref.size
    rel = np.sqrt(np.mean((wav - ref) ** 2) / np.mean(ref**2))
    assert rel < 0.01, rel


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("corrupt.wav", "unreadable"),
        ("empty.wav", "empty"),
        ("nan.wav", "NaN"),
        ("short.wav", "too short"),
    ],
)
def test_bad_files_raise_naming_the_file(audio_folder: Path, name: str, reason: str) -> None:
    path = next(audio_folder.rglob(name))
    with pytest.raises(AudioError) as err:
        load_audio(path, 16000, min_duration=0.5)
    assert str(path) in str(err.value) and reason in str(err.value)


def test_splits_are_speaker_disjoint_and_seeded() -> None:
    speakers = [f"s{i}" for i in range(50)]
    a = assign_splits(speakers, 0.2, 0.2, seed=1)
    assert a == assign_splits(list(reversed(speakers)), 0.2, 0.2, seed=1)
    assert a != assign_splits(speakers, 0.2, 0.2, seed=2)
    counts = pd.Series(a).value_counts()
    assert counts["eval"] == 10 and counts["calibration"] == 10 and counts["train"] == 30
    with pytest.raises(ValueError, match="> 1"):
        assign_splits(speakers, 0.6, 0.6, 0)


def test_trials_are_deterministic_balanced_and_hashed(tmp_path: Path) -> None:
    m = pd.DataFrame(
        {"utt_id": [f"u{i:02d}" for i in range(24)], "speaker": [f"s{i // 4}" for i in range(24)]}
    )
    t1, t2 = (
        make_trials(m, 2, 2, seed=3),
        make_trials(m.sample(frac=1, random_state=0), 2, 2, seed=3),
    )
    pd.testing.assert_frame_equal(t1, t2)
    spk = dict(zip(m.utt_id, m.speaker, strict=True))
    same = t1.enroll.map(spk) == t1.test.map(spk)
    assert (same == (t1.label == 1)).all() and (t1.enroll != t1.test).all()
    assert t1.label.sum() > 0 and (t1.label == 0).sum() > 0
    digest = write_trials(t1, tmp_path / "t.csv")
    back, digest2 = read_trials(tmp_path / "t.csv")
    assert digest == digest2 and (tmp_path / "t.csv.sha256").read_text().startswith(digest)
    pd.testing.assert_frame_equal(back, t1)


def test_prepare_folder_quarantines_bad_files_and_goes_on(
    audio_folder: Path, tmp_path: Path
) -> None:
    summary = prepare(data_cfg(tmp_path, root=str(audio_folder)), progress=False)
    out = tmp_path / "prepared"
    manifest = pd.read_csv(out / "manifest.csv")
    quarantine = pd.read_csv(out / "quarantine.csv")
    assert summary["n_utterances"] == 18 and summary["n_quarantined"] == 4
    reasons = dict(zip(quarantine.path.map(lambda p: Path(p).name), quarantine.reason, strict=True))
    assert "unreadable" in reasons["corrupt.wav"] and "empty" in reasons["empty.wav"]
    assert "NaN" in reasons["nan.wav"] and "too short" in reasons["short.wav"]
    assert set(manifest.sample_rate) == {8000, 16000, 22050}
    by_split = manifest.groupby("split").speaker.apply(set)
    assert not (by_split["train"] & by_split["eval"]) and not (
        by_split["calibration"] & by_split["eval"]
    )
    for col in ("gender", "age_band", "accent", "channel"):
        assert col in manifest.columns


def test_voxceleb_layout_and_official_trials(tmp_path: Path) -> None:
    root = tmp_path / "vox"
    for s in range(4):
        for v in range(2):
            write_wav(
                root / "wav" / f"id1000{s}" / f"vid{v}" / "00001.wav",
                tone(1.0, 16000, 100 + 30 * s, v),
            )
    (root / "vox1_meta.csv").write_text(
        "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
        + "".join(f"id1000{s}\tname{s}\t{'mf'[s % 2]}\tUSA\ttest\n" for s in range(4))
    )
    lines = "1 id10000/vid0/00001.wav id10000/vid1/00001.wav\n0 id10000/vid0/00001.wav id10001/vid0/00001.wav\n"
    (root / "trials.txt").write_text(lines)
    df = corpora.voxceleb_corpus(root, FileListing())
    assert len(df) == 8 and set(df.gender) == {"m", "f"} and (df.accent == "USA").all()
    summary = prepare(
        data_cfg(
            tmp_path, corpus="voxceleb", root=str(root), official_trials=str(root / "trials.txt")
        ),
        progress=False,
    )
    trials, _ = read_trials(tmp_path / "prepared" / "trials_eval.csv")
    assert trials.label.tolist() == [1, 0] and summary["trial_hashes"]["eval"]
    (root / "bad.txt").write_text("2 a b\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        corpora.read_voxceleb_trials(root / "bad.txt")


@pytest.mark.realdata
def test_librispeech_adapter_on_real_layout() -> None:
    root = shared("librispeech", "test-other")
    df = corpora.librispeech_corpus(root, FileListing())
    assert df.speaker.nunique() == 10 and len(df) == 100
    assert set(df.gender) == {"m", "f"}


def test_unknown_corpus_and_missing_root_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data.corpus='nope'"):
        corpora.list_corpus("nope", tmp_path, FileListing())
    with pytest.raises(FileNotFoundError, match="directory not found"):
        corpora.list_corpus("folder", tmp_path / "missing", FileListing())


def test_segments_and_a_separate_eval_corpus(audio_folder: Path, tmp_path: Path) -> None:
    long_root = tmp_path / "long"
    for s in range(6):
        write_wav(long_root / f"L{s}" / "only.wav", tone(5.0, 16000, 100 + 25 * s, seed=s))
    cfg = data_cfg(
        tmp_path,
        root=str(long_root),
        segment_seconds=2.0,
        eval_fraction=0.0,
        eval_corpus={"corpus": "folder", "root": str(audio_folder)},
    )
    prepare(cfg, progress=False)
    m = pd.read_csv(tmp_path / "prepared" / "manifest.csv")
    seg = m[m.speaker.str.startswith("L")]
    assert len(seg) == 12 and set(seg.split) <= {"train", "calibration"}
    assert (seg.end - seg.start).round(6).eq(2.0).all()
    assert set(m.loc[m.split == "eval", "speaker"]) == {f"spk{i}" for i in range(6)}
    row = seg.iloc[1]
    wav, _ = load_audio(row.path, 16000, start=row.start, end=row.end)
    full, _ = load_audio(row.path, 16000)
    i = int(row.start * 16000)
    np.testing.assert_array_equal(wav, full[i : i + wav.size])
    trials, _ = read_trials(tmp_path / "prepared" / "trials_calibration.csv")
    assert trials.label.sum() > 0  # segments of one recording give target trials


def test_eval_corpus_with_held_out_readers_of_the_main_corpus(
    audio_folder: Path, tmp_path: Path
) -> None:
    """`eval_corpus.main_fraction` adds readers of the main corpus to the eval split: all their
    segments, none in train or calibration; the eval trials pair them with each other."""
    long_root = tmp_path / "long"
    for s in range(8):
        write_wav(long_root / f"L{s}" / "only.wav", tone(6.0, 16000, 100 + 25 * s, seed=s))
    corpus = {"corpus": "folder", "root": str(audio_folder)}
    base = dict(root=str(long_root), segment_seconds=2.0, calibration_fraction=0.25)
    cfg = data_cfg(tmp_path, **base, eval_corpus={**corpus, "main_fraction": 0.25})
    prepare(cfg, progress=False)
    m = pd.read_csv(tmp_path / "prepared" / "manifest.csv")
    held = set(m.loc[(m.split == "eval") & m.speaker.str.startswith("L"), "speaker"])
    assert len(held) == 2
    assert set(m.loc[m.speaker.isin(held), "split"]) == {"eval"}
    assert len(m[m.speaker.isin(held)]) == 6  # every 2 s segment of both 6 s recordings
    assert set(m.loc[m.split == "eval", "speaker"]) == held | {f"spk{i}" for i in range(6)}
    assert m.loc[m.split == "calibration", "speaker"].nunique() == 2
    trials, _ = read_trials(tmp_path / "prepared" / "trials_eval.csv")
    spk = m.set_index("utt_id")["speaker"]
    pairs = trials.assign(e=trials.enroll.map(spk), t=trials.test.map(spk))
    assert (pairs.e.isin(held) & (pairs.label == 1)).any()
    # absent (a hand-built eval_corpus) or 0: the main corpus gives eval no reader, whatever
    # data.eval_fraction says
    prepare(data_cfg(tmp_path, **base, eval_fraction=0.5, eval_corpus=corpus), progress=False)
    m = pd.read_csv(tmp_path / "prepared" / "manifest.csv")
    assert set(m.loc[m.speaker.str.startswith("L"), "split"]) <= {"train", "calibration"}
