"""The real-data recipe `experiment=librispeech_small`: it composes, points at the shared
LibriSpeech folders, and `prepare` on them gives speaker-disjoint train / calibration splits
of segmented train-clean-100 readers plus the 10 test-other readers as eval, with the columns
that make the single-session caveat visible (`source_utt`, `start`/`end`, `path`).

Reads ../shared/data (skipped with the reason when absent); no training (a few seconds).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from .conftest import REPO, SHARED_DATA, shared

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory):
    """(composed config, prepare summary, manifest, prepared dir) on the real data."""
    shared("librispeech", "train-clean-100")
    shared("librispeech", "test-other")
    from speakerops.core.config import compose
    from speakerops.data.prepare import prepare

    out = tmp_path_factory.mktemp("prepared_librispeech")
    mp = pytest.MonkeyPatch()
    mp.chdir(REPO)  # the preset's data paths are relative to the project root
    try:
        default = compose(["experiment=librispeech_small"])
        cfg = compose(["experiment=librispeech_small", f"data.prepared_dir={out}"])
        summary = prepare(cfg.data, progress=False)
    finally:
        mp.undo()
    manifest = pd.read_csv(out / "manifest.csv", dtype={"utt_id": str, "speaker": str})
    return default, cfg, summary, manifest, out


def _same(a: str, b: Path) -> bool:
    return (REPO / a).resolve() == b.resolve()


def test_preset_composes_and_points_at_shared_data(recipe, monkeypatch) -> None:
    default, cfg, *_ = recipe
    d = default.data
    assert d.corpus == "librispeech" and d.eval_corpus.corpus == "librispeech"
    assert _same(d.root, SHARED_DATA / "librispeech" / "train-clean-100")
    assert _same(d.eval_corpus.root, SHARED_DATA / "librispeech" / "test-other")
    assert d.segment_seconds == 3.0 and d.calibration_fraction == 0.1
    # its own outputs: never overwrites the demo's prepared data, model or metrics
    assert d.prepared_dir == "data/prepared_librispeech"
    assert default.train.out_dir == "artifacts/train_librispeech"
    assert default.evaluate.out_dir == "artifacts/eval_librispeech"
    # real background noise for augmentation, from the shared folder
    noise = default.augment.pipeline.augmentations.noise
    assert _same(noise.noise_dir, SHARED_DATA / "noise") and noise.p > 0
    assert cfg.augment.pipeline.speed is None  # classes = speakers
    from hydra.utils import instantiate

    monkeypatch.chdir(REPO)
    pipeline = instantiate(default.augment.pipeline)  # the real noise folder loads
    assert pipeline.num_label_copies == 1
    assert default.trainer.max_epochs >= 1 and default.model.channels % 8 == 0


def test_prepare_splits_speaker_disjoint(recipe) -> None:
    _, _, summary, m, _ = recipe
    by_split = {s: set(m.loc[m.split == s, "speaker"]) for s in ("train", "calibration", "eval")}
    assert not by_split["train"] & by_split["calibration"]
    assert not (by_split["train"] | by_split["calibration"]) & by_split["eval"]
    readers = {
        p.name.split("-")[0] for p in shared("librispeech", "train-clean-100").glob("*.flac")
    }
    assert by_split["train"] | by_split["calibration"] == readers  # all 251 readers, none lost
    assert len(by_split["calibration"]) == round(0.1 * len(readers))
    test_other = {p.name for p in shared("librispeech", "test-other").iterdir() if p.is_dir()}
    assert by_split["eval"] == test_other and len(test_other) == 10
    assert summary["speakers"] == {k: len(v) for k, v in by_split.items()}
    assert summary["n_quarantined"] == 0


def test_segments_carry_the_same_session_caveat(recipe) -> None:
    """Calibration target trials compare two segments of ONE recording (same session); eval
    target trials compare two different test-other recordings (of one chapter per reader in
    this copy: different utterances of the same reading session)."""
    _, _, _, m, out = recipe
    seg = m[m.split != "eval"]
    # train-clean-100 here: one recording per reader ...
    assert seg.groupby("speaker")["path"].nunique().max() == 1
    # ... cut into 3 s spans of it (`source_utt` names the recording); a recording shorter
    # than two segments stays whole
    cut = seg[seg["start"].notna()]
    assert len(cut) > 0.9 * len(seg) and cut["source_utt"].notna().all()
    assert ((cut["end"] - cut["start"]) <= 3.0 + 1e-6).all()
    assert (seg.loc[seg["start"].isna(), "duration"] < 6.0).all()
    # test-other: whole recordings, 10 per reader
    ev = m[m.split == "eval"]
    assert ev["start"].isna().all() and ev["source_utt"].isna().all()
    assert (ev.groupby("speaker")["path"].nunique() == 10).all()

    path = m.set_index("utt_id")["path"]

    def target_pairs(name: str) -> tuple[pd.Series, pd.Series]:
        t = pd.read_csv(out / f"trials_{name}.csv", dtype={"enroll": str, "test": str})
        t = t[t.label == 1]
        assert len(t) > 50
        return path.loc[t.enroll].to_numpy(), path.loc[t.test].to_numpy()

    a, b = target_pairs("calibration")
    assert (a == b).all()  # every calibration target trial is same-recording
    a, b = target_pairs("eval")
    assert (a != b).all()  # every eval target trial is cross-recording


def test_prepare_is_deterministic(recipe, tmp_path: Path) -> None:
    """A second prepare gives the same manifest and the same trial-list hashes."""
    _, cfg, summary, manifest, _ = recipe
    from omegaconf import OmegaConf

    from speakerops.data.prepare import prepare

    data = OmegaConf.merge(cfg.data, {"prepared_dir": str(tmp_path)})
    mp = pytest.MonkeyPatch()
    mp.chdir(REPO)
    try:
        again = prepare(data, progress=False)
    finally:
        mp.undo()
    assert again["trial_hashes"] == summary["trial_hashes"]
    assert set(summary["trial_hashes"]) == {"calibration", "eval"}
    second = pd.read_csv(tmp_path / "manifest.csv", dtype={"utt_id": str, "speaker": str})
    pd.testing.assert_frame_equal(second, manifest)
