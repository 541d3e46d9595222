"""Evaluation data at rest (issue #10): the AS-norm cohort inside a model file, the evaluate
stage's embeddings and `speakerops embed`'s output are encrypted; they read back only with the
store's keyring, and after a master-key rotation too."""

from __future__ import annotations

import secrets

import numpy as np
import pandas as pd
import pytest
import torch

from speakerops.core.keys import KeyMaterialError, Keyring, parse_key, pseudonym
from speakerops.eval.embed import EmbeddingBatch, read_embeddings, write_embeddings
from speakerops.eval.scoring import ScoreNormalization, Scorer
from speakerops.eval.sealed import (
    load_eval_embeddings,
    load_sealed_scoring,
    seal_scoring,
    weights_binding,
    write_eval_embeddings,
    write_scoring,
)
from speakerops.models.ecapa import ECAPATDNN
from speakerops.models.encoder import SpeakerEncoder
from speakerops.models.features import FeatureConfig

SPEAKERS = [f"syn{i:04d}" for i in range(5)]


def small_encoder(seed: int) -> SpeakerEncoder:
    torch.manual_seed(seed)
    model = {
        "arch": "ecapa_tdnn",
        "n_mels": 80,
        "channels": 32,
        "embedding_dim": 192,
        "attention_channels": 16,
    }
    return SpeakerEncoder(ECAPATDNN(80, 32, 192, attention_channels=16), FeatureConfig(), model)


def asnorm() -> ScoreNormalization:
    cohort = np.random.default_rng(0).standard_normal((5, 192)).astype(np.float32)
    return ScoreNormalization("asnorm", 3, cohort, list(SPEAKERS))


def row_bytes(x: np.ndarray) -> list[bytes]:
    return [np.ascontiguousarray(r[:8], np.float32).tobytes() for r in x]


def test_the_cohort_in_a_model_file_opens_only_with_the_key_and_these_weights(
    keyring: Keyring, tmp_path
) -> None:
    norm = asnorm()
    enc = small_encoder(0)
    enc.extras["scoring"] = seal_scoring(norm.to_dict(), keyring, weights_binding(enc))
    path = enc.save(tmp_path / "encoder.safetensors")
    data = path.read_bytes()
    assert not any(s.encode() in data for s in SPEAKERS)
    assert not any(b in data for b in row_bytes(norm.cohort))

    loaded = SpeakerEncoder.load(path)  # embedding needs no key
    assert np.isfinite(loaded.embed(np.random.default_rng(1).standard_normal(16000), 16000)).all()
    with pytest.raises(KeyMaterialError, match="SPEAKEROPS_DATA_KEY.*pass keyring="):
        Scorer.from_encoder(loaded)
    scorer = Scorer.from_encoder(loaded, keyring)
    np.testing.assert_array_equal(scorer.normalization.cohort, norm.cohort)
    assert scorer.normalization.top_n == 3
    key = keyring.pseudonym_key()
    assert scorer.normalization.cohort_speakers == [pseudonym(s, key) for s in SPEAKERS]

    # the same extras on other weights: the cohort is bound to the model it was computed with
    other = small_encoder(1)
    other.extras = dict(loaded.extras)
    with pytest.raises(KeyMaterialError, match="does not authenticate.*another model"):
        Scorer.from_encoder(other, keyring)
    # another master key: refused with the reason, never garbage
    stranger = Keyring(keyring.path, secrets.token_bytes(32))
    with pytest.raises(KeyMaterialError, match="not wrapped for this master key"):
        Scorer.from_encoder(loaded, stranger)

    # `keys rotate --retire`: the new master reads the packaged cohort, the old one no longer
    new_master = parse_key(secrets.token_hex(32))
    keyring.rotate_master(new_master, retire_old=True)
    rotated = Scorer.from_encoder(SpeakerEncoder.load(path), Keyring(keyring.path, new_master))
    np.testing.assert_array_equal(rotated.normalization.cohort, norm.cohort)
    with pytest.raises(KeyMaterialError, match="not wrapped for this master key"):
        Scorer.from_encoder(loaded, Keyring(keyring.path, keyring.master))
    # `keys rotate purpose=cohort`: new cohorts under a new data key, old ones still open
    ring = Keyring(keyring.path, new_master)
    ring.rotate_data_key("cohort")
    resealed = seal_scoring(norm.to_dict(), ring, weights_binding(enc))
    assert resealed["cohort_enc"][4:12] != enc.extras["scoring"]["cohort_enc"][4:12]
    for sealed in (resealed, enc.extras["scoring"]):
        opened = ScoreNormalization.from_dict(sealed, ring, weights_binding(enc))
        np.testing.assert_array_equal(opened.cohort, norm.cohort)


def test_evaluate_stage_files_hold_no_plaintext_ids_or_embeddings(keyring, tmp_path) -> None:
    enc, norm = small_encoder(0), asnorm()
    out = tmp_path / "eval"
    out.mkdir()
    write_scoring(out, norm.to_dict(), keyring, weights_binding(enc))
    utts = [f"{s}-{k:03d}" for s in SPEAKERS for k in range(2)]
    emb = np.random.default_rng(2).standard_normal((len(utts), 192)).astype(np.float32)
    write_eval_embeddings(out, utts, emb, keyring)
    for f in out.iterdir():
        data = f.read_bytes()
        assert not any(s.encode() in data for s in SPEAKERS), f
        assert not any(b in data for b in row_bytes(emb) + row_bytes(norm.cohort)), f
    back_utts, back = load_eval_embeddings(out, keyring=keyring)
    assert back_utts == utts and back.dtype == np.float32
    np.testing.assert_array_equal(back, emb)
    opened = ScoreNormalization.from_dict(load_sealed_scoring(out), keyring, weights_binding(enc))
    np.testing.assert_array_equal(opened.cohort, norm.cohort)
    write_scoring(out, {"method": "cosine"}, keyring, weights_binding(enc))
    assert load_sealed_scoring(out) == {"method": "cosine"}
    assert not (out / "cohort.enc").exists()


@pytest.mark.parametrize("suffix", [".parquet", ".npz"])
def test_embed_output_is_encrypted_unless_plaintext_is_asked_for(
    keyring, tmp_path, suffix: str
) -> None:
    emb = np.random.default_rng(3).standard_normal((3, 192)).astype(np.float32)
    batch = EmbeddingBatch(
        utt_ids=["a", "b", "c"],
        paths=[f"/in/{SPEAKERS[i]}/x.wav" for i in range(3)],
        embeddings=emb,
    )
    written = write_embeddings(batch, tmp_path / f"emb{suffix}", keyring)
    assert written.name == f"emb{suffix}.enc" and not (tmp_path / f"emb{suffix}").exists()
    data = written.read_bytes()
    assert not any(b in data for b in row_bytes(emb)) and SPEAKERS[0].encode() not in data
    frame = read_embeddings(written, keyring)
    assert frame["utt_id"].tolist() == ["a", "b", "c"] and frame["path"][0] == batch.paths[0]
    np.testing.assert_array_equal(np.stack(frame["embedding"]), emb)
    with pytest.raises(ValueError, match="encrypted embeddings; pass the store's keyring"):
        read_embeddings(written)
    # after a master-key rotation the file still reads
    new_master = secrets.token_bytes(32)
    keyring.rotate_master(new_master, retire_old=True)
    again = read_embeddings(written, Keyring(keyring.path, new_master))
    np.testing.assert_array_equal(np.stack(again["embedding"]), emb)

    plain = write_embeddings(batch, tmp_path / f"plain{suffix}")  # the explicit choice
    assert plain.name == f"plain{suffix}"
    back = read_embeddings(plain)
    pd.testing.assert_series_equal(back["utt_id"], frame["utt_id"])
    np.testing.assert_array_equal(np.stack(back["embedding"]), emb)
    with pytest.raises(ValueError, match="expected a .parquet or .npz"):
        write_embeddings(batch, tmp_path / "emb.csv", keyring)
