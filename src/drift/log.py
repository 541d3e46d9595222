"""Production embedding log: partitioned parquet written by ``speakerops embed``.

Layout (hive-style partitions, one parquet *part* per call and UTC date)::

    <log_dir>/model_name=<name>/model_version=<v>/date=<YYYY-MM-DD>/part-<uuid>.parquet

Columns of every part (the partition values are also stored inside the file, so a
part read on its own is complete):

============== ===================================== ==========================================
column         arrow type                            meaning
============== ===================================== ==========================================
utt_id         string                                keyed pseudonym of the caller's utterance /
                                                     request id (:meth:`Keyring.pseudonym`)
model_name     string                                registered model name
model_version  string                                registry version that produced the embedding
timestamp      timestamp[us, tz=UTC]                 when the embedding was computed
duration_s     float64                               audio duration in seconds
sample_rate    int32                                 sample rate of the *input* audio (Hz)
snr_db         float64                               blind SNR estimate (:mod:`speakerops.data.quality`)
channel        string (nullable)                     channel label when known (``"phone"``, ``"mic"``…)
speaker_key    string (nullable)                     HMAC-SHA256(key, speaker_id) hex, only when a
                                                     speaker id was given
cm_score       float64 (nullable)                    the served countermeasure's score (older parts: null)
cm_sha256      string (nullable)                     sha256 of the countermeasure file that gave
                                                     it (rows without a score, older parts: null)
embedding_enc  binary                                the float32 embedding, AES-256-GCM under the
                                                     keyring's ``production-log`` data key, bound
                                                     to (model_name, model_version, utt_id)
============== ===================================== ==========================================

:func:`read_production_log` returns a *wide* pandas frame: the metadata columns above and
one float32 column per embedding dimension, ``emb_000 … emb_{D-1}`` (the form Evidently's
``DataDefinition(embeddings=...)`` takes).

Privacy: nothing biometric is stored in plaintext (:mod:`speakerops.core.keys`). Embeddings
are encrypted per row; writing or reading needs the store's keyring and master key. A speaker
id becomes ``speaker_key = HMAC-SHA256(key, speaker_id.encode("utf-8")).hexdigest()`` with the
pseudonym key (argument, else env ``SPEAKEROPS_PSEUDONYM_KEY``, else the keyring's), and the
utterance id ``HMAC-SHA256(key, "utt\x00" + utt_id)``. The same key gives the same pseudonym,
so one speaker's utterances can be grouped (the drift check uses that) without storing who the
speaker is. Utterance ids that contain their raw speaker id (``"103-1240-0000"`` for speaker
``"103"``) are refused, since a caller that sends them leaks it elsewhere too.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from speakerops.core.keys import PSEUDONYM_KEY_ENV, KeyMaterialError, Keyring
from speakerops.drift.parts import read_parts
from speakerops.drift.pseudonyms import (
    leaks_speaker,
    resolve_pseudonym_key,
    speaker_pseudonym,
    utterance_pseudonym,
)

__all__ = [  # the pseudonym helpers live in speakerops.drift.pseudonyms, re-exported here
    "PSEUDONYM_KEY_ENV",
    "append_production_log",
    "emb_column_names",
    "embedding_columns",
    "read_production_log",
    "resolve_pseudonym_key",
    "speaker_pseudonym",
    "to_utc",
    "utterance_pseudonym",
]

LOG_FORMAT_VERSION = "2"
LOG_PURPOSE = "production-log"
META_COLUMNS = [
    "utt_id",
    "model_name",
    "model_version",
    "timestamp",
    "duration_s",
    "sample_rate",
    "snr_db",
    "channel",
    "speaker_key",
    "cm_score",
    "cm_sha256",
]
# added after format 2 shipped: null when absent
OPTIONAL_COLUMNS = {"cm_score": pa.float64(), "cm_sha256": pa.string()}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SAFE_PARTITION = re.compile(r"^[A-Za-z0-9._-]+$")


def emb_column_names(dim: int) -> list[str]:
    """Names of the wide embedding columns: ``emb_000 … emb_{dim-1}``."""
    width = max(3, len(str(dim - 1)))
    return [f"emb_{i:0{width}d}" for i in range(dim)]


def embedding_columns(df: pd.DataFrame) -> list[str]:
    """The ``emb_###`` columns of a wide frame, in dimension order."""
    cols = [c for c in df.columns if isinstance(c, str) and re.fullmatch(r"emb_\d+", c)]
    return sorted(cols, key=lambda c: int(c[4:]))


def to_utc(value: Any, *, what: str = "timestamp") -> datetime:
    """Parse a datetime / ISO string / pandas or numpy timestamp into an aware UTC datetime
    (naive values are taken as UTC)."""
    if isinstance(value, datetime):
        ts = pd.Timestamp(value)
    else:
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{what}: cannot parse {value!r} as a date/time ({exc})") from exc
    if ts is pd.NaT:
        raise ValueError(f"{what}: {value!r} is not a date/time")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def _aad(model_name: str, model_version: str, utt_key: str) -> bytes:
    return f"{LOG_PURPOSE}\x00{model_name}\x00{model_version}\x00{utt_key}".encode()


def _require_keyring(keyring: Keyring | None, what: str) -> Keyring:
    if keyring is None:
        raise KeyMaterialError(
            f"{what}: no keyring given; production embeddings are biometric data and are never "
            "written or read in plaintext (speakerops.core.keys.open_keyring / keyring_from_cfg)"
        )
    return keyring


def _check_partition_value(value: str, what: str) -> str:
    value = str(value)
    if not _SAFE_PARTITION.match(value):
        raise ValueError(
            f"{what} {value!r} cannot name a log partition: use letters, digits, '.', '_' or '-'"
        )
    return value


def _per_row(values: Any, n: int, what: str) -> list:
    if values is None:
        return [None] * n
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{what} must be a sequence with one value per embedding, not a string")
    seq = list(values)
    if len(seq) != n:
        raise ValueError(f"{what} has {len(seq)} values but there are {n} embeddings")
    return seq


def append_production_log(
    log_dir: str | Path,
    embeddings: np.ndarray,
    *,
    utt_ids: Sequence[str],
    model_name: str,
    model_version: str,
    durations_s: Sequence[float],
    sample_rates: Sequence[int],
    snr_db: Sequence[float],
    channels: Sequence[str | None] | None = None,
    speaker_ids: Sequence[str | None] | None = None,
    pseudonym_key: bytes | None = None,
    timestamp: Any = None,
    keyring: Keyring | None = None,
    cm_scores: Sequence[float | None] | None = None,
    cm_sha256: str | None = None,
) -> Path:
    """Append one batch of embeddings to the production log; return the part written.

    ``timestamp`` is one value for the batch (default: now, UTC) or one per row; rows are
    split into one part per UTC date (all parts of a call share the uuid; the first part's
    path is returned). Embeddings are encrypted with ``keyring`` (required); utterance and
    speaker ids (entries may be None) are stored only as HMAC-SHA256 pseudonyms.
    """
    ring = _require_keyring(keyring, f"production log {log_dir}")
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] == 0:
        raise ValueError(f"embeddings must be a non-empty 2-D array [N, D], got shape {emb.shape}")
    if not np.issubdtype(emb.dtype, np.number):
        raise ValueError(f"embeddings must be numeric, got dtype {emb.dtype}")
    emb = emb.astype(np.float32, copy=False)
    if not np.isfinite(emb).all():
        bad = int((~np.isfinite(emb).all(axis=1)).sum())
        raise ValueError(f"embeddings contain NaN/inf in {bad} row(s); refusing to log them")
    n, dim = emb.shape
    model_name = _check_partition_value(model_name, "model_name")
    model_version = _check_partition_value(model_version, "model_version")

    utts = _per_row(utt_ids, n, "utt_ids")
    for u in utts:
        if not isinstance(u, str) or not u:
            raise ValueError(f"utt_ids must be non-empty strings, got {u!r}")
    dur = np.asarray(_per_row(durations_s, n, "durations_s"), dtype=np.float64)
    if not (np.isfinite(dur).all() and (dur > 0).all()):
        raise ValueError("durations_s must be finite and > 0 seconds")
    sr_raw = np.asarray(_per_row(sample_rates, n, "sample_rates"), dtype=np.float64)
    if not (
        np.isfinite(sr_raw).all() and (sr_raw > 0).all() and (sr_raw == np.round(sr_raw)).all()
    ):
        raise ValueError("sample_rates must be positive integers (Hz)")
    sr = sr_raw.astype(np.int32)
    snr = np.asarray(_per_row(snr_db, n, "snr_db"), dtype=np.float64)
    if np.isinf(snr).any():
        raise ValueError("snr_db must be finite (NaN is allowed for 'unknown')")
    cm = [
        None if v is None or np.isnan(v) else float(v) for v in _per_row(cm_scores, n, "cm_scores")
    ]
    if any(v is not None and not np.isfinite(v) for v in cm):
        raise ValueError("cm_scores must be finite (None for 'no countermeasure')")
    if cm_sha256 is not None and not _SHA256.match(cm_sha256):
        raise ValueError(f"cm_sha256={cm_sha256!r}: expected 64 lowercase hex digits")
    if cm_sha256 is None and any(v is not None for v in cm):
        raise ValueError(
            "cm_scores given without cm_sha256: name the countermeasure file that gave them"
        )
    chans = [
        None if c is None or (isinstance(c, float) and np.isnan(c)) else str(c)
        for c in _per_row(channels, n, "channels")
    ]

    key = resolve_pseudonym_key(pseudonym_key, ring)
    keys: list[str | None] = [None] * n
    if speaker_ids is not None:
        spk = _per_row(speaker_ids, n, "speaker_ids")
        if any(s is not None for s in spk):
            for i, (s, u) in enumerate(zip(spk, utts, strict=True)):
                if s is None:
                    continue
                s = str(s)
                if leaks_speaker(u, s):
                    raise ValueError(
                        f"utt_id {u!r} contains its raw speaker id {s!r}; the log must not hold "
                        "raw speaker ids: pass opaque utterance ids (a request id or a hash)"
                    )
                keys[i] = speaker_pseudonym(s, key)

    if timestamp is None or isinstance(
        timestamp, (str, datetime, pd.Timestamp, np.datetime64, date)
    ):
        one = to_utc(timestamp if timestamp is not None else datetime.now(timezone.utc))
        stamps = [one] * n
    else:
        stamps = [to_utc(t) for t in _per_row(timestamp, n, "timestamp")]
    ts_index = pd.DatetimeIndex(stamps)
    utt_keys = [utterance_pseudonym(u, key) for u in utts]
    blobs = [
        ring.encrypt(LOG_PURPOSE, row.tobytes(), _aad(model_name, model_version, k))
        for row, k in zip(emb, utt_keys, strict=True)
    ]

    table = pa.table(
        {
            "utt_id": pa.array(utt_keys, pa.string()),
            "model_name": pa.array([model_name] * n, pa.string()),
            "model_version": pa.array([model_version] * n, pa.string()),
            "timestamp": pa.array(ts_index, pa.timestamp("us", tz="UTC")),
            "duration_s": pa.array(dur, pa.float64()),
            "sample_rate": pa.array(sr, pa.int32()),
            "snr_db": pa.array(snr, pa.float64()),
            "channel": pa.array(chans, pa.string()),
            "speaker_key": pa.array(keys, pa.string()),
            "cm_score": pa.array(cm, pa.float64()),
            "cm_sha256": pa.array([None if v is None else cm_sha256 for v in cm], pa.string()),
            "embedding_enc": pa.array(blobs, pa.binary()),
        }
    ).replace_schema_metadata(
        {
            "speakerops.log_format": LOG_FORMAT_VERSION,
            "speakerops.embedding_dim": str(dim),
            "speakerops.encryption": "AES-256-GCM",
        }
    )
    dates = np.array([t.date().isoformat() for t in stamps])
    part_id = uuid.uuid4().hex
    written: list[Path] = []
    base = Path(log_dir) / f"model_name={model_name}" / f"model_version={model_version}"
    for d in sorted(set(dates)):
        rows = np.flatnonzero(dates == d)
        out = base / f"date={d}" / f"part-{part_id}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".parquet.tmp")
        pq.write_table(table.take(pa.array(rows)), tmp)
        os.replace(tmp, out)  # readers never see half-written parts
        written.append(out)
    return written[0]


def _table_to_frame(table: pa.Table, dim: int, keyring: Keyring, source: str) -> pd.DataFrame:
    meta = table.drop(["embedding_enc"]).to_pandas()
    rows = []
    for blob, name, version, utt in zip(
        table.column("embedding_enc").to_pylist(),
        meta["model_name"],
        meta["model_version"],
        meta["utt_id"],
        strict=True,
    ):
        plain = keyring.decrypt(blob, _aad(name, version, utt), what=f"{source} row {utt[:12]}")
        rows.append(np.frombuffer(plain, dtype=np.float32))
    flat = np.stack(rows) if rows else np.zeros((0, dim), np.float32)
    if flat.shape[1] != dim:
        raise ValueError(f"{source}: embeddings of size {flat.shape[1]}, metadata says {dim}")
    emb = pd.DataFrame(flat, columns=emb_column_names(dim), index=meta.index)
    return pd.concat([meta, emb], axis=1)


def checked_part(t: pa.Table, f: Path) -> pa.Table:
    """Part `f`'s table with every column of this format (the optional ones null where an
    older part lacks them), the log's columns only; refused when of another format."""
    fmt = (t.schema.metadata or {}).get(b"speakerops.log_format", b"?").decode()
    if fmt != LOG_FORMAT_VERSION:
        raise ValueError(
            f"production log part {f} has format {fmt} (plaintext embeddings); this "
            f"speakerops reads format {LOG_FORMAT_VERSION} (encrypted): re-log the batch"
        )
    for col, kind in OPTIONAL_COLUMNS.items():
        if col not in t.column_names:
            t = t.append_column(col, pa.nulls(t.num_rows, kind))
    missing = [c for c in [*META_COLUMNS, "embedding_enc"] if c not in t.column_names]
    if missing:
        raise ValueError(f"production log part {f} lacks column(s) {missing}")
    return t.select([*META_COLUMNS, "embedding_enc"])


def read_production_log(
    log_dir: str | Path,
    start: Any = None,
    end: Any = None,
    *,
    model_name: str | None = None,
    model_version: str | None = None,
    keyring: Keyring | None = None,
) -> pd.DataFrame:
    """Read (and decrypt with ``keyring``) the rows with ``start <= timestamp < end`` (UTC; None = unbounded) as a wide frame.

    Date partitions outside the range and other models/versions (when given) are not
    opened. Parts of different embedding sizes may be read together (their ``emb_###``
    columns are then NaN where a part has fewer dimensions); the drift check refuses such
    mixed windows. Rows are sorted by timestamp.
    """
    log_dir = Path(log_dir)
    if not log_dir.exists():
        raise FileNotFoundError(f"production log folder {log_dir} does not exist")
    ring = _require_keyring(keyring, f"production log {log_dir}")
    t0 = to_utc(start, what="start") if start is not None else None
    t1 = to_utc(end, what="end") if end is not None else None
    if t0 is not None and t1 is not None and t1 <= t0:
        raise ValueError(f"window end {t1.isoformat()} is not after start {t0.isoformat()}")
    d0 = t0.date() if t0 is not None else None
    d1 = (t1 - timedelta(microseconds=1)).date() if t1 is not None else None

    frames: list[pd.DataFrame] = []
    by_dim: dict[int, list[tuple[pa.Table, str]]] = {}
    for f, raw in read_parts(log_dir, model_name, model_version, d0, d1):
        t = checked_part(raw, f)
        dim = int(t.schema.metadata[b"speakerops.embedding_dim"])
        ts = t.column("timestamp")
        mask = None
        if t0 is not None:
            mask = pc.greater_equal(ts, pa.scalar(t0, ts.type))
        if t1 is not None:
            m1 = pc.less(ts, pa.scalar(t1, ts.type))
            mask = m1 if mask is None else pc.and_(mask, m1)
        if mask is not None:
            t = t.filter(mask)
        if t.num_rows:
            by_dim.setdefault(dim, []).append((t, str(f)))
    for dim, parts in by_dim.items():
        frames.extend(_table_to_frame(t, dim, ring, src) for t, src in parts)
    if not frames:
        empty = pd.DataFrame({c: pd.Series(dtype="object") for c in META_COLUMNS})
        empty["timestamp"] = pd.Series(dtype="datetime64[us, UTC]")
        return empty
    df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    df = df.sort_values("timestamp", kind="stable").reset_index(drop=True)
    meta = [c for c in df.columns if c in META_COLUMNS]
    return df[meta + embedding_columns(df)]
