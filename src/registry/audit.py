"""The promotion audit trail: an append-only JSONL log plus tags on the model version.

Each line of the log (default `registry/audit.jsonl`) is one JSON record:

    {"seq": 3, "timestamp": "2026-11-24T22:31:32Z", "user": "alice", "action": "promote",
     "model_name": "speaker-encoder", "candidate_version": "7", "champion_before": "5",
     "champion_after": "7", "verdict": "pass", "reasons": [...], "trials_sha256": "…",
     "report": "artifacts/promote/…/report.md", …, "prev_sha256": "<sha256 of line 2>"}

``prev_sha256`` chains every line to the one before it (the first to 64 zeros) and ``mac`` is
``HMAC-SHA256(audit key, the record without its mac)`` with the keyring's ``audit`` data key
(:mod:`speakerops.core.keys`), so an edited, forged, reordered or deleted line is detected by
:func:`verify_audit_log` — a forger who recomputes the plain chain cannot recompute the MACs.
The chain head (``<seq>:<sha256 of the last line>``) is anchored outside the file, as the
registered model's tag ``audit.head`` (:func:`anchor_head`), so a log whose tail was deleted
no longer reaches its anchor and is refused too. Appends take an exclusive file lock.
The same record is set on the version as the tag ``audit.<seq>`` (JSON), so the trail
survives with the registry when the log file does not (e.g. on a CI runner).
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import hmac
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from speakerops.core.keys import KeyMaterialError, Keyring, keyring_from_cfg

GENESIS = "0" * 64
HEAD_TAG = "audit.head"
AUDIT_PURPOSE = "audit"
_TAG_LIMIT = 5000


class AuditError(ValueError):
    """The audit log does not prove itself (edited, forged, reordered or truncated)."""


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


def find_record(path: str | Path, key: str, value: Any) -> dict[str, Any] | None:
    """The last record whose ``key`` is ``value``, with its ``head`` (anchor value), or None."""
    path = Path(path)
    if not path.is_file():
        return None
    for line in reversed([ln for ln in path.read_text().splitlines() if ln.strip()]):
        rec = json.loads(line)
        if rec.get(key) == value:
            return {**rec, "head": f"{rec['seq']}:{_line_sha(line)}"}
    return None


def _mac(keyring: Keyring, rec: dict[str, Any]) -> str:
    body = {k: v for k, v in rec.items() if k != "mac"}
    return keyring.mac(AUDIT_PURPOSE, json.dumps(body, sort_keys=True, default=str).encode())


def verify_audit_log(
    path: str | Path, *, keyring: Keyring, anchors: dict[str, str] | None = None
) -> int:
    """Check sequence numbers, the hash chain, every record's MAC and the anchored heads;
    returns the number of records.

    ``anchors`` maps a registered model to its ``audit.head`` tag (``<seq>:<sha256>``): the
    line at that seq must still be there, unchanged. Lines after an anchor are accepted when
    their MACs verify (an append whose anchoring was interrupted). Raises :class:`AuditError`
    naming the first bad line."""
    path = Path(path)
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []
    records: list[dict[str, Any]] = []
    for n, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise AuditError(f"{path}:{n}: not a JSON record ({exc})") from exc
    # first the plain chain and the order, then the MACs (a forger can redo the former only)
    prev = GENESIS
    shas: list[str] = []
    for n, (line, rec) in enumerate(zip(lines, records, strict=True), 1):
        if rec.get("prev_sha256") != prev:
            raise AuditError(
                f"{path}:{n}: audit chain broken (prev_sha256 does not match line "
                f"{n - 1}): the log was edited or truncated"
            )
        if rec.get("seq") != n:
            raise AuditError(f"{path}:{n}: sequence number {rec.get('seq')} where {n} was expected")
        prev = _line_sha(line)
        shas.append(prev)
    for n, rec in enumerate(records, 1):
        try:
            expected = _mac(keyring, rec)
        except KeyMaterialError as exc:
            raise AuditError(f"{path}: cannot check the audit MACs: {exc}") from exc
        if not hmac_equal(str(rec.get("mac", "")), expected):
            raise AuditError(
                f"{path}:{n}: MAC does not verify: the record was edited or forged (or the log "
                "was written with another store's audit key)"
            )
    for model, head in sorted((anchors or {}).items()):
        seq_text, _, sha = str(head).partition(":")
        try:
            seq = int(seq_text)
        except ValueError as exc:
            raise AuditError(
                f"registered model {model}: malformed {HEAD_TAG} tag {head!r}"
            ) from exc
        if seq > len(shas):
            raise AuditError(
                f"{path}: the log ends at record {len(shas)} but registered model {model}'s "
                f"{HEAD_TAG} anchors record {seq}: the tail was deleted"
            )
        if seq >= 1 and shas[seq - 1] != sha:
            raise AuditError(
                f"{path}:{seq}: record differs from the head anchored on registered model "
                f"{model} ({HEAD_TAG}): the log was rewritten"
            )
    return len(shas)


def hmac_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def append_audit(path: str | Path, record: dict[str, Any], *, keyring: Keyring) -> dict[str, Any]:
    """Append one record (adding ``seq``, ``timestamp`` and ``user`` when absent, the chain
    hash and the MAC); returns the record as written, with ``head`` (its anchor value)."""
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
                **{
                    k: v
                    for k, v in record.items()
                    if k not in ("seq", "timestamp", "user", "mac", "prev_sha256")
                },
                "prev_sha256": _line_sha(lines[-1]) if lines else GENESIS,
            }
            rec["mac"] = _mac(keyring, rec)
            line = json.dumps(rec, sort_keys=True, default=str)
            fh.seek(0, os.SEEK_END)
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return {**rec, "head": f"{rec['seq']}:{_line_sha(line)}"}


def anchor_head(client, model_name: str, record: dict[str, Any]) -> None:
    """Anchor the log's head (after `record` was appended) on the registered model."""
    client.set_registered_model_tag(model_name, HEAD_TAG, record["head"])


def anchors(client, model_names: list[str] | None = None) -> dict[str, str]:
    """The ``audit.head`` tag of every registered model (or of those named) that has one."""
    models = (
        [client.get_registered_model(n) for n in model_names]
        if model_names
        else client.search_registered_models()
    )
    return {m.name: m.tags[HEAD_TAG] for m in models if HEAD_TAG in (m.tags or {})}


def tag_version(client, model_name: str, version: str, record: dict[str, Any]) -> str:
    """Set the record on the version as tag `audit.<n>` (n = 1 + existing audit tags);
    returns the tag key. Long reason lists are shortened to fit MLflow's tag limit."""
    mv = client.get_model_version(model_name, version)
    n = 1 + sum(1 for k in mv.tags if k.startswith("audit."))
    key = f"audit.{n:04d}"
    rec = {k: v for k, v in record.items() if k != "head"}
    value = json.dumps(rec, sort_keys=True, default=str)
    while len(value) > _TAG_LIMIT and rec.get("reasons"):
        rec["reasons"] = rec["reasons"][:-1]
        rec["reasons_truncated"] = True
        value = json.dumps(rec, sort_keys=True, default=str)
    client.set_model_version_tag(model_name, version, key, value[:_TAG_LIMIT])
    return key


def audit_log_path(cfg: Any) -> Path:
    """The configured log (``register.audit_log``, which conf/ puts in the registry dir)."""
    return Path(cfg.register.audit_log)


def verify_store(cfg: Any, client) -> int:
    """``speakerops audit verify``: the configured log, its MACs under the store's keyring and
    every registered model's anchored head; returns the number of records."""
    return verify_audit_log(
        audit_log_path(cfg), keyring=keyring_from_cfg(cfg), anchors=anchors(client)
    )


def record(
    cfg: Any, client, record: dict[str, Any], *, model_name: str, versions: list[str]
) -> dict[str, Any]:
    """Append `record`, set it on each version as an ``audit.<n>`` tag and anchor the new head
    on the registered model."""
    written = append_audit(audit_log_path(cfg), record, keyring=keyring_from_cfg(cfg))
    for version in versions:
        tag_version(client, model_name, version, written)
    anchor_head(client, model_name, written)
    return written
