"""The part files of the production log (layout: :mod:`speakerops.drift.log`): listing them by
partition and reading them consistently beside a running compaction or erasure
(:mod:`speakerops.drift.compact`, :mod:`speakerops.drift.erase`)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

PART_GLOB = "model_name=*/model_version=*/date=*/part-*.parquet"
REPLACES_KEY = b"speakerops.replaces"  # a compacted part's metadata: the parts it replaces


def partition_values(path: Path) -> dict[str, str]:
    return dict(p.split("=", 1) for p in path.parts if "=" in p)


def _listed_parts(log_dir: Path, model_name, model_version, d0, d1) -> list[Path]:
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


def read_parts(log_dir: Path, *listing: Any) -> list[tuple[Path, pa.Table]]:
    """The listed parts' tables, less those a compacted part replaces
    (:mod:`speakerops.drift.compact`); listed again when a part went away meanwhile (compacted
    or erased), so no row is read twice or missed."""
    for _ in range(5):
        tables: list[tuple[Path, pa.Table]] = []
        for f in _listed_parts(log_dir, *listing):
            try:
                tables.append((f, pq.read_table(f)))
            except Exception as exc:  # pyarrow raises several types for corrupt files
                if not f.exists():
                    break
                raise ValueError(f"cannot read production log part {f}: {exc}") from exc
        else:
            gone = {(f.parent, n) for f, t in tables for n in replaced_parts(t.schema.metadata)}
            return [(f, t) for f, t in tables if (f.parent, f.name) not in gone]
    raise ValueError(f"production log {log_dir}: parts kept going away while it was read; retry")


def replaced_parts(metadata: dict[bytes, bytes] | None) -> set[str]:
    """The part file names a compacted part's schema metadata says it replaces."""
    raw = (metadata or {}).get(REPLACES_KEY)
    return set(json.loads(raw.decode())) if raw else set()
