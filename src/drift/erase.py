"""Erasure from the production log: every row of one speaker pseudonym goes (``DELETE`` of a
speaker in the service; the log layout is :mod:`speakerops.drift.log`'s)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from speakerops.drift.parts import PART_GLOB, log_lock, read_part


def erase_speaker(log_dir: str | Path, speaker_key: str) -> int:
    """Erasure: remove every row whose ``speaker_key`` is `speaker_key` (a pseudonym from
    :func:`speaker_pseudonym`) from the log; returns how many rows went. A part that holds such
    rows is rewritten without them (atomically: readers see the old or the new part) or removed
    when nothing is left; appends never touch an existing part, and erasures take the log's lock
    (:func:`~speakerops.drift.parts.log_lock`, shared with compaction) so two of them never
    rewrite one part from the same original."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return 0
    removed = 0
    with log_lock(log_dir):
        for f in sorted(log_dir.glob(PART_GLOB)):
            t = read_part(f)
            if "speaker_key" not in t.column_names:
                continue
            hit = pc.fill_null(pc.equal(t.column("speaker_key"), speaker_key), False)
            n = pc.sum(hit).as_py() or 0
            if not n:
                continue
            removed += n
            if n == t.num_rows:
                f.unlink()
                continue
            tmp = f.with_suffix(".parquet.tmp")
            pq.write_table(t.filter(pc.invert(hit)), tmp)
            os.replace(tmp, f)
    return removed
