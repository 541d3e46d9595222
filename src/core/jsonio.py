"""Deterministic JSON and sha256 digests: one way to write a figure file and to hash one."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def dumps(obj: Any) -> str:
    """Deterministic JSON (sorted keys, indented; NaN/inf written as null; numpy scalars as
    Python numbers), newline-terminated."""
    return json.dumps(clean(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def clean(obj: Any) -> Any:
    """`obj` with non-finite floats as None and numpy scalars as Python scalars."""
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else obj
    if isinstance(obj, Mapping):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return clean(obj.item())
    return obj


def canonical(obj: Any) -> str:
    """Compact canonical JSON (sorted keys; non-JSON values as str), for hashing."""
    return json.dumps(obj, sort_keys=True, default=str)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def sha256_json(obj: Any) -> str:
    """sha256 of `canonical(obj)`."""
    return sha256_text(canonical(obj))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
