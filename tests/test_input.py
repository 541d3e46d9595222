"""Inputs are refused before they become decisions: VAD, quality checks, the lister's quarantine.

Each "Why" bullet of the security issue that concerns inputs is a test here: short snippets
(0.05 / 0.1 / 0.5 s) refused by `embed` and by scoring with a named reason, nothing NaN
written, a directory named `x.wav`, a dangling link, an unsupported format and duplicate ids
quarantined by `prepare` (which goes on), a clipped file refused, and one short file not
failing an `embed ... log_dir=` batch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from speakerops import cli
from speakerops.core.config import compose
from speakerops.core.keys import open_keyring
from speakerops.data.audio import load_audio
from speakerops.data.listing import FileListing
from speakerops.data.prepare import prepare
from speakerops.data.quality import (
    QualityError,
    QualitySettings,
    check_quality,
    measure_quality,
)
from speakerops.data.resample import resample
from speakerops.data.vad import detect_speech
from speakerops.eval.embed import quarantine_path, read_embeddings
from speakerops.eval.scoring import ScoreNormalization, Scorer, verify_audio
from speakerops.models.ecapa import ECAPATDNN
from speakerops.models.encoder import SpeakerEncoder
from speakerops.models.features import FeatureConfig

from .conftest import shared, write_wav

SNIPPETS = (0.05, 0.1, 0.5)


@pytest.fixture(scope="module")
def quality() -> QualitySettings:
    return QualitySettings.from_config(compose().quality)


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    """A real 16 kHz LibriSpeech utterance (8.1 s)."""
    path = shared("librispeech", "test-other", "1688", "1688-142285-0006.flac")
    return load_audio(path)


def small_encoder() -> SpeakerEncoder:
    torch.manual_seed(0)
    cfg = {
        "_target_": "speakerops.models.ecapa.ECAPATDNN",
        "n_mels": 80,
        "channels": 32,
        "embedding_dim": 192,
        "attention_channels": 16,
    }
    return SpeakerEncoder(ECAPATDNN(80, 32, 192, attention_channels=16), FeatureConfig(), cfg)


def test_vad_finds_real_speech_at_any_rate_and_none_in_noise(speech) -> None:
    wav, rate = speech
    seg = detect_speech(wav, rate, QualitySettings.from_config(compose().quality).vad)
    # read speech: most of the recording, in several segments, inside the recording
    assert 0.6 * seg.duration_s < seg.speech_s < seg.duration_s
    assert len(seg.segments) >= 2 and all(0 <= a < b <= seg.duration_s for a, b in seg.segments)
    vad = QualitySettings.from_config(compose().quality).vad
    for other in (8000, 44100):
        resampled = detect_speech(resample(wav, rate, other), other, vad)
        assert abs(resampled.speech_s - seg.speech_s) < 0.15 * seg.speech_s, other
    assert detect_speech(np.zeros(rate * 2, np.float32), rate, vad).speech_s == 0.0
    for name in ("white_noise.wav", "running_tap.wav", "exercise_bike.wav"):
        noise, nrate = load_audio(shared("noise", name))
        assert detect_speech(noise[: 5 * nrate], nrate, vad).speech_s < 0.3, name


@pytest.mark.parametrize("seconds", SNIPPETS)
def test_short_snippets_are_refused_naming_check_value_and_limit(
    speech, quality, seconds: float
) -> None:
    wav, rate = speech
    snippet = wav[3 * rate : 3 * rate + int(seconds * rate)]  # from inside the speech
    with pytest.raises(QualityError, match="too little speech") as err:
        check_quality(snippet, rate, quality, "snippet.wav")
    assert err.value.check == "speech" and err.value.limit == quality.min_speech_s == 1.0
    assert err.value.value <= seconds
    assert "snippet.wav" in str(err.value) and "quality.min_speech_s=1" in str(err.value)


def test_clipping_and_dc_offset_are_refused(speech, quality) -> None:
    wav, rate = speech
    assert measure_quality(wav, rate, quality).ok
    clipped = measure_quality(np.clip(wav * 30, -1, 1), rate, quality, "loud.wav")
    assert [r[0] for r in clipped.refusals] == ["clipping"]
    assert (
        clipped.clipped_ratio > quality.max_clipped_ratio and "loud.wav" in clipped.refusals[0][3]
    )
    shifted = measure_quality(wav * 0.5 + 0.6, rate, quality, "dc.wav")
    assert "dc_offset" in [r[0] for r in shifted.refusals]
    assert shifted.dc_offset == pytest.approx(0.6 + 0.5 * float(np.mean(wav)), abs=1e-4)


@pytest.mark.parametrize("seconds", SNIPPETS)
def test_scoring_refuses_short_audio_before_any_decision(speech, quality, seconds) -> None:
    wav, rate = speech
    encoder = small_encoder()
    scorer = Scorer(ScoreNormalization("cosine"))
    with pytest.raises(QualityError, match="test: too little speech"):
        verify_audio(
            encoder,
            scorer,
            (wav, rate),
            (wav[3 * rate : 3 * rate + int(seconds * rate)], rate),
            quality,
        )


def _bad_folder(root: Path, speech: tuple[np.ndarray, int]) -> Path:
    """root/<speaker>/ with good files plus every kind of entry the lister must report."""
    wav, rate = speech
    for s in range(4):
        for u in range(3):
            write_wav(
                root / f"spk{s}" / f"u{u}.wav", np.roll(wav, 4000 * (s * 3 + u))[: 3 * rate], rate
            )
    (root / "spk0" / "x.wav").mkdir()  # a directory named like audio
    os.symlink(root / "gone.wav", root / "spk1" / "link.wav")  # dangling
    (root / "spk2" / "song.m4a").write_bytes(b"\x00" * 64)  # unsupported format
    write_wav(root / "spk3" / "dup.wav", wav[: 2 * rate], rate)
    write_wav(root / "spk3" / "dup.ogg", wav[: 2 * rate], rate, fmt="OGG")  # same utt_id
    write_wav(root / "spk2" / "clipped.wav", np.clip(wav[: 3 * rate] * 30, -1, 1), rate)
    return root


def test_prepare_quarantines_every_skipped_entry_and_goes_on(speech, tmp_path: Path) -> None:
    root = _bad_folder(tmp_path / "corpus", speech)
    data = compose(
        [
            "data=folder",
            f"data.root={root}",
            f"data.prepared_dir={tmp_path / 'prepared'}",
            "data.calibration_fraction=0.25",
            "data.eval_fraction=0.25",
        ]
    ).data
    summary = prepare(data, progress=False)
    q = pd.read_csv(tmp_path / "prepared" / "quarantine.csv")
    reasons = dict(zip(q.path.map(lambda p: Path(p).name), q.reason, strict=True))
    assert "a directory" in reasons["x.wav"]
    assert "dangling symbolic link" in reasons["link.wav"]
    assert "unsupported audio format '.m4a'" in reasons["song.m4a"]
    assert "duplicate utt_id 'spk3-dup'" in reasons["dup.wav"]
    assert "duplicate utt_id 'spk3-dup'" in reasons["dup.ogg"]
    assert (
        "clipped" in reasons["clipped.wav"]
        and "quality.max_clipped_ratio" in reasons["clipped.wav"]
    )
    assert summary["n_utterances"] == 12 and summary["n_quarantined"] == len(q) == 6


def test_lister_reports_what_it_skips(tmp_path: Path) -> None:
    (tmp_path / "a.wav").mkdir()
    (tmp_path / "notes.txt").write_text("a sidecar, not media: not reported")
    listing = FileListing([".wav"])
    assert listing.files(tmp_path) == []
    assert [Path(s["path"]).name for s in listing.skipped] == ["a.wav"]
    with pytest.raises(ValueError, match="audio.extensions"):
        FileListing(["wav"])


def test_embed_refuses_short_and_clipped_files_and_the_batch_goes_on(
    speech, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """`embed ... log_dir=`: short snippets, a clipped file and lister skips are quarantined
    with their reasons; the good files are embedded and logged; nothing NaN is written."""
    wav, rate = speech
    folder = tmp_path / "incoming"
    write_wav(folder / "good.wav", wav, rate)
    write_wav(folder / "good8k.flac", resample(wav, rate, 8000), 8000)
    for s in SNIPPETS:
        write_wav(folder / f"short{s}.wav", wav[3 * rate : 3 * rate + int(s * rate)], rate)
    write_wav(folder / "clipped.wav", np.clip(wav * 30, -1, 1), rate)
    (folder / "x.wav").mkdir()
    model = small_encoder().save(tmp_path / "encoder.safetensors")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPEAKEROPS_DATA_KEY", "ab" * 32)
    monkeypatch.setenv("SPEAKEROPS_PSEUDONYM_KEY", "a test key of at least 16 bytes")
    monkeypatch.setenv("SPEAKEROPS_KEYRING", str(tmp_path / "keyring.json"))
    monkeypatch.setenv("SPEAKEROPS_CONF", str(Path(__file__).resolve().parents[1] / "conf"))
    out = tmp_path / "emb.parquet"
    rc = cli.main(
        [
            "embed",
            f"model={model}",
            f"input={folder}",
            f"output={out}",
            f"log_dir={tmp_path / 'log'}",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    df = read_embeddings(out.with_name(out.name + ".enc"), open_keyring(tmp_path))
    assert not out.exists()  # written encrypted (embed.plaintext=false)
    assert sorted(df.utt_id) == ["good.wav", "good8k.flac"]
    assert np.all(np.isfinite(np.stack(df.embedding.to_list())))
    q = pd.read_csv(quarantine_path(out))
    reasons = dict(zip(q.path.map(lambda p: Path(p).name), q.reason, strict=True))
    for s in SNIPPETS:
        assert "too little speech" in reasons[f"short{s}.wav"], reasons
    assert "clipped" in reasons["clipped.wav"] and "a directory" in reasons["x.wav"]
    assert len(q) == 5 and "5 file(s) could not be embedded" in err
    from speakerops.drift.log import read_production_log

    log = read_production_log(tmp_path / "log", keyring=open_keyring(tmp_path))
    assert len(log) == 2 and sorted(log["sample_rate"]) == [8000, 16000]
    assert np.all(np.isfinite(log["snr_db"].to_numpy(float)))


def test_embed_quality_overrides_apply(speech, tmp_path: Path, monkeypatch, capsys) -> None:
    """`quality.<key>=` on the command line reaches the checks (here: a 0.2 s floor)."""
    wav, rate = speech
    folder = tmp_path / "in"
    write_wav(folder / "half.wav", wav[3 * rate : int(3.6 * rate)], rate)
    model = small_encoder().save(tmp_path / "encoder.safetensors")
    monkeypatch.setenv("SPEAKEROPS_CONF", str(Path(__file__).resolve().parents[1] / "conf"))
    out = tmp_path / "e.npz"
    assert cli.main(["embed", f"model={model}", f"input={folder}", f"output={out}"]) == 2
    assert "too little speech" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "embed",
                f"model={model}",
                f"input={folder}",
                f"output={out}",
                "quality.min_speech_s=0.2",
                "embed.plaintext=true",
            ]
        )
        == 0
    )
    with np.load(out) as z:
        assert z["utt_id"].tolist() == ["half.wav"] and np.all(np.isfinite(z["embedding"]))


def test_evaluation_refuses_or_reports_trial_audio_with_too_little_speech(
    speech, quality, tmp_path: Path
) -> None:
    """`quality.evaluation: refuse` stops before scoring, naming the utterance and the reason;
    `report` lists it and embeds it exactly as an unchecked run would (the figures stay)."""
    from speakerops.eval.evaluate import embed_split

    wav, rate = speech
    write_wav(tmp_path / "long.wav", wav, rate)
    write_wav(tmp_path / "short.wav", wav[3 * rate : int(3.5 * rate)], rate)
    manifest = pd.DataFrame(
        {
            "utt_id": ["u-long", "u-short"],
            "path": [str(tmp_path / n) for n in ("long.wav", "short.wav")],
        }
    )
    encoder = small_encoder().eval()
    ids = {"u-long", "u-short"}
    with pytest.raises(ValueError, match="1 of 2 trial utterances .* too little speech"):
        embed_split(encoder, manifest, ids, "eval split", False, quality)
    refused: list[tuple[str, str]] = []
    batch = embed_split(encoder, manifest, ids, "eval split", False, quality, refused)
    assert [u for u, _ in refused] == ["u-short"] and "too little speech" in refused[0][1]
    plain = embed_split(encoder, manifest, ids, "eval split", False)
    assert batch.utt_ids == plain.utt_ids == ["u-long", "u-short"]
    np.testing.assert_array_equal(batch.embeddings, plain.embeddings)
    assert batch.durations == plain.durations and batch.sample_rates == plain.sample_rates
