"""Keys for biometric data at rest: the product's one key provider.

Envelope encryption, as KMS-style systems do it:

* a **master key** (32 random bytes) that never touches the data: env ``SPEAKEROPS_DATA_KEY``
  (64 hex characters or base64), else the key file named by ``SPEAKEROPS_DATA_KEY_FILE``, else
  the configured ``keys.master_key_file`` (``speakerops keys init`` creates one, mode 0600);
* a **keyring** file (``keys.keyring``, by default ``<registry_dir>/keyring.json``) of data keys,
  one or more per *purpose* (``production-log``, ``reference``, ``cohort``, ``audit``,
  ``pseudonym``, ``tenant:<name>``...), each stored only wrapped (AES-256-GCM) under the master;
* data encrypted with AES-256-GCM under a data key. A blob is
  ``b"SOK1" | key id (8 bytes) | nonce (12 bytes) | ciphertext + tag``; the caller's context
  (model version, tenant, pseudonymous speaker key...) is bound as associated data, so a blob
  copied to another row fails to decrypt.

Rotation (``speakerops keys rotate``) re-wraps every data key under a new master key; the old
wrapping stays until ``--retire`` removes it, so readers holding the old master keep working
while the new one is rolled out (no downtime, nothing re-encrypted). ``rotate_data_key`` starts a
new data key for new writes; blobs name their key id, so old blobs still decrypt.

Pseudonyms are ``HMAC-SHA256(pseudonym key, value)``: the key is ``SPEAKEROPS_PSEUDONYM_KEY``
when set (a shared secret between sites), else the keyring's ``pseudonym`` data key, which no
rotation changes (pseudonyms must stay stable for grouping).

A missing or wrong key is always a :class:`KeyMaterialError` that says what to do; decryption
never returns garbage (GCM authenticates every byte).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from speakerops.core.master_key import (  # noqa: F401  (re-exported: the key provider's API)
    KEY_BYTES,
    MASTER_KEY_ENV,
    MASTER_KEY_FILE_ENV,
    KeyMaterialError,
    default_master_key_file,
    key_id,
    load_master_key,
    new_key_text,
    parse_key,
    write_key_file,
)

PSEUDONYM_KEY_ENV = "SPEAKEROPS_PSEUDONYM_KEY"
KEYRING_ENV = "SPEAKEROPS_KEYRING"
MAGIC = b"SOK1"
MIN_PSEUDONYM_KEY_BYTES = 16
_ID_BYTES = 8
_NONCE_BYTES = 12
KEYRING_FORMAT = 1
# purposes whose key must never change (the value derived from it must stay stable)
STABLE_PURPOSES = frozenset({"pseudonym"})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Keyring:
    """The data keys of one store, wrapped under the master key (see the module docstring)."""

    def __init__(self, path: str | Path, master: bytes) -> None:
        if len(master) != KEY_BYTES:
            raise KeyMaterialError(f"master key must be {KEY_BYTES} bytes, got {len(master)}")
        self.path = Path(path)
        self.master = master
        self.master_id = key_id(master)
        self._cache: dict[str, bytes] = {}
        self._seen: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    def _peek(self) -> dict[str, Any]:
        """The keyring as last read, re-read when the file changed (its inode, size or mtime:
        writes replace it whole); read-only: the service asks for its keys on every request."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return self._read()
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._seen is None or self._seen[0] != stamp:
            self._seen = (stamp, self._read())
        return self._seen[1]

    # -- the file -------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {"format": KEYRING_FORMAT, "keys": {}}
        try:
            doc = json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            raise KeyMaterialError(f"{self.path}: keyring is not valid JSON ({exc})") from exc
        if doc.get("format") != KEYRING_FORMAT or not isinstance(doc.get("keys"), dict):
            raise KeyMaterialError(f"{self.path}: not a speakerops keyring (format 1)")
        return doc

    def _write(self, doc: dict[str, Any]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    # -- wrapping -------------------------------------------------------------------------
    @staticmethod
    def _wrap_aad(kid: str, purpose: str) -> bytes:
        return f"speakerops-keyring\x00{purpose}\x00{kid}".encode()

    def _wrap(self, master: bytes, kid: str, purpose: str, key: bytes) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        return _b64(nonce + AESGCM(master).encrypt(nonce, key, self._wrap_aad(kid, purpose)))

    def _unwrap(self, kid: str, entry: dict[str, Any]) -> bytes:
        wrapped = entry.get("wrapped", {}).get(self.master_id)
        if wrapped is None:
            raise KeyMaterialError(
                f"{self.path}: data key {kid} is not wrapped for this master key "
                f"(id {self.master_id}; the keyring knows {sorted(entry.get('wrapped', {}))}): "
                f"wrong {MASTER_KEY_ENV}, or the key was retired after a rotation"
            )
        blob = _unb64(wrapped)
        try:
            key = AESGCM(self.master).decrypt(
                blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], self._wrap_aad(kid, entry["purpose"])
            )
        except InvalidTag as exc:
            raise KeyMaterialError(
                f"{self.path}: data key {kid} does not unwrap (keyring edited or wrong key)"
            ) from exc
        if key_id(key) != kid:
            raise KeyMaterialError(f"{self.path}: data key {kid} does not match its id")
        return key

    # -- data keys ------------------------------------------------------------------------
    def key_by_id(self, kid: str) -> bytes:
        if kid not in self._cache:
            doc = self._peek()
            entry = doc["keys"].get(kid)
            if entry is None:
                raise KeyMaterialError(
                    f"{self.path}: no data key {kid} in the keyring (the data was encrypted "
                    "with another store's keys, or the keyring was replaced)"
                )
            self._cache[kid] = self._unwrap(kid, entry)
        return self._cache[kid]

    def active_key(self, purpose: str, *, create: bool = True) -> tuple[str, bytes]:
        """The (id, key) that new data of `purpose` is encrypted with (created on first use)."""
        doc = self._peek()
        for kid, entry in doc["keys"].items():
            if entry["purpose"] == purpose and entry.get("active"):
                return kid, self.key_by_id(kid)
        if not create:
            raise KeyMaterialError(f"{self.path}: no data key for {purpose!r}")
        with self._locked():
            doc = self._read()  # another process may have created it meanwhile
            for kid, entry in doc["keys"].items():
                if entry["purpose"] == purpose and entry.get("active"):
                    return kid, self.key_by_id(kid)
            kid = self._add_key(doc, purpose)
        return kid, self._cache[kid]

    def rotate_data_key(self, purpose: str) -> str:
        """A new active data key for `purpose`; older ones stay for reading. Returns its id."""
        if purpose in STABLE_PURPOSES:
            raise KeyMaterialError(
                f"the {purpose!r} key derives stable values (pseudonyms): rotating it would "
                "break every stored pseudonym"
            )
        with self._locked():
            doc = self._read()
            for entry in doc["keys"].values():
                if entry["purpose"] == purpose:
                    entry["active"] = False
            return self._add_key(doc, purpose)

    def _add_key(self, doc: dict[str, Any], purpose: str) -> str:
        """A new active data key of `purpose` in `doc`, written (the caller holds the lock)."""
        key = os.urandom(KEY_BYTES)
        kid = key_id(key)
        doc["keys"][kid] = {
            "purpose": purpose,
            "active": True,
            "created": _utc_now(),
            "wrapped": {self.master_id: self._wrap(self.master, kid, purpose, key)},
        }
        self._write(doc)
        self._cache[kid] = key
        return kid

    def rotate_master(self, new_master: bytes, *, retire_old: bool = False) -> int:
        """Wrap every data key under `new_master` too (and drop the other wrappings when
        `retire_old`); returns how many keys were re-wrapped. Data is not re-encrypted."""
        if len(new_master) != KEY_BYTES:
            raise KeyMaterialError(f"new master key must be {KEY_BYTES} bytes")
        new_id = key_id(new_master)
        with self._locked():
            doc = self._read()
            for kid, entry in doc["keys"].items():
                key = self._unwrap(kid, entry)
                entry["wrapped"][new_id] = self._wrap(new_master, kid, entry["purpose"], key)
                if retire_old:
                    entry["wrapped"] = {new_id: entry["wrapped"][new_id]}
            self._write(doc)
        return len(doc["keys"])

    def status(self) -> dict[str, Any]:
        """Key ids, purposes and which masters wrap them (no key material)."""
        doc = self._read()
        return {
            "keyring": str(self.path),
            "master_id": self.master_id,
            "keys": [
                {
                    "id": kid,
                    "purpose": e["purpose"],
                    "active": bool(e.get("active")),
                    "created": e.get("created"),
                    "masters": sorted(e.get("wrapped", {})),
                }
                for kid, e in sorted(doc["keys"].items(), key=lambda kv: kv[1]["purpose"])
            ],
        }

    # -- data -----------------------------------------------------------------------------
    def encrypt(self, purpose: str, data: bytes, aad: bytes = b"") -> bytes:
        kid, key = self.active_key(purpose)
        nonce = os.urandom(_NONCE_BYTES)
        kid_b = bytes.fromhex(kid)
        return MAGIC + kid_b + nonce + AESGCM(key).encrypt(nonce, data, MAGIC + kid_b + aad)

    def decrypt(self, blob: bytes, aad: bytes = b"", what: str = "data") -> bytes:
        head = len(MAGIC) + _ID_BYTES + _NONCE_BYTES
        if not isinstance(blob, (bytes, bytearray)) or len(blob) < head + 16:
            raise KeyMaterialError(f"{what}: not a speakerops encrypted blob (too short)")
        if blob[: len(MAGIC)] != MAGIC:
            raise KeyMaterialError(f"{what}: not a speakerops encrypted blob (bad magic)")
        kid_b = bytes(blob[len(MAGIC) : len(MAGIC) + _ID_BYTES])
        nonce = bytes(blob[len(MAGIC) + _ID_BYTES : head])
        key = self.key_by_id(kid_b.hex())
        try:
            return AESGCM(key).decrypt(nonce, bytes(blob[head:]), MAGIC + kid_b + aad)
        except InvalidTag as exc:
            raise KeyMaterialError(
                f"{what}: does not authenticate (tampered, or bound to another context)"
            ) from exc

    def encrypt_array(self, purpose: str, array: np.ndarray, aad: bytes = b"") -> bytes:
        """A numeric array (its dtype and shape authenticated with it)."""
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        return self.encrypt(purpose, buf.getvalue(), aad)

    def decrypt_array(self, blob: bytes, aad: bytes = b"", what: str = "array") -> np.ndarray:
        return np.load(io.BytesIO(self.decrypt(blob, aad, what)), allow_pickle=False)

    def pseudonym_key(self) -> bytes:
        env = os.environ.get(PSEUDONYM_KEY_ENV)
        if env:
            return check_pseudonym_key(env)
        return self.active_key("pseudonym")[1]

    def pseudonym(self, value: str) -> str:
        """``HMAC-SHA256(pseudonym key, value)`` as 64 hex characters."""
        return pseudonym(value, self.pseudonym_key())

    def mac(self, purpose: str, data: bytes) -> str:
        """``HMAC-SHA256(data key of purpose, data)`` as hex (e.g. the audit chain)."""
        return hmac.new(self.active_key(purpose)[1], data, hashlib.sha256).hexdigest()


def check_pseudonym_key(key: bytes | str) -> bytes:
    """A pseudonym secret as bytes; refuses short ones (speaker ids are low-entropy)."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    if len(key) < MIN_PSEUDONYM_KEY_BYTES:
        raise ValueError(
            f"pseudonym key is {len(key)} bytes; use a secret of at least "
            f"{MIN_PSEUDONYM_KEY_BYTES} bytes (speaker ids are low-entropy, a short key lets "
            "anyone brute-force the pseudonyms)"
        )
    return key


def pseudonym(value: str, key: bytes) -> str:
    """``HMAC-SHA256(key, value.encode("utf-8")).hexdigest()`` (64 hex chars)."""
    return hmac.new(key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()


def keyring_path(registry_dir: str | Path, configured: str | Path | None = None) -> Path:
    """``SPEAKEROPS_KEYRING``, else the configured ``keys.keyring``, else the store's own."""
    env = os.environ.get(KEYRING_ENV)
    if env:
        return Path(env)
    if configured:
        return Path(configured)
    return Path(registry_dir) / "keyring.json"


def open_keyring(
    registry_dir: str | Path,
    *,
    keyring: str | Path | None = None,
    master_key_file: str | Path | None = None,
) -> Keyring:
    """The keyring of a store with the master key from the environment / key file."""
    return Keyring(keyring_path(registry_dir, keyring), load_master_key(master_key_file))


def keyring_from_cfg(cfg: Any) -> Keyring:
    """The keyring named by a composed config (``keys.keyring``, else the store's own in
    ``paths.registry_dir``) with the master key from the environment / ``keys.master_key_file``."""
    keys_cfg = cfg.get("keys") or {}
    registry_dir = (cfg.get("paths") or {}).get("registry_dir")
    configured = keys_cfg.get("keyring")
    if not (registry_dir or configured or os.environ.get(KEYRING_ENV)):
        raise KeyMaterialError(
            "the config names no keyring: set keys.keyring or paths.registry_dir "
            f"(or env {KEYRING_ENV})"
        )
    return open_keyring(
        registry_dir or ".", keyring=configured, master_key_file=keys_cfg.get("master_key_file")
    )
