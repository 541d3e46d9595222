"""The part files of the production log (layout: :mod:`speakerops.drift.log`): listing them by
partition, reading one, and reading them consistently beside a running compaction or erasure
(:mod:`speakerops.drift.compact`, :mod:`speakerops.drift.erase`), which rewrite parts under
one lock (:func:`log_lock`)."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PART_GLOB = "model_name=*/model_version=*/date=*/part-*.parquet"
REPLACES_KEY = b"speakerops.replaces"  # a compacted part's metadata: the parts it replaces
LOCK_NAME = ".erase.lock"  # taken by erasure and compaction, the two that rewrite parts


@contextmanager
def log_lock(log_dir: Path) -> Iterator[None]:
    """The log's exclusive lock: one part rewriter (erasure, compaction) at a time."""
    with open(log_dir / LOCK_NAME, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read_part(path: Path) -> pa.Table:
    """One part's table; FileNotFoundError when it is gone, ValueError naming it when corrupt."""
    try:
        return pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        if not path.exists():
            raise FileNotFoundError(f"production log part {path} is gone") from exc
        raise ValueError(f"cannot read production log part {path}: {exc}") from exc


def partition_values(path: Path) -> dict[str, str]:
    return dict(p.split("=", 1) for p in path.parts if "=" in p)


def _listed_parts(
    log_dir: Path, model_name: str | None, model_version: str | None, d0: date | None,
    d1: date | None,
) -> list[Path]:  # fmt: skip
    files = []
    for f in sorted(log_dir.glob(PART_GLOB)):
        pv = partition_values(f.relative_to(log_dir))
        if model_name is not None and pv.get("model_name") != str(model_name):
            continue
        if model_version is not None and pv.get("model_version") != str(model_version):
            continue
        try:
            day = date.fromisoformat(pv["date"])
        except (KeyError, ValueError):
            continue
        if (d0 is not None and day < d0) or (d1 is not None and day > d1):
            continue
        files.append(f)
    return files


def read_parts(
    log_dir: Path, model_name: str | None = None, model_version: str | None = None,
    d0: date | None = None, d1: date | None = None,
) -> list[tuple[Path, pa.Table]]:  # fmt: skip
    """The tables of the parts of `log_dir` for that model, version and date range (None:
    any), less those a compacted part replaces (:mod:`speakerops.drift.compact`); listed again
    when a part went away meanwhile (compacted or erased), so no row is read twice or missed."""
    for _ in range(5):
        tables: list[tuple[Path, pa.Table]] = []
        for f in _listed_parts(log_dir, model_name, model_version, d0, d1):
            try:
                tables.append((f, read_part(f)))
            except FileNotFoundError:
                break
        else:
            gone = {(f.parent, n) for f, t in tables for n in replaced_parts(t.schema.metadata)}
            return [(f, t) for f, t in tables if (f.parent, f.name) not in gone]
    raise ValueError(f"production log {log_dir}: parts kept going away while it was read; retry")


def replaced_parts(metadata: dict[bytes, bytes] | None) -> set[str]:
    """The part file names a compacted part's schema metadata says it replaces."""
    raw = (metadata or {}).get(REPLACES_KEY)
    return set(json.loads(raw.decode())) if raw else set()
