"""Chaos cases on the inputs: a batch of bad files through `prepare` and the `embed` listing,
hypothesis-generated audio through the quality checks and the encoder, generated score arrays
through the metrics (bench/chaos.py runs them)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from chaos_kit import case, outcome, refused

SR = 16000
BAD_KINDS = (
    "directory named x.wav",
    "dangling link",
    "unsupported format (.m4a)",
    "garbage .mp3",
    "empty file",
    "10 samples (a NaN embedding once)",
    "NaN samples",
    "corrupt header",
    "clipped",
    "duplicate id (x.wav beside x.flac)",
)


def _speech(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110 + 15 * seed % 90
    wav = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8)) * (0.6 + 0.4 * np.sin(3 * t))
    return (0.25 * wav / np.abs(wav).max() + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _bad(folder: Path, i: int) -> list[Path]:
    """One bad entry of kind ``i % len(BAD_KINDS)`` in ``folder``; the paths it made."""
    import soundfile as sf

    kind, stem = i % len(BAD_KINDS), folder / f"bad{i:05d}"
    if kind == 0:
        p = stem.with_suffix(".wav")
        p.mkdir()
    elif kind == 1:
        p = stem.with_suffix(".wav")
        os.symlink(folder / "nowhere.wav", p)
    elif kind == 2:
        p = stem.with_suffix(".m4a")
        p.write_bytes(b"\x00\x00\x00\x18ftypM4A ")
    elif kind == 3:
        p = stem.with_suffix(".mp3")
        p.write_bytes(b"ID3\x03" + bytes(60))
    elif kind == 4:
        p = stem.with_suffix(".wav")
        p.write_bytes(b"")
    elif kind == 5:
        p = stem.with_suffix(".wav")
        sf.write(str(p), _speech(1.0, i)[:10], SR)
    elif kind == 6:
        p = stem.with_suffix(".wav")
        sf.write(str(p), np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
    elif kind == 7:
        p = stem.with_suffix(".wav")
        p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    elif kind == 8:
        p = stem.with_suffix(".wav")
        sf.write(str(p), np.sign(_speech(2.0, i)), SR)
    else:
        a, b = stem.with_suffix(".wav"), stem.with_suffix(".flac")
        sf.write(str(a), _speech(1.5, i), SR)
        sf.write(str(b), _speech(1.5, i), SR)
        return [a, b]
    return [p]


@case("ingest: a batch of bad files (dirs named x.wav, links, formats, empty, NaN, duplicates)")
def bad_batch(root: Path, quick: bool) -> dict:
    """Every bad entry is quarantined with its reason, none is lost, the batch completes: the
    real `prepare` (folder corpus) and the listing `embed` uses."""
    import pandas as pd
    import soundfile as sf

    from speakerops.core.config import compose
    from speakerops.data.listing import FileListing, list_inputs
    from speakerops.data.prepare import prepare

    out, n_bad = outcome(), 300 if quick else 10_000
    corpus = root / "corpus"
    good, bad = [], []
    for s in range(12):
        folder = corpus / f"spk{s:02d}"
        folder.mkdir(parents=True)
        for u in range(3):
            p = folder / f"utt{u}.wav"
            sf.write(str(p), _speech(2.0, 100 * s + u), SR)
            good.append(p)
    for i in range(n_bad):
        bad += _bad(corpus / f"spk{i % 12:02d}", i)
    cfg = compose(["data=folder", f"data.root={corpus}", f"data.prepared_dir={root / 'prepared'}",
                   "data.workers=1", "data.trials.targets_per_utt=1",
                   "data.trials.nontargets_per_utt=2"])  # fmt: skip
    try:
        prepare(cfg.data, progress=False)
    except Exception as exc:  # noqa: BLE001 - a batch that fails is a finding
        out["tried"] += len(bad)
        out["wrong"] += len(bad)
        out["reasons"][f"CRASH prepare: {exc}"[:90]] += 1
        return out
    manifest = set(pd.read_csv(root / "prepared" / "manifest.csv")["path"])
    quarantine = pd.read_csv(root / "prepared" / "quarantine.csv")
    why = dict(zip(quarantine["path"], quarantine["reason"], strict=True))
    listing = FileListing()
    _, listed, _ = list_inputs(corpus, listing)  # the embed stage's listing of a folder
    skipped = {s["path"]: s["reason"] for s in listing.skipped}
    for p in bad:
        out["tried"] += 1
        if str(p) in manifest:
            out["wrong"] += 1  # a bad file became training or evaluation data
        elif str(p) in why and str(why[str(p)]).strip():
            refused(out, str(why[str(p)]))
        else:
            out["lost"] += 1  # neither used nor quarantined: dropped silently
        if str(p) not in skipped and str(p) not in listed:
            out["lost"] += 1  # the embed listing neither lists nor reports it
    out["lost"] += sum(str(p) not in manifest for p in good)
    return out


@case("audio: hypothesis-generated waveforms through the input checks and the encoder")
def generated_audio(root: Path, quick: bool) -> dict:
    """Accepted only with enough net speech, finite samples and a finite embedding; everything
    else refused with a named reason (AudioError / QualityError)."""
    import torch
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays

    from speakerops.core.config import compose
    from speakerops.data.audio import AudioError
    from speakerops.data.quality import QualitySettings, check_quality
    from speakerops.data.synthetic import make_speakers, synthesize_utterance
    from speakerops.models.encoder import SpeakerEncoder
    from speakerops.models.features import FeatureConfig
    from speakerops.models.zoo import build_backbone

    out = outcome()
    quality = QualitySettings.from_config(compose().quality)
    torch.manual_seed(0)
    spec = {"arch": "ecapa_tdnn", "n_mels": 80, "channels": 16, "embedding_dim": 16,
            "attention_channels": 8, "res2_scale": 4}  # fmt: skip
    encoder = SpeakerEncoder(build_backbone(spec), FeatureConfig(), spec).eval()
    speech = synthesize_utterance(make_speakers(1, 0)[0], 0, 3.0, SR, channel="studio")
    samples = st.floats(-4.0, 4.0, width=32) | st.sampled_from([np.nan, np.inf, -np.inf, 1.0])

    def cut(seconds: float, gain: float, dc: float, nan_at: int | None) -> np.ndarray:
        """Real-looking speech, cut short, scaled (clipping), shifted (DC), a NaN in it."""
        wav = np.clip(speech[: int(seconds * SR)] * gain + dc, -1, 1).astype(np.float32)
        if nan_at is not None and wav.size:
            wav[nan_at % wav.size] = np.nan
        return wav

    waves = st.one_of(
        arrays(np.float32, st.integers(0, 2400), elements=samples),  # noise under 0.15 s
        st.builds(
            cut,
            st.floats(0.02, 3.0),
            st.floats(0.0, 6.0),
            st.floats(-0.7, 0.7),
            st.none() | st.none() | st.integers(0, 10**6),
        ),  # fmt: skip
    )

    @settings(max_examples=50 if quick else 400, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(waves)
    def check(wav: np.ndarray) -> None:
        out["tried"] += 1
        try:
            report = check_quality(wav, SR, quality, "generated")
            emb = encoder.embed(wav, SR, "generated")
        except AudioError as exc:  # QualityError is one
            refused(out, exc)
            return
        ok = (
            bool(np.all(np.isfinite(wav)))
            and report.speech_s >= quality.min_speech_s
            and bool(np.all(np.isfinite(emb)))
        )
        out["survived" if ok else "wrong"] += 1

    check()
    return out


@case("metrics: generated score arrays (hypothesis)")
def generated_scores(root: Path, quick: bool) -> dict:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from speakerops.eval import metrics

    out = outcome()
    finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)

    @settings(max_examples=100 if quick else 600, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.lists(finite, min_size=1, max_size=60), st.lists(finite, min_size=1, max_size=60))
    def check(tar: list[float], non: list[float]) -> None:
        out["tried"] += 1
        s = np.array(tar + non)
        y = np.r_[np.ones(len(tar), bool), np.zeros(len(non), bool)]
        e = metrics.eer(s, y)
        d = metrics.min_dcf(s, y, 0.01)
        ok = 0.0 <= e <= 0.5 and 0.0 <= d <= 1.0 + 1e-12
        out["survived" if ok else "wrong"] += 1

    check()
    out["tried"] += 1  # NaN scores are refused with the index
    try:
        metrics.eer(np.array([np.nan, 1.0]), np.array([True, False]))
        out["wrong"] += 1
    except ValueError as exc:
        refused(out, exc)
    out["tried"] += 1  # infinite scores (PAV LLRs of separated trials) are legal and ordered
    e = metrics.eer(np.array([np.inf, 0.0, -np.inf]), np.array([True, True, False]))
    out["survived" if 0.0 <= e <= 0.5 else "wrong"] += 1
    return out
