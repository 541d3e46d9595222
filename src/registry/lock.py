"""One promotion at a time per registered model.

``promote``, ``gate`` and ``rollback`` hold this lock from reading the champion to writing the
audit record, so a second promotion started at the same moment waits, then reads the champion
the first one left and is compared with it (never with the champion both saw at the start).

Where the lock lives:

* ``register.lock_url`` set (a PostgreSQL URL, e.g. the team's MLflow backend database): a
  session-level ``pg_advisory_lock`` on a key derived from the model name. It works across
  machines and is released by the server when the holder dies (connection closed).
* else, with the embedded store (sqlite tracking URI): an exclusive ``flock`` on
  ``<registry_dir>/locks/<model>.promote.lock``, released by the kernel when the holder dies.
* a remote tracking server (``http(s)://``) without ``register.lock_url`` is refused: a file
  lock on one runner cannot serialize promotions from several.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOCK_NAMESPACE = "speakerops-promote"


class LockTimeout(TimeoutError):
    """Another promotion of the same model held the lock for longer than the timeout."""


def advisory_key(model_name: str) -> int:
    """A signed 64-bit key for ``pg_advisory_lock``, stable across processes and machines."""
    digest = hashlib.sha256(f"{LOCK_NAMESPACE}\x00{model_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def state_path(registry_dir: str | Path, model_name: str, suffix: str) -> Path:
    """``<registry_dir>/locks/<model>.<suffix>``: the lock file and the promotion journal."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name)
    return Path(registry_dir) / "locks" / f"{safe}.{suffix}"


def _file_lock_path(registry_dir: str | Path, model_name: str) -> Path:
    return state_path(registry_dir, model_name, "promote.lock")


@contextmanager
def _file_lock(path: Path, timeout_s: float) -> Iterator[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeout(
                        f"{path}: another promotion of this model held the lock for over "
                        f"{timeout_s:.0f} s (register.lock_timeout_s)"
                    ) from None
                time.sleep(0.1)
        try:
            yield f"file:{path}"
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def _pg_lock(url: str, model_name: str, timeout_s: float) -> Iterator[str]:
    import psycopg

    key = advisory_key(model_name)
    dsn = re.sub(r"^postgresql\+\w+://", "postgresql://", url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + timeout_s
        while not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise LockTimeout(
                    f"PostgreSQL advisory lock {key} ({model_name}): another promotion held it "
                    f"for over {timeout_s:.0f} s (register.lock_timeout_s)"
                )
            time.sleep(0.1)
        try:
            yield f"pg_advisory_lock:{key}"
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


@contextmanager
def promotion_lock(cfg: Any, model_name: str, tracking_uri: str) -> Iterator[str]:
    """Hold the model's promotion lock (see the module docstring); yields its description."""
    url = cfg.register.get("lock_url")
    timeout_s = float(cfg.register.lock_timeout_s)
    if url:
        if not str(url).startswith("postgresql"):
            raise ValueError(f"register.lock_url={url!r}: expected a postgresql:// URL")
        with _pg_lock(str(url), model_name, timeout_s) as held:
            yield held
        return
    if tracking_uri.startswith(("http://", "https://")):
        raise ValueError(
            f"the tracking server {tracking_uri} is shared: set register.lock_url to a "
            "PostgreSQL URL (e.g. the server's backend database) so that promotions from "
            "different machines take one lock"
        )
    with _file_lock(_file_lock_path(cfg.paths.registry_dir, model_name), timeout_s) as held:
        yield held
