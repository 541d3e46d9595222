"""The master key of the product's one key provider (:mod:`speakerops.core.keys`).

32 random bytes that never touch the data: env ``SPEAKEROPS_DATA_KEY`` (64 hex characters or
base64), else the key file named by ``SPEAKEROPS_DATA_KEY_FILE``, else the configured
``keys.master_key_file``, else ``$XDG_CONFIG_HOME/speakerops/master.key`` (``speakerops keys
init`` creates one, mode 0600). A missing or malformed key is a :class:`KeyMaterialError` that
says what to do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from pathlib import Path

MASTER_KEY_ENV = "SPEAKEROPS_DATA_KEY"
MASTER_KEY_FILE_ENV = "SPEAKEROPS_DATA_KEY_FILE"
KEY_BYTES = 32


class KeyMaterialError(ValueError):
    """A key is missing, malformed or wrong, or a blob fails authentication."""


def parse_key(text: str | bytes, what: str = MASTER_KEY_ENV) -> bytes:
    """32 key bytes from 64 hex characters or base64 (standard or URL-safe)."""
    raw = text.decode() if isinstance(text, bytes) else text
    raw = raw.strip()
    if len(raw) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(raw)
        except ValueError:
            pass
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=False)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise KeyMaterialError(
            f"{what}: not a {KEY_BYTES}-byte key (give 64 hex characters or base64 of "
            f"{KEY_BYTES} random bytes; `speakerops keys init` writes one)"
        )
    return key


def new_key_text() -> str:
    """A fresh random master key as 64 hex characters."""
    return secrets.token_hex(KEY_BYTES)


def default_master_key_file() -> Path:
    """``$XDG_CONFIG_HOME/speakerops/master.key`` (``~/.config/...``): outside every project."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "speakerops" / "master.key"


def write_key_file(path: str | Path, text: str | None = None, *, overwrite: bool = False) -> Path:
    """Write a master key file readable by its owner only; refuses to replace one."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise KeyMaterialError(f"{path}: a key file is already there (it would be lost)")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = text or new_key_text()
    parse_key(text, str(path))
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    os.replace(tmp, path)
    return path


def load_master_key(key_file: str | Path | None = None) -> bytes:
    """The master key: env ``SPEAKEROPS_DATA_KEY``, else ``SPEAKEROPS_DATA_KEY_FILE``, else
    ``key_file`` (the configured ``keys.master_key_file``), else the default key file."""
    env = os.environ.get(MASTER_KEY_ENV)
    if env:
        return parse_key(env, MASTER_KEY_ENV)
    candidates = [os.environ.get(MASTER_KEY_FILE_ENV), key_file, default_master_key_file()]
    for cand in candidates:
        if cand and Path(cand).is_file():
            return parse_key(Path(cand).read_text(), str(cand))
    named = [str(c) for c in candidates if c]
    raise KeyMaterialError(
        f"no master key: set {MASTER_KEY_ENV} (64 hex characters) or {MASTER_KEY_FILE_ENV}, or "
        f"run `speakerops keys init` to create {named[-1]}; biometric data is never written "
        "in plaintext"
    )


def key_id(key: bytes) -> str:
    """A public 16-hex-character name for a key (never the key)."""
    return hashlib.sha256(b"speakerops-key-id\x00" + key).hexdigest()[:16]
