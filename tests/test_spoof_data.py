"""Spoofed speech made here (`speakerops spoof prepare`): TTS engines, vocoder resynthesis and
replay of a micro synthetic corpus, attack-disjoint splits, SASV trials, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.signal
import soundfile as sf
import torch

from speakerops.cli import main
from speakerops.core.config import compose
from speakerops.core.jsonio import sha256_file
from speakerops.data.spoof.prepare import spoof_prepare
from speakerops.data.spoof.protocol import check_splits, plan_jobs
from speakerops.data.spoof.vocoder import world_resynthesis

from .conftest import shared

TINY = [
    "spoof.speakers.train=3",
    "spoof.speakers.calibration=2",
    "spoof.speakers.eval=2",
    "spoof.bonafide_per_speaker=2",
    "spoof.nontargets_per_enroll=2",
    "spoof.max_seconds=2.0",
]


def spoof_overrides(manifest: Path) -> list[str]:
    """The tiny spoof config on a prepared manifest, with the real impulse responses."""
    return [
        *TINY,
        f"spoof.bonafide_manifest={manifest}",
        f"spoof.attacks.A06.rir_dir={shared('rir')}",
    ]


@pytest.fixture
def corpus(micro_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    return spoof_overrides(micro_manifest)


def _files(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): sha256_file(p) for p in sorted(out.rglob("*.wav"))}


def test_spoof_prepare_is_attack_disjoint_and_deterministic(
    corpus: list[str], tmp_path: Path
) -> None:
    assert main(["spoof", "prepare", *corpus, "spoof.out_dir=a", "spoof.workers=2"]) == 0
    cfg = compose([*corpus, "spoof.out_dir=b", "spoof.workers=1"])
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # in process at another thread count than the workers (CI saw it)
    try:
        summary = spoof_prepare(cfg.spoof)
        assert torch.get_num_threads() == 2  # the caller's thread count is put back
    finally:
        torch.set_num_threads(threads)
    a, b = tmp_path / "a", tmp_path / "b"
    assert json.loads((a / "spoof.json").read_text()) == summary  # whatever the worker count
    assert _files(a) == _files(b) and len(_files(a)) == summary["n_items"]
    for name in ("sasv_trials_eval.csv", "sasv_trials_calibration.csv", "cm_train.csv"):
        digest = (a / f"{name}.sha256").read_text().split()[0]
        assert (
            digest == sha256_file(a / name) == sha256_file(b / name) == summary["hashes"][name[:-4]]
        )
    assert summary["n_quarantined"] == 0

    # attacks: ids on every file, the eval attacks unseen (a TTS engine and the replay)
    m = pd.read_csv(a / "manifest.csv")
    table = pd.read_csv(a / "attacks.csv").set_index("attack")
    assert summary["unseen_attacks"] == ["A03", "A05", "A06"]
    assert set(table.loc[summary["unseen_attacks"], "kind"]) == {"tts", "vocoder", "replay"}
    seen = set(m.loc[m["split"] != "eval", "attack"])
    assert seen == {"bonafide", "A01", "A02", "A04", "A07"}  # two vocoders seen: GL and WORLD
    assert not seen & set(summary["unseen_attacks"])
    assert set(m.loc[m["split"] == "eval", "attack"]) == {"bonafide", "A03", "A05", "A06"}
    assert ((m["label"] == "spoof") == (m["attack"] != "bonafide")).all()
    assert (
        m.groupby("split")["speaker"]
        .unique()
        .map(set)
        .pipe(lambda s: not (s["train"] & s["eval"]) and not (s["calibration"] & s["eval"]))
    )
    replayed = m[m["attack"] == "A06"]["detail"].map(json.loads)
    assert set(replayed.map(lambda d: d["rir"])) <= {p.name for p in shared("rir").iterdir()}
    for row in m.itertuples():
        wav, rate = sf.read(row.path)
        assert rate == 16000 and 0.3 < wav.size / rate <= 2.0 and np.abs(wav).max() > 0.05, (
            row.utt_id
        )
    tts = m[m["kind"] == "tts"]
    assert (tts["text"].str.len() > 10).all() and (tts["source_utt"].isna()).all()
    voc = m[m["kind"].isin(["vocoder", "replay"])]
    own = m.set_index("utt_id")
    src = pd.read_csv(cfg.spoof.bonafide_manifest).set_index("utt_id")
    assert (src.loc[voc["source_utt"], "speaker"].to_numpy() == voc["speaker"].to_numpy()).all()

    # SASV trials: the enrolment is bona fide, each spoof claims the enrolled speaker
    t = pd.read_csv(a / "sasv_trials_eval.csv")
    assert set(t["kind"]) == {"target", "nontarget", "spoof"}
    assert (own.loc[t["enroll"], "attack"] == "bonafide").all()
    same = own.loc[t["enroll"], "speaker"].to_numpy() == own.loc[t["test"], "speaker"].to_numpy()
    assert (same == t["kind"].isin(["target", "spoof"]).to_numpy()).all()
    assert ((t["label"] == 1) == (t["kind"] == "target")).all()
    assert set(t.loc[t["kind"] == "spoof", "attack"]) == {"A03", "A05", "A06"}
    # and one spoof never has its enrolment recording as source
    spoofs = t[t["kind"] == "spoof"].merge(own[["source_utt"]], left_on="test", right_index=True)
    enrol_src = own.loc[spoofs["enroll"], "source_utt"].to_numpy()
    assert (spoofs["source_utt"].to_numpy() != enrol_src).all()

    # the deployment's own bona fide audio: eval speakers' recordings no eval item uses
    dep = m[m["split"] == "deployment"]
    ev_items = m[m["split"] == "eval"]
    assert len(dep) and (dep["attack"] == "bonafide").all() and (dep["label"] == "bonafide").all()
    assert set(dep["speaker"]) <= set(ev_items["speaker"])
    assert not set(dep["source_utt"]) & set(ev_items["source_utt"].dropna())
    dep_list = pd.read_csv(a / "cm_deployment.csv")
    assert set(dep_list["utt_id"]) == set(dep["utt_id"]) and (dep_list["label"] == 1).all()
    assert summary["hashes"]["cm_deployment"] == sha256_file(a / "cm_deployment.csv")
    assert summary["counts"]["deployment"] == {"bonafide": len(dep)}
    src_manifest = pd.read_csv(cfg.spoof.bonafide_manifest)
    tts_only = compose([*corpus, "spoof.splits.eval=[A03]"]).spoof  # no eval item has a source
    per = pd.Series([j["speaker"] for j in plan_jobs(src_manifest, tts_only, check_splits(tts_only))
                     if j["split"] == "deployment"]).value_counts()  # fmt: skip
    recs = src_manifest[src_manifest["split"] == "eval"].groupby("speaker").size()
    assert len(per) == len(recs) and (per == 1).all() and (recs == 3).all()  # 3 - 2 bona fide
    none = compose([*corpus, "spoof.deployment_per_speaker=0"]).spoof
    assert not [j for j in plan_jobs(src_manifest, none, check_splits(none)) if j["split"] == "deployment"]  # fmt: skip

    jobs = plan_jobs(pd.read_csv(cfg.spoof.bonafide_manifest), cfg.spoof, check_splits(cfg.spoof))
    other = compose([*corpus, "spoof.seed=1"]).spoof
    changed = plan_jobs(pd.read_csv(cfg.spoof.bonafide_manifest), other, check_splits(other))
    assert [j["seed"] for j in jobs] != [j["seed"] for j in changed]  # another seed, other items


def test_bad_sources_are_quarantined_and_bad_config_refused(
    corpus: list[str], tmp_path: Path
) -> None:
    cfg = compose([*corpus, "spoof.workers=1"])
    m = pd.read_csv(cfg.spoof.bonafide_manifest)
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    m.loc[m["split"] == "eval", "path"] = str(bad)  # every eval recording unreadable
    m.to_csv(tmp_path / "manifest.csv", index=False)
    summary = spoof_prepare(compose([*corpus, f"spoof.bonafide_manifest={tmp_path / 'manifest.csv'}",
                                     "spoof.out_dir=q", "spoof.workers=1"]).spoof)  # fmt: skip
    q = pd.read_csv(tmp_path / "q" / "quarantine.csv")
    assert (
        len(q) == summary["n_quarantined"] > 0
        and q["reason"].str.contains("corrupt.wav: unreadable").all()
    )
    assert set(q["attack"]) == {"bonafide", "A05", "A06"}  # the eval TTS needs no recording
    assert summary["counts"]["train"]["bonafide"] == 6 and summary["counts"]["eval"] == {"A03": 2}

    with pytest.raises(ValueError, match=r"spoof.splits.eval: attacks \['A01'\] also appear"):
        check_splits(compose([*corpus, "spoof.splits.eval=[A01,A03]"]).spoof)
    with pytest.raises(FileNotFoundError, match="rir_dir=/nowhere"):
        spoof_prepare(compose([*corpus, "spoof.attacks.A06.rir_dir=/nowhere"]).spoof)


def test_world_resynthesis_keeps_pitch_and_envelope_and_is_deterministic() -> None:
    """Attack A07: WORLD analysis + synthesis of a voiced signal (150 Hz pulses through two
    formant resonances): same length and peak, the same F0 and spectral envelope, not the same
    samples, and the same bytes on every call."""
    sr, f0 = 16000, 150.0
    exc = np.zeros(sr)
    exc[:: int(sr / f0)] = 1.0
    y = exc
    for freq, bw in ((700.0, 80.0), (1800.0, 120.0)):  # formants
        r = np.exp(-np.pi * bw / sr)
        y = scipy.signal.lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * freq / sr), r * r], y)
    x = 0.5 * y / np.abs(y).max() + 1e-4 * np.random.default_rng(0).standard_normal(sr)
    out = world_resynthesis(x, sr, 5.0, 60.0, 400.0)
    assert out.shape == x.shape and np.isclose(np.abs(out).max(), np.abs(x).max())
    assert np.array_equal(out, world_resynthesis(x, sr, 5.0, 60.0, 400.0))
    assert np.abs(out - x).max() > 0.05  # resynthesised, not copied
    mid = out[sr // 4 : 3 * sr // 4]
    ac = np.correlate(mid, mid, "full")[mid.size - 1 :]
    lag = int(sr / 400) + int(np.argmax(ac[int(sr / 400) : int(sr / 60)]))
    assert abs(sr / lag - f0) < 0.03 * f0, sr / lag
    freqs, p_in = scipy.signal.welch(x, sr, nperseg=1024)
    _, p_out = scipy.signal.welch(out, sr, nperseg=1024)
    band = (freqs > 100) & (freqs < 4000)
    smooth = np.ones(9) / 9  # the envelope, not the harmonics
    env_in = np.convolve(np.log(p_in[band]), smooth, "same")
    env_out = np.convolve(np.log(p_out[band]), smooth, "same")
    assert np.corrcoef(env_in, env_out)[0, 1] > 0.8
