"""A small HTTP client of the service (what ``speakerops enroll|verify|identify|forget`` use)::

    c = Client("http://127.0.0.1:8000", tenant="acme", token="...")
    c.enroll("alice", ["a1.flac", "a2.flac"])
    c.verify("alice", "probe.wav")      # {"decision": "accept", "llr": ..., ...}
    c.identify("probe.wav")             # {"speaker_id": "alice" | "unknown", "candidates": [...]}
    c.delete("alice")

A refused request raises :class:`ClientError` with the service's status, code and message.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from speakerops.serve.app import API_VERSION

_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg"}


class ClientError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        detail = err.get("message") or body
        super().__init__(f"HTTP {status}: {err.get('code', 'error')}: {detail}")
        self.status, self.body = status, body


def _content_type(path: Path) -> str:
    return (
        _TYPES.get(path.suffix.lower())
        or mimetypes.guess_type(path.name)[0]
        or "application/octet-stream"
    )


def _file(path: str | Path) -> tuple[str, bytes, str]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such audio file")
    return (p.name, p.read_bytes(), _content_type(p))


class Client:
    def __init__(
        self, url: str, tenant: str, token: str, timeout: float = 60.0, http: Any = None
    ) -> None:
        self.base = f"{url.rstrip('/')}/{API_VERSION}/{quote(tenant, safe='')}"
        self.http = http or httpx.Client(timeout=timeout)
        self.headers = {"Authorization": f"Bearer {token}"}

    def _call(self, method: str, path: str, **kwargs: Any) -> dict:
        resp = self.http.request(method, self.base + path, headers=self.headers, **kwargs)
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        if resp.status_code >= 400:
            raise ClientError(resp.status_code, body)
        return body

    def enroll(
        self,
        speaker_id: str,
        paths: list[str | Path],
        mode: str = "replace",
        channel: str | None = None,
    ) -> dict:
        files = [("files", _file(p)) for p in paths]
        data = {"mode": mode, **({} if channel is None else {"channel": channel})}
        return self._call(
            "POST", f"/speakers/{quote(speaker_id, safe='')}/enroll", files=files, data=data
        )

    def verify(
        self,
        speaker_id: str,
        path: str | Path,
        p_target: float | None = None,
        channel: str | None = None,
    ) -> dict:
        data: dict[str, Any] = {"speaker_id": speaker_id}
        if p_target is not None:
            data["p_target"] = str(p_target)
        if channel is not None:  # the recording channel, for the drift job
            data["channel"] = channel
        return self._call("POST", "/verify", files={"file": _file(path)}, data=data)

    def identify(self, path: str | Path, top_k: int | None = None) -> dict:
        data = {} if top_k is None else {"top_k": str(top_k)}
        return self._call("POST", "/identify", files={"file": _file(path)}, data=data)

    def delete(self, speaker_id: str) -> dict:
        return self._call("DELETE", f"/speakers/{quote(speaker_id, safe='')}")


TOKEN_ENV = "SPEAKEROPS_TOKEN"


def run_command(action: str, url: str, tenant: str, token: str | None, args: list[str]) -> dict:
    """``speakerops enroll SPEAKER FILE...``, ``verify SPEAKER FILE``, ``identify FILE``,
    ``forget SPEAKER`` against the service at `url` (token: argument, else ``$SPEAKEROPS_TOKEN``)."""
    token = token or os.environ.get(TOKEN_ENV)
    if not token:
        raise ValueError(f"no bearer token: pass --token or set {TOKEN_ENV}")
    shapes = {"enroll": 2, "verify": 2, "identify": 1, "forget": 1}
    if action not in shapes:
        raise ValueError(f"{action!r}: expected one of {sorted(shapes)}")
    if len(args) < shapes[action] or (action != "enroll" and len(args) != shapes[action]):
        usage = {
            "enroll": "SPEAKER FILE [FILE...]",
            "verify": "SPEAKER FILE",
            "identify": "FILE",
            "forget": "SPEAKER",
        }[action]
        raise ValueError(f"usage: speakerops {action} --url URL --tenant T {usage}")
    c = Client(url, tenant, token)
    if action == "enroll":
        return c.enroll(args[0], args[1:])
    if action == "verify":
        return c.verify(args[0], args[1])
    if action == "identify":
        return c.identify(args[0])
    return c.delete(args[0])
