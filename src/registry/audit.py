"""The promotion audit trail: an append-only JSONL log plus tags on the model version.

Each line of the log (default `registry/audit.jsonl`) is one JSON record:

    {"seq": 3, "timestamp": "2026-11-24T22:31:32Z", "user": "alice", "action": "promote",
     "model_name": "speaker-encoder", "candidate_version": "7", "champion_before": "5",
     "champion_after": "7", "verdict": "pass", "reasons": [...], "trials_sha256": "…",
     "report": "artifacts/promote/…/report.md", …, "prev_sha256": "<sha256 of line 2>"}

``prev_sha256`` chains every line to the one before it (the first to 64 zeros), so an edited
or deleted line is detected by :func:`verify_audit_log`. Appends take an exclusive file lock.
The same record is set on the version as the tag ``audit.<seq>`` (JSON), so the trail
survives with the registry when the log file does not (e.g. on a CI runner).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
_TAG_LIMIT = 5000


def current_user() -> str:
    """Who is acting: GITHUB_ACTOR in GitHub Actions, else USER / the login name."""
    for key in ("SPEAKEROPS_USER", "GITHUB_ACTOR", "USER", "USERNAME"):
        if os.environ.get(key):
            return os.environ[key]
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ci_context() -> dict[str, str]:
    """The CI run that acted, when there is one (GitHub Actions variables)."""
    keys = ("GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITHUB_SHA", "GITHUB_WORKFLOW", "GITHUB_REF")
    ctx = {k.lower(): os.environ[k] for k in keys if os.environ.get(k)}
    if "github_repository" in ctx and "github_run_id" in ctx:
        server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
        ctx["run_url"] = f"{server}/{ctx['github_repository']}/actions/runs/{ctx['github_run_id']}"
    return ctx


def _line_sha(line: str) -> str:
    return hashlib.sha256(line.rstrip("\n").encode()).hexdigest()


def read_audit_log(path: str | Path) -> list[dict[str, Any]]:
    """All records, oldest first ([] when the log does not exist yet)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not a JSON record ({exc})") from exc
    return out


def verify_audit_log(path: str | Path) -> int:
    """Check the hash chain and sequence numbers; returns the number of records.

    Raises ``ValueError`` naming the first line that was edited, removed or reordered."""
    path = Path(path)
    if not path.is_file():
        return 0
    prev = GENESIS
    n = 0
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        rec = json.loads(line)
        n += 1
        if rec.get("prev_sha256") != prev:
            raise ValueError(
                f"{path}:{lineno}: audit chain broken (prev_sha256 does not match line "
                f"{lineno - 1}): the log was edited or truncated"
            )
        if rec.get("seq") != n:
            raise ValueError(
                f"{path}:{lineno}: sequence number {rec.get('seq')} where {n} was expected"
            )
        prev = _line_sha(line)
    return n


def append_audit(path: str | Path, record: dict[str, Any]) -> dict[str, Any]:
    """Append one record (adding ``seq``, ``timestamp`` and ``user`` when absent, and the
    chain hash); returns the record as written."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.seek(0)
            lines = [ln for ln in fh.read().splitlines() if ln.strip()]
            rec = {
                "seq": len(lines) + 1,
                "timestamp": record.get("timestamp") or utc_now(),
                "user": record.get("user") or current_user(),
                **{k: v for k, v in record.items() if k not in ("seq", "timestamp", "user")},
                "prev_sha256": _line_sha(lines[-1]) if lines else GENESIS,
            }
            line = json.dumps(rec, sort_keys=True, default=str)
            fh.seek(0, os.SEEK_END)
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return rec


def tag_version(client, model_name: str, version: str, record: dict[str, Any]) -> str:
    """Set the record on the version as tag `audit.<n>` (n = 1 + existing audit tags);
    returns the tag key. Long reason lists are shortened to fit MLflow's tag limit."""
    mv = client.get_model_version(model_name, version)
    n = 1 + sum(1 for k in mv.tags if k.startswith("audit."))
    key = f"audit.{n:04d}"
    rec = dict(record)
    value = json.dumps(rec, sort_keys=True, default=str)
    while len(value) > _TAG_LIMIT and rec.get("reasons"):
        rec["reasons"] = rec["reasons"][:-1]
        rec["reasons_truncated"] = True
        value = json.dumps(rec, sort_keys=True, default=str)
    client.set_model_version_tag(model_name, version, key, value[:_TAG_LIMIT])
    return key
