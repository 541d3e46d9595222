"""Compaction of the production log (`speakerops drift compact`): the service writes one part
per request (:mod:`speakerops.drift.log`), so a busy day is thousands of small files, each
opened by every drift run; compaction rewrites each partition's parts as one.

Rows are moved as they are stored: the embeddings stay encrypted (their AES-GCM associated
data is (model name, version, utterance pseudonym), not the file), nothing is decrypted, and no
key is needed. Safe beside the running service and a drift job:

* appends never touch an existing part, and a part written after compaction listed the
  partition is left for the next run;
* compaction and erasure (:func:`~speakerops.drift.erase.erase_speaker`) take the same lock, so
  an erased speaker's rows never come back from a part compacted before the erasure;
* the compacted part is written under a temporary name and renamed into place, and names the
  parts it replaces in its metadata (``speakerops.replaces``) before they are removed: a reader
  that lists the folder in between skips them (:func:`replaced_parts`), and a compaction killed
  there is finished by the next run, which removes them without reading their rows twice.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from speakerops.drift.log import checked_part
from speakerops.drift.parts import PART_GLOB, REPLACES_KEY, log_lock, read_part, replaced_parts


def _compact_partition(folder: Path, parts: list[Path]) -> dict[str, Any] | None:
    tables = {p.name: checked_part(read_part(p), p) for p in parts}
    already = set().union(*(replaced_parts(t.schema.metadata) for t in tables.values()))
    live = {n: t for n, t in tables.items() if n not in already}  # a killed run's leftovers go
    dims = {t.schema.metadata[b"speakerops.embedding_dim"] for t in live.values()}
    if len(dims) > 1:
        raise ValueError(
            f"{folder}: parts of embedding sizes {sorted(int(d) for d in dims)} in one partition; "
            "left as they are"
        )
    removed = [n for n in tables if n in already]
    if len(live) < 2:
        for n in removed:
            (folder / n).unlink(missing_ok=True)
        return {"partition": str(folder), "parts": len(live), "rows": 0} if removed else None
    merged = pa.concat_tables(list(live.values()))
    merged = merged.sort_by([("timestamp", "ascending")])
    first = next(iter(live.values())).schema.metadata or {}
    meta = {**first, REPLACES_KEY: json.dumps(sorted(tables)).encode()}
    out = folder / f"part-{uuid.uuid4().hex}.parquet"
    tmp = folder / f".{out.name}.tmp"  # outside PART_GLOB until renamed
    pq.write_table(merged.replace_schema_metadata(meta), tmp)
    os.replace(tmp, out)
    for n in tables:
        (folder / n).unlink(missing_ok=True)
    return {"partition": str(folder), "parts": len(live), "rows": merged.num_rows}


def compact_production_log(log_dir: str | Path, min_parts: int = 2) -> dict[str, Any]:
    """Rewrite every partition of `log_dir` holding at least `min_parts` parts as one part
    (module doc); returns what it did: ``partitions`` compacted, ``parts_before``,
    ``parts_after``, ``rows`` moved, and ``errors`` (partitions left as they were, with why:
    the others are still compacted)."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        raise FileNotFoundError(f"production log folder {log_dir} does not exist")
    if min_parts < 2:
        raise ValueError(f"min_parts={min_parts}: expected >= 2")
    done: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    with log_lock(log_dir):
        before = sorted(log_dir.glob(PART_GLOB))
        for folder, parts in _by_folder(before).items():
            if len(parts) < min_parts:
                continue
            try:
                result = _compact_partition(folder, parts)
            except ValueError as exc:
                errors.append({"partition": str(folder), "error": str(exc)})
                continue
            if result is not None:
                done.append(result)
        after = len(list(log_dir.glob(PART_GLOB)))
    return {
        "log_dir": str(log_dir),
        "partitions": len(done),
        "parts_before": len(before),
        "parts_after": after,
        "rows": sum(d["rows"] for d in done),
        "errors": errors,
    }


def _by_folder(parts: Iterable[Path]) -> dict[Path, list[Path]]:
    out: dict[Path, list[Path]] = {}
    for p in parts:
        out.setdefault(p.parent, []).append(p)
    return out
