"""Tenants' bearer tokens: a JSON file of ``{tenant: {token_id: {"sha256", "label", "created_at"}}}``
(an entry that is only the ``sha256`` string, the first layout, is read as well).

A token is 32 random bytes (URL-safe base64) shown once when issued (``speakerops serve-token
tenant=<name>``); only its SHA-256 is stored (a random 256-bit secret needs no slow hash). The
``token_id`` (public, 12 hex) names the token in the audit log. A request for tenant T needs a
token of T: no token or an unknown one is 401, a valid token of another tenant is 403.
Admin tokens (``speakerops serve-token admin=true``) are kept under the key ``@admin``, which no
tenant name can be; they open the ``/admin`` routes and no tenant's.

A token may carry a ``label`` (who it is for). A program that issues tokens for itself (the
drift demo's ``via=api``) passes ``replace=True`` so its earlier token of the same label is
dropped instead of piling up, and revokes it when done (:func:`revoke_token`,
``speakerops serve-token revoke=<token_id>``). Writes hold a file lock and replace the file
whole; a running service re-reads it when it changed (every worker), so an issued token works
and a revoked one stops working without a restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from speakerops.serve.errors import ServeError

TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ADMIN = "@admin"  # the tokens file's key of admin tokens (not a valid tenant name)


def check_tenant(tenant: str) -> str:
    if not isinstance(tenant, str) or not TENANT_RE.match(tenant):
        raise ValueError(
            f"tenant {tenant!r}: use 1-64 letters, digits, '.', '_' or '-' (starting with a "
            "letter or digit)"
        )
    return tenant


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _read(path: Path) -> dict[str, dict[str, dict]]:
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: tokens file is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise ValueError(f"{path}: tokens file must map tenant -> {{token_id: entry}}")
    out: dict[str, dict[str, dict]] = {}
    for tenant, tokens in doc.items():
        out[tenant] = {}
        for tid, entry in tokens.items():
            entry = {"sha256": entry} if isinstance(entry, str) else entry
            if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
                raise ValueError(f"{path}: token {tid} of {tenant!r} has no sha256")
            out[tenant][tid] = entry
    return out


@contextmanager
def _locked(path: Path) -> Iterator[dict[str, dict[str, dict]]]:
    """The tokens file read under an exclusive lock, written back (whole) on exit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            doc = _read(path)
            yield doc
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({t: v for t, v in doc.items() if v}, fh, indent=1, sort_keys=True)
            os.replace(tmp, path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def issue_token(
    path: str | Path, tenant: str, *, label: str | None = None, replace: bool = False
) -> tuple[str, str]:
    """Add a new token for `tenant` (or :data:`ADMIN`); returns (token_id, token). The token
    is not stored. ``replace=True`` (with a `label`) first drops the tenant's tokens of that
    label."""
    path = Path(path)
    if tenant != ADMIN:
        check_tenant(tenant)
    if replace and not label:
        raise ValueError("issue_token: replace=True needs the label of the tokens it replaces")
    token = secrets.token_urlsafe(32)
    token_id = secrets.token_hex(6)
    entry = {"sha256": _digest(token), "created_at": datetime.now(timezone.utc).isoformat()}
    if label:
        entry["label"] = str(label)
    with _locked(path) as doc:
        mine = doc.setdefault(tenant, {})
        if replace:
            for tid in [t for t, e in mine.items() if e.get("label") == label]:
                del mine[tid]
        mine[token_id] = entry
    return token_id, token


def revoke_token(path: str | Path, token_id: str) -> str | None:
    """Remove the token `token_id` (of any tenant); returns its tenant, None when unknown."""
    path = Path(path)
    if not path.is_file():
        return None
    with _locked(path) as doc:
        for tenant, tokens in doc.items():
            if tokens.pop(token_id, None) is not None:
                return tenant
    return None


class TokenBook:
    """The tokens file, re-read when it changed (checked per request: one ``stat``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple | None = None
        self.reload()

    def _file_stamp(self) -> tuple | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def reload(self) -> None:
        self._stamp = self._file_stamp()
        self._doc = _read(self.path)
        self._by_digest = {
            entry["sha256"]: (tenant, tid)
            for tenant, tokens in self._doc.items()
            for tid, entry in tokens.items()
        }

    def _current(self) -> None:
        if self._file_stamp() != self._stamp:
            self.reload()

    def tenants(self) -> list[str]:
        return sorted(t for t in self._doc if t != ADMIN)

    def authenticate(self, tenant: str, authorization: str | None) -> str:
        """The token id of a valid ``Authorization: Bearer <token>`` for `tenant`."""
        if not authorization:
            raise ServeError(
                401, "auth.missing", "no bearer token: send 'Authorization: Bearer <token>'"
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ServeError(401, "auth.malformed", "Authorization header must be 'Bearer <token>'")
        self._current()
        digest = _digest(token.strip())
        match = next(
            (v for d, v in self._by_digest.items() if hmac.compare_digest(d, digest)), None
        )
        if match is None:
            raise ServeError(401, "auth.invalid", "bearer token not recognized")
        owner, token_id = match
        if owner == ADMIN and tenant != ADMIN:
            raise ServeError(
                403, "auth.tenant", f"an admin token opens /admin routes, not tenant {tenant!r}'s"
            )
        if owner != tenant and tenant == ADMIN:
            raise ServeError(403, "auth.admin", "this route needs an admin token")
        if owner != tenant:
            raise ServeError(
                403, "auth.tenant", f"this token belongs to another tenant, not to {tenant!r}"
            )
        return token_id
