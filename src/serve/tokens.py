"""Tenants' bearer tokens: a JSON file of ``{tenant: {token_id: sha256(token)}}``.

A token is 32 random bytes (URL-safe base64) shown once when issued (``speakerops serve-token
tenant=<name>``); only its SHA-256 is stored (a random 256-bit secret needs no slow hash). The
``token_id`` (public, 12 hex) names the token in the audit log. A request for tenant T needs a
token of T: no token or an unknown one is 401, a valid token of another tenant is 403.
Admin tokens (``speakerops serve-token admin=true``) are kept under the key ``@admin``, which no
tenant name can be; they open the ``/admin`` routes and no tenant's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
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


def _read(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: tokens file is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise ValueError(f"{path}: tokens file must map tenant -> {{token_id: sha256}}")
    return doc


def issue_token(path: str | Path, tenant: str) -> tuple[str, str]:
    """Add a new token for `tenant` (or :data:`ADMIN`); returns (token_id, token). The token
    is not stored."""
    path = Path(path)
    if tenant != ADMIN:
        check_tenant(tenant)
    doc = _read(path)
    token = secrets.token_urlsafe(32)
    token_id = secrets.token_hex(6)
    doc.setdefault(tenant, {})[token_id] = _digest(token)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return token_id, token


class TokenBook:
    """The tokens file, read once (re-read with :meth:`reload`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.reload()

    def reload(self) -> None:
        self._doc = _read(self.path)
        self._by_digest = {
            digest: (tenant, tid)
            for tenant, tokens in self._doc.items()
            for tid, digest in tokens.items()
        }

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
