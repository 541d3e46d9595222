"""`speakerops drift compact`: each partition of the production log as one part, the same rows
(still encrypted) before and after, safe against a compaction killed half-way, erasure and
appends after it; a bad part is reported and its partition left as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from speakerops.cli import EXIT_ERROR, main
from speakerops.drift.erase import erase_speaker
from speakerops.drift.log import append_production_log, read_production_log, speaker_pseudonym
from speakerops.drift.parts import PART_GLOB

SHA = "c" * 64


def _log(log: Path, keyring, seed: int, day: str, n: int = 3, speaker: str | None = None) -> None:
    rng = np.random.default_rng(seed)
    append_production_log(
        log, rng.standard_normal((n, 8)).astype(np.float32), utt_ids=[f"req-{seed}-{i}" for i in range(n)],
        model_name="speaker-encoder", model_version="2", durations_s=rng.uniform(1, 5, n),
        sample_rates=[16000] * n, snr_db=rng.normal(20, 3, n), speaker_ids=[speaker] * n,
        cm_scores=rng.normal(0, 1, n), cm_sha256=SHA, keyring=keyring,
        timestamp=f"{day}T{10 + seed % 10:02d}:00:00Z",
    )  # fmt: skip


def _rows(log: Path, keyring) -> pd.DataFrame:
    return read_production_log(log, keyring=keyring).sort_values("utt_id").reset_index(drop=True)


def test_compact_keeps_every_row_encrypted_and_survives_a_killed_run(
    tmp_path, monkeypatch, keyring
):
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "log"
    for seed in range(5):
        _log(log, keyring, seed, "2026-11-30", speaker="alice" if seed == 1 else None)
    for seed in (5, 6):
        _log(log, keyring, seed, "2026-12-01")
    before = _rows(log, keyring)
    parts = sorted(log.glob(PART_GLOB))
    saved = tmp_path / "saved"
    saved.mkdir()
    for p in parts:
        shutil.copy(p, saved / p.name)
    assert len(parts) == 7 and len(before) == 21

    assert main(["drift", "compact", f"drift.log_dir={log}"]) == 0
    after_parts = sorted(log.glob(PART_GLOB))
    assert len(after_parts) == 2 and {p.parent.name for p in after_parts} == {"date=2026-11-30", "date=2026-12-01"}  # fmt: skip
    pd.testing.assert_frame_equal(_rows(log, keyring), before)
    # still encrypted: no embedding's float32 bytes in the compacted part; nothing else left over
    emb_cols = [c for c in before.columns if c.startswith("emb_")]
    raw = b"".join(p.read_bytes() for p in after_parts)
    assert not any(before.loc[i, emb_cols].to_numpy(np.float32).tobytes() in raw for i in range(len(before)))  # fmt: skip
    assert not [p for p in log.rglob("*") if p.is_file() and p.name != ".erase.lock" and p not in after_parts]  # fmt: skip

    # a run killed after the rename, before removing the old parts: readers skip them (named
    # in the compacted part's metadata), and the next run removes them, reading no row twice
    day = next(p for p in after_parts if p.parent.name == "date=2026-11-30")
    for name in [p.name for p in parts if p.parent == day.parent][:2]:
        shutil.copy(saved / name, day.parent / name)
    assert len(list(log.glob(PART_GLOB))) == 4
    pd.testing.assert_frame_equal(_rows(log, keyring), before)
    assert main(["drift", "compact", f"drift.log_dir={log}"]) == 0
    assert len(list(log.glob(PART_GLOB))) == 2
    pd.testing.assert_frame_equal(_rows(log, keyring), before)

    # erasure works on the compacted part; appends after it are read beside it
    alice = speaker_pseudonym("alice", keyring.pseudonym_key())
    assert erase_speaker(log, alice) == 3
    _log(log, keyring, 7, "2026-11-30")
    rows = _rows(log, keyring)
    assert len(rows) == 21 and alice not in set(rows["speaker_key"].dropna())
    assert (rows["cm_sha256"] == SHA).all()
    # and a compacted part compacts again with the parts appended after it
    assert main(["drift", "compact", f"drift.log_dir={log}"]) == 0
    assert len(list(log.glob(PART_GLOB))) == 2
    pd.testing.assert_frame_equal(_rows(log, keyring), rows)


def test_a_bad_part_is_reported_and_its_partition_left_as_it_was(tmp_path, monkeypatch, keyring, capsys):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "log"
    for seed in range(3):
        _log(log, keyring, seed, "2026-11-30")
    for seed in (3, 4):
        _log(log, keyring, seed, "2026-12-01")
    bad_day = log / "model_name=speaker-encoder" / "model_version=2" / "date=2026-12-01"
    (bad_day / "part-broken.parquet").write_bytes(b"PAR1 not a parquet file")
    held = sorted(bad_day.glob("part-*.parquet"))
    capsys.readouterr()
    assert main(["drift", "compact", f"drift.log_dir={log}"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "part-broken.parquet" in err and "date=2026-12-01" in err
    assert sorted(bad_day.glob("part-*.parquet")) == held  # untouched
    good_day = bad_day.parent / "date=2026-11-30"
    assert len(list(good_day.glob("part-*.parquet"))) == 1  # the other partition was compacted
    assert pq.read_table(next(good_day.glob("part-*.parquet"))).num_rows == 9
