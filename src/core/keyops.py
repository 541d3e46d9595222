"""The key commands: ``speakerops keys init`` and ``speakerops keys rotate`` (see
:mod:`speakerops.core.keys` for the scheme)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from speakerops.core.keys import (
    MASTER_KEY_ENV,
    MASTER_KEY_FILE_ENV,
    KeyMaterialError,
    default_master_key_file,
    key_id,
    keyring_from_cfg,
    new_key_text,
    parse_key,
    write_key_file,
)

NEW_MASTER_KEY_ENV = "SPEAKEROPS_NEW_DATA_KEY"


def master_key_source(key_file: str | Path | None = None) -> str:
    """Where the master key comes from now: ``env`` or the key file's path ('' when none)."""
    if os.environ.get(MASTER_KEY_ENV):
        return "env"
    for cand in (os.environ.get(MASTER_KEY_FILE_ENV), key_file, default_master_key_file()):
        if cand and Path(cand).is_file():
            return str(cand)
    return ""


def init_keys(cfg: Any) -> str:
    """``speakerops keys init``: create the master key file when no key is configured; returns
    a line saying where the key is."""
    configured = (cfg.get("keys") or {}).get("master_key_file")
    source = master_key_source(configured)
    if source == "env":
        return f"master key from ${MASTER_KEY_ENV} (nothing to create)"
    if source:
        return f"master key file {source} already exists (nothing to create)"
    target = os.environ.get(MASTER_KEY_FILE_ENV) or configured or default_master_key_file()
    path = write_key_file(target)
    return f"wrote a new master key to {path} (mode 0600): back it up; without it the data is lost"


def rotate_keys(cfg: Any, *, retire: bool = False, purpose: str | None = None) -> str:
    """``speakerops keys rotate``: re-wrap every data key under a new master key (from
    ``SPEAKEROPS_NEW_DATA_KEY``, or generated into the key file), or with ``purpose=`` start a
    new data key for that purpose. Nothing is re-encrypted; returns a summary line."""
    ring = keyring_from_cfg(cfg)
    if purpose:
        kid = ring.rotate_data_key(purpose)
        return f"new data key {kid} for {purpose!r}; older keys of it stay for reading"
    configured = (cfg.get("keys") or {}).get("master_key_file")
    source = master_key_source(configured)
    new_text = os.environ.get(NEW_MASTER_KEY_ENV)
    if new_text is None and source == "env":
        raise KeyMaterialError(
            f"the master key comes from ${MASTER_KEY_ENV}: put the new one in "
            f"${NEW_MASTER_KEY_ENV} (from your secret store), rotate, then swap the variables"
        )
    new_text = new_text or new_key_text()
    new_master = parse_key(new_text, NEW_MASTER_KEY_ENV)
    n = ring.rotate_master(new_master, retire_old=retire)
    where = "set it as $" + MASTER_KEY_ENV
    if source and source != "env":
        old = Path(source)
        backup = old.with_name(old.name + ".previous")
        if not retire:
            write_key_file(backup, old.read_text().strip(), overwrite=True)
        write_key_file(old, new_text, overwrite=True)
        where = f"written to {old}" + ("" if retire else f" (the old one kept as {backup})")
    state = "old master retired" if retire else "old master still unwraps them until --retire"
    return f"re-wrapped {n} data key(s) under master {key_id(new_master)} ({where}); {state}"
