"""Production embedding log: layout, round trip, windows, pseudonyms, refusals."""

from __future__ import annotations

import hashlib
import hmac
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from speakerops.core.keys import KeyMaterialError, Keyring
from speakerops.drift import log as prodlog
from speakerops.drift.log import PSEUDONYM_KEY_ENV, emb_column_names, utterance_pseudonym

KEY = b"test-pseudonym-key-0123456789"
RING = Keyring(Path(tempfile.mkdtemp()) / "keyring.json", bytes(range(32)))


def append_production_log(*args, **kwargs):
    """The log's writer with this module's keyring (every write needs one)."""
    return prodlog.append_production_log(*args, keyring=RING, **kwargs)


def read_production_log(*args, **kwargs):
    return prodlog.read_production_log(*args, keyring=RING, **kwargs)


def _batch(n: int, dim: int = 8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "embeddings": rng.standard_normal((n, dim)).astype(np.float32),
        "utt_ids": [f"req-{seed}-{i}" for i in range(n)],
        "durations_s": rng.uniform(1, 10, n),
        "sample_rates": [16000] * n,
        "snr_db": rng.normal(20, 5, n),
    }


def test_round_trip_layout_and_types(tmp_path):
    b1, b2 = _batch(5, seed=1), _batch(3, seed=2)
    p1 = append_production_log(
        tmp_path, **b1, model_name="speaker-encoder", model_version="3",
        channels=["phone", None, "mic", "mic", "phone"], timestamp="2025-03-01T10:00:00Z",
    )  # fmt: skip
    p2 = append_production_log(
        tmp_path,
        **b2,
        model_name="speaker-encoder",
        model_version="3",
        timestamp="2025-03-02T08:30:00",
    )
    assert p1.relative_to(tmp_path).parts[:3] == (
        "model_name=speaker-encoder",
        "model_version=3",
        "date=2025-03-01",
    )
    assert p1.name.startswith("part-") and p1.suffix == ".parquet"
    assert p2.parent.name == "date=2025-03-02"
    schema = pq.read_schema(p1)
    # embeddings are stored encrypted, one authenticated blob per row (was: plaintext float32)
    assert str(schema.field("embedding_enc").type) == "binary" and "embedding" not in schema.names
    assert schema.metadata[b"speakerops.embedding_dim"] == b"8"
    assert str(schema.field("timestamp").type) == "timestamp[us, tz=UTC]"
    raw = p1.read_bytes()
    assert all(row.tobytes() not in raw for row in b1["embeddings"])
    assert all(row[:2].tobytes() not in raw for row in b1["embeddings"])

    df = read_production_log(tmp_path)
    assert len(df) == 8
    assert list(df.columns[-8:]) == emb_column_names(8) == [f"emb_{i:03d}" for i in range(8)]
    np.testing.assert_array_equal(df[emb_column_names(8)].to_numpy()[:5], b1["embeddings"])
    np.testing.assert_array_equal(df[emb_column_names(8)].to_numpy()[5:], b2["embeddings"])
    assert df["channel"].tolist()[:5] == ["phone", None, "mic", "mic", "phone"]
    assert df["channel"].iloc[5:].isna().all() and df["speaker_key"].isna().all()
    assert (df["model_version"] == "3").all() and df["sample_rate"].dtype == np.int32
    assert df["timestamp"].is_monotonic_increasing
    assert str(df["timestamp"].dt.tz) == "UTC"


def test_window_is_half_open_and_prunes_by_version(tmp_path):
    for day, version in (("2025-03-01", "3"), ("2025-03-02", "3"), ("2025-03-03", "4")):
        append_production_log(
            tmp_path, **_batch(2, seed=int(day[-1])), model_name="m", model_version=version,
            timestamp=f"{day}T12:00:00",
        )  # fmt: skip
    assert len(read_production_log(tmp_path, "2025-03-01T12:00:00", "2025-03-02T12:00:00")) == 2
    assert len(read_production_log(tmp_path, "2025-03-01T12:00:00", "2025-03-02T12:00:01")) == 4
    assert len(read_production_log(tmp_path, start="2025-03-02")) == 4
    only4 = read_production_log(tmp_path, model_version="4")
    assert len(only4) == 2 and set(only4["model_version"]) == {"4"}
    empty = read_production_log(tmp_path, "2024-01-01", "2024-01-02")
    assert empty.empty and "timestamp" in empty.columns
    with pytest.raises(ValueError, match="not after start"):
        read_production_log(tmp_path, "2025-03-02", "2025-03-01")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_production_log(tmp_path / "nope")


def test_per_row_timestamps_split_into_dated_parts(tmp_path):
    stamps = ["2025-05-01T23:59:59Z", "2025-05-02T00:00:00Z", "2025-05-02T01:00:00Z"]
    first = append_production_log(
        tmp_path, **_batch(3), model_name="m", model_version="1", timestamp=stamps
    )
    parts = sorted(tmp_path.rglob("part-*.parquet"))
    assert [p.parent.name for p in parts] == ["date=2025-05-01", "date=2025-05-02"]
    assert {p.name for p in parts} == {first.name}  # one uuid per call
    assert [pq.read_metadata(p).num_rows for p in parts] == [1, 2]


def test_speaker_ids_become_hmac_pseudonyms_and_never_land_raw(tmp_path, monkeypatch):
    monkeypatch.delenv(PSEUDONYM_KEY_ENV, raising=False)
    speakers = ["alice-smith-7731", None, "bob-jones-4410"]
    path = append_production_log(
        tmp_path,
        **_batch(3),
        model_name="m",
        model_version="1",
        speaker_ids=speakers,
        pseudonym_key=KEY,
    )
    df = read_production_log(tmp_path)
    expect = hmac.new(KEY, b"alice-smith-7731", hashlib.sha256).hexdigest()
    assert df["speaker_key"].iloc[0] == expect and len(expect) == 64
    assert df["speaker_key"].iloc[1] is None
    table = pq.read_table(path).to_pandas()
    for col in table.columns:
        if table[col].dtype == object:
            values = table[col].dropna()
            if len(values) and isinstance(values.iloc[0], bytes):  # the encrypted embeddings
                assert not any(b"alice" in v or b"bob" in v for v in values), col
            else:
                assert not table[col].astype(str).str.contains("alice|bob").any(), col
    raw = path.read_bytes()
    assert b"alice-smith" not in raw and b"bob-jones" not in raw

    # the env key gives the same pseudonym
    monkeypatch.setenv(PSEUDONYM_KEY_ENV, KEY.decode())
    append_production_log(
        tmp_path / "env",
        **_batch(1),
        model_name="m",
        model_version="1",
        speaker_ids=["alice-smith-7731"],
    )
    assert read_production_log(tmp_path / "env")["speaker_key"].iloc[0] == expect


def test_speaker_ids_without_key_or_leaking_through_utt_ids_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(PSEUDONYM_KEY_ENV, raising=False)
    with pytest.raises(KeyMaterialError, match="never written or read in plaintext"):
        prodlog.append_production_log(
            tmp_path, **_batch(2), model_name="m", model_version="1", speaker_ids=["a1", "b2"]
        )
    with pytest.raises(ValueError, match="at least 16 bytes"):
        append_production_log(
            tmp_path,
            **_batch(2),
            model_name="m",
            model_version="1",
            speaker_ids=["a1", "b2"],
            pseudonym_key=b"short",
        )
    b = _batch(2)
    b["utt_ids"] = ["103-1240-0000", "req-7"]
    with pytest.raises(ValueError, match="contains its raw speaker id '103'"):
        append_production_log(
            tmp_path,
            **b,
            model_name="m",
            model_version="1",
            speaker_ids=["103", "999"],
            pseudonym_key=KEY,
        )
    assert not list(tmp_path.rglob("*.parquet"))  # nothing half-written


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"embeddings": np.full((2, 8), np.nan, np.float32)}, "NaN/inf"),
        ({"embeddings": np.zeros(8, np.float32)}, "2-D array"),
        ({"durations_s": [1.0]}, "durations_s has 1 values but there are 2"),
        ({"durations_s": [1.0, -2.0]}, "durations_s must be finite and > 0"),
        ({"sample_rates": [16000, 8000.5]}, "positive integers"),
        ({"snr_db": [np.inf, 3.0]}, "snr_db must be finite"),
        ({"utt_ids": ["a", ""]}, "non-empty strings"),
    ],
)
def test_bad_batches_get_clear_errors(tmp_path, change, message):
    b = {**_batch(2), **change}
    with pytest.raises(ValueError, match=message):
        append_production_log(tmp_path, **b, model_name="m", model_version="1")


def test_unsafe_partition_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot name a log partition"):
        append_production_log(tmp_path, **_batch(2), model_name="m", model_version="../../etc")


def test_parts_of_different_sizes_read_together_with_nan_padding(tmp_path):
    append_production_log(
        tmp_path, **_batch(2, dim=4), model_name="m", model_version="1", timestamp="2025-01-01"
    )
    append_production_log(
        tmp_path, **_batch(3, dim=6), model_name="m", model_version="2", timestamp="2025-01-01"
    )
    df = read_production_log(tmp_path)
    assert len(df) == 5 and len([c for c in df.columns if c.startswith("emb_")]) == 6
    small = df["model_version"] == "1"
    assert df.loc[small, "emb_005"].isna().all() and df.loc[~small, "emb_005"].notna().all()
    assert isinstance(df, pd.DataFrame)


def test_log_holds_no_plaintext_ids_or_embeddings_and_needs_the_key(tmp_path, monkeypatch):
    """Today's log stored embeddings and utterance ids (often paths naming the speaker) in
    plaintext; now every row is encrypted and every id is a keyed pseudonym."""
    monkeypatch.delenv(PSEUDONYM_KEY_ENV, raising=False)
    b = _batch(4, dim=16, seed=5)
    b["utt_ids"] = [f"/data/spk-walter-1089/utt{i}.wav" for i in range(4)]
    path = append_production_log(tmp_path, **b, model_name="m", model_version="2")
    raw = path.read_bytes()
    assert b"walter" not in raw and b"utt0" not in raw  # (digits alone occur in hex pseudonyms)
    assert all(row[:2].tobytes() not in raw for row in b["embeddings"])
    df = read_production_log(tmp_path)
    np.testing.assert_array_equal(df[emb_column_names(16)].to_numpy(), b["embeddings"])
    key = RING.pseudonym_key()
    assert df["utt_id"].tolist() == [utterance_pseudonym(u, key) for u in b["utt_ids"]]
    wrong = Keyring(tmp_path / "other-keyring.json", bytes(range(32)))
    with pytest.raises(KeyMaterialError, match="no data key"):
        prodlog.read_production_log(tmp_path, keyring=wrong)
    with pytest.raises(KeyMaterialError, match="no keyring given"):
        prodlog.read_production_log(tmp_path)
    # a row's ciphertext moved to another row (another utterance) does not decrypt
    table = pq.read_table(path)
    blobs = table.column("embedding_enc").to_pylist()
    swapped = table.set_column(
        table.schema.get_field_index("embedding_enc"),
        "embedding_enc",
        pa.array([blobs[1], blobs[0], *blobs[2:]], pa.binary()),
    )
    pq.write_table(swapped.replace_schema_metadata(table.schema.metadata), path)
    with pytest.raises(KeyMaterialError, match="does not authenticate"):
        read_production_log(tmp_path)
