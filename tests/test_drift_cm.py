"""The countermeasure score as a drift signal: the champion's reference holds the CM score of
each of its recordings (build_reference_from_eval with the pair's CM), each served request
logs its own (append_production_log cm_scores), and check_drift's `cm_score` column test
(conf/drift/default.yaml: normed Wasserstein) fires on a batch of spoofed traffic (LPC
resynthesis of the window's audio) and not on a same-distribution bona fide batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from speakerops.core.jsonio import sha256_file
from speakerops.data.audio import audio_info, load_audio
from speakerops.drift.checks import check_drift
from speakerops.drift.log import append_production_log, read_production_log
from speakerops.drift.simulated_traffic import synthetic_population
from speakerops.eval.sealed import write_eval_embeddings
from speakerops.registry.reference import build_reference_from_eval, load_reference

from .cm_world import SR, lpc_spoof, train_countermeasure
from .conftest import shared

N_TRAIN = 40  # the CM's own training files come first: never in the reference or the window


def _whole(files):  # as the service scores a request: the whole checked waveform
    return [load_audio(f, SR)[0] for f in files]


def test_spoofed_traffic_shifts_the_cm_score_signal_and_bona_fide_does_not(tmp_path, keyring):
    cm = train_countermeasure(tmp_path / "countermeasure.safetensors", n=N_TRAIN)
    files = sorted(shared("librispeech", "train-clean-100").glob("*.flac"))[N_TRAIN:]
    ref_files, win_files = files[: len(files) // 2], files[len(files) // 2 :]

    # the reference, built as registration builds it, with the pair's CM
    eval_dir, prepared = tmp_path / "eval", tmp_path / "prepared"
    eval_dir.mkdir()
    prepared.mkdir()
    ids = [f"r{i:04d}" for i in range(len(ref_files))]
    emb, _ = synthetic_population(len(ids), n_speakers=len(ids), p_phone=0.0, seed=1)
    write_eval_embeddings(eval_dir, ids, emb, keyring)
    pd.DataFrame({
        "utt_id": ids, "path": [str(f) for f in ref_files], "speaker": [f.stem.split("-")[0] for f in ref_files],
        "duration": [audio_info(f).duration for f in ref_files], "sample_rate": SR, "split": "eval", "channel": "mic",
    }).to_csv(prepared / "manifest.csv", index=False)  # fmt: skip
    pd.DataFrame({"enroll": ["a"], "test": ["b"], "label": [1], "score": [0.5]}).to_csv(
        eval_dir / "scores_eval.csv", index=False
    )
    cm_sha = sha256_file(tmp_path / "countermeasure.safetensors")
    out = build_reference_from_eval(eval_dir, prepared, tmp_path / "ref", keyring=keyring,
                                    countermeasure=cm, cm_sha256=cm_sha)  # fmt: skip
    ref = load_reference(out, keyring=keyring)
    ref.model_name, ref.model_version = "speaker-encoder", "1"
    whole = [cm.score(load_audio(f, SR)[0]) for f in ref_files[:3]]
    assert np.allclose(ref.metadata["cm_score"].to_numpy()[:3], whole, atol=1e-5)
    assert ref.info["cm_unscored"] == 0 and ref.info["cm_operating_point"]["rule"] == "eer"

    bona = _whole(win_files)
    traffic = {"bona_fide": bona, "spoofed": [lpc_spoof(w, i) for i, w in enumerate(bona)]}
    cfg = {"window": {"min_rows": 50}, "embedding": {"min_rows": 10**6}}  # the CM column only
    results = {}
    for name, wavs in traffic.items():
        log = tmp_path / f"log-{name}"
        win_emb, _ = synthetic_population(len(wavs), n_speakers=len(wavs), p_phone=0.0, seed=2)
        append_production_log(
            log, win_emb, utt_ids=[f"req-{name}-{i}" for i in range(len(wavs))],
            model_name="speaker-encoder", model_version="1", durations_s=[len(w) / SR for w in wavs],
            sample_rates=[SR] * len(wavs), snr_db=[30.0] * len(wavs),
            cm_scores=[cm.score(w) for w in wavs], keyring=keyring, cm_sha256=cm_sha,
        )  # fmt: skip
        window = read_production_log(log, keyring=keyring)
        assert window["cm_score"].notna().all() and (window["cm_sha256"] == cm_sha).all()
        results[name] = check_drift(window, ref, cfg).check("cm_score")
    same, spoofed = results["bona_fide"], results["spoofed"]
    assert not same.skipped and not same.drifted, same
    assert spoofed.drifted and spoofed.score > 2 * spoofed.threshold > 2 * same.score, spoofed

    # the spoofed traffic's scores said to come from another countermeasure file: never
    # compared with this reference's (another CM's scale); a mixed window keeps its own CM's rows
    other = "f" * 64
    spoofed_log = read_production_log(tmp_path / "log-spoofed", keyring=keyring)
    res = check_drift(spoofed_log.assign(cm_sha256=other), ref, cfg)
    skipped = res.check("cm_score")
    assert skipped.skipped and not skipped.drifted and skipped.n_current == 0
    assert f"({cm_sha[:12]})" in skipped.skipped and "ffffffffffff (" in skipped.skipped
    half = len(spoofed_log) // 2
    mixed = spoofed_log.assign(cm_sha256=[other] * half + [cm_sha] * (len(spoofed_log) - half))
    res = check_drift(mixed, ref, cfg)
    kept = res.check("cm_score")
    assert not kept.skipped and kept.n_current == len(spoofed_log) - half
    assert any(f"{half} of the window's {len(spoofed_log)} scored rows" in w for w in res.warnings)


def test_without_cm_scores_the_signal_is_skipped_with_the_reason(tmp_path, keyring):
    emb, _ = synthetic_population(60, n_speakers=60, p_phone=0.0, seed=3)
    append_production_log(
        tmp_path / "log", emb, utt_ids=[f"q{i}" for i in range(60)], model_name="speaker-encoder",
        model_version="1", durations_s=[2.0] * 60, sample_rates=[SR] * 60, snr_db=[30.0] * 60,
        keyring=keyring,
    )  # fmt: skip
    window = read_production_log(tmp_path / "log", keyring=keyring)
    assert window["cm_score"].isna().all()
    from speakerops.registry.reference import Reference

    ref_emb, meta = synthetic_population(80, n_speakers=80, p_phone=0.0, seed=4)
    ref = Reference(ref_emb, meta.assign(cm_score=np.linspace(-1, 1, 80)),
                    pd.DataFrame({"score": [0.1]}), model_name="speaker-encoder", model_version="1")  # fmt: skip
    res = check_drift(window, ref, {"window": {"min_rows": 50}}).check("cm_score")
    assert res.skipped == "no values on the current side" and not res.drifted


def test_cm_scores_are_logged_with_the_countermeasure_that_gave_them(tmp_path, keyring):
    row = dict(utt_ids=["q"], model_name="m", model_version="1", durations_s=[1.0],
               sample_rates=[SR], snr_db=[30.0], keyring=keyring)  # fmt: skip
    with pytest.raises(ValueError, match="cm_scores given without cm_sha256"):
        append_production_log(tmp_path / "a", np.ones((1, 4)), cm_scores=[0.5], **row)
    with pytest.raises(ValueError, match="cm_sha256='abc': expected 64 lowercase hex"):
        append_production_log(tmp_path / "b", np.ones((1, 4)), cm_scores=[0.5], cm_sha256="abc", **row)  # fmt: skip
    two = {**row, "utt_ids": ["q", "r"], "durations_s": [1.0] * 2, "sample_rates": [SR] * 2, "snr_db": [30.0] * 2}  # fmt: skip
    append_production_log(tmp_path / "c", np.ones((2, 4)), cm_scores=[0.5, None], cm_sha256="a" * 64, **two)  # fmt: skip
    log = read_production_log(tmp_path / "c", keyring=keyring).sort_values("cm_score")
    assert log["cm_sha256"].tolist()[0] == "a" * 64 and log["cm_sha256"].isna().tolist() == [False, True]  # fmt: skip
    with pytest.raises(ValueError, match="needs cm_sha256"):
        build_reference_from_eval(tmp_path, tmp_path, tmp_path / "ref", keyring=keyring,
                                  countermeasure=object())  # fmt: skip


@pytest.mark.parametrize("bad", [float("inf"), float("-inf")])
def test_a_non_finite_cm_score_is_not_logged(tmp_path, keyring, bad):
    with pytest.raises(ValueError, match="cm_scores must be finite"):
        append_production_log(
            tmp_path, np.ones((1, 4)), utt_ids=["q"], model_name="m", model_version="1",
            durations_s=[1.0], sample_rates=[SR], snr_db=[30.0], cm_scores=[bad], keyring=keyring,
        )  # fmt: skip
