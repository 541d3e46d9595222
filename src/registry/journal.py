"""Promotion and rollback as journaled transactions: a run killed at any point leaves either
the old or the new state, and the next run finishes or rolls back the journal.

A decision's side effects (the run's report artifacts, the committed-policy tags, the
``champion`` alias, the ``champion_history`` tag, the version's ``promotion.*`` tags, the audit
record with its ``audit.<n>`` version tag and the anchored head) are first written down as one
:class:`Transaction`, as JSON, atomically (temporary file, fsync, rename, fsync of the folder)
to ``<registry_dir>/locks/<model>.promote.journal.json`` beside the promotion lock. Then they are
applied in :data:`STEPS` order, and the journal is removed.

The commit point is the alias move (a pass or a rollback), or the audit append for a decision
that moves no alias (a refusal). ``promote``, ``gate`` and ``rollback`` call :func:`recover`
under the lock, after ``audit verify``: a journal still there was interrupted; when its commit
point was reached (the alias names the new version, or the log holds the transaction's record)
the remaining steps are redone (every step is idempotent) = *rolled forward*; otherwise every
tag it may have set is restored to the value the journal recorded = *rolled back* (report
artifacts already copied to the run stay there, inert; the rollback's audit record names them).
Either way one audit record (``action: recover``) says what was done.

A speaker model promoted with its countermeasure (:mod:`speakerops.registry.pair`) is one
transaction too: the countermeasure's registered model (``pair_model``) gets its ``champion``
alias moved with the speaker model's, before the commit point (in the ``model-tags`` step, and
again, idempotently, when rolled forward), and its version's tags; a roll back restores its
alias and tags as well, so both aliases move together or neither does.

Fault injection (the kill-safety tests and ``bench/chaos.py``): with
``SPEAKEROPS_FAULT_KILL_AT=<step>`` in the environment, the process SIGKILLs itself right after
the named step (:func:`fault_point`; the steps are :data:`STEPS`). Nothing else reads it.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from speakerops.core.keys import keyring_from_cfg
from speakerops.core.names import CHAMPION
from speakerops.registry import audit
from speakerops.registry.lock import state_path

FAULT_ENV = "SPEAKEROPS_FAULT_KILL_AT"
HISTORY_TAG = "champion_history"
NO_ALIAS = ""  # pair_alias_after: the countermeasure's alias is removed (a rollback to a speaker model alone)
# every point of a promotion where a kill is tried (after the named step)
STEPS = (
    "champion-read",  # promote: the champion read under the lock
    "verdict",  # promote: verdict.json and report.md written, nothing changed yet
    "journal-written",
    "artifacts",
    "model-tags",
    "alias",
    "history",
    "version-tags",
    "audit-append",
    "audit-tags",
    "audit-anchor",
    "journal-cleared",
)


class JournalError(RuntimeError):
    """An interrupted transaction that cannot be finished or undone without a person."""


def fault_point(step: str) -> None:
    """SIGKILL this process when ``SPEAKEROPS_FAULT_KILL_AT`` names ``step`` (tests only)."""
    if os.environ.get(FAULT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Transaction:
    """What one decision changes, and what it found before (for a roll back)."""

    action: str
    model_name: str
    record: dict[str, Any]  # the audit record to append (``txn`` is added)
    record_versions: list[str]  # versions that get the record as an ``audit.<n>`` tag
    alias_before: str | None
    alias_after: str | None = None  # None: the alias does not move (a refusal)
    history_before: str | None = None  # the raw tag value (None: no tag)
    history_after: list[str] | None = None
    model_tags: dict[str, str] = field(default_factory=dict)
    model_tags_before: dict[str, str | None] = field(default_factory=dict)
    version_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    version_tags_before: dict[str, dict[str, str | None]] = field(default_factory=dict)
    artifacts: dict[str, str] | None = None  # run_id, local_dir, artifact_path
    # the countermeasure promoted with the speaker model (None: a speaker model alone)
    pair_model: str | None = None
    pair_alias_before: str | None = None
    pair_alias_after: str | None = None  # None: its alias does not move; NO_ALIAS: removed
    pair_version_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    pair_version_tags_before: dict[str, dict[str, str | None]] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: str = field(default_factory=audit.utc_now)
    user: str = field(default_factory=audit.current_user)


def journal_path(cfg: Any, model_name: str) -> Path:
    return state_path(cfg.paths.registry_dir, model_name, "promote.journal.json")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _clear(path: Path) -> None:
    path.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def read_journal(path: Path) -> Transaction | None:
    """The unfinished transaction at ``path`` (None when there is none)."""
    if not path.is_file():
        return None
    try:
        return Transaction(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise JournalError(
            f"{path}: promotion journal is not readable ({exc}); it is written atomically, so "
            "it was edited: check the registry against the audit log, then remove the file"
        ) from exc


def apply(cfg: Any, client, txn: Transaction) -> dict[str, Any]:
    """Journal ``txn``, apply it step by step, clear the journal; returns the audit record."""
    path = journal_path(cfg, txn.model_name)
    _write_atomic(path, json.dumps(asdict(txn), sort_keys=True, default=str))
    fault_point("journal-written")
    if txn.artifacts:
        a = txn.artifacts
        client.log_artifacts(a["run_id"], a["local_dir"], a["artifact_path"])
    fault_point("artifacts")
    for key, value in txn.model_tags.items():
        client.set_registered_model_tag(txn.model_name, key, value)
    _pair_alias(client, txn)
    fault_point("model-tags")
    written = _forward(cfg, client, txn)
    _clear(path)
    fault_point("journal-cleared")
    return written


def _forward(cfg: Any, client, txn: Transaction) -> dict[str, Any]:
    """The steps from the commit point on; each one idempotent (a roll forward redoes them)."""
    name = txn.model_name
    _pair_alias(client, txn)
    if txn.alias_after is not None:
        client.set_registered_model_alias(name, CHAMPION, txn.alias_after)
    fault_point("alias")
    if txn.history_after is not None:
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(txn.history_after))
    fault_point("history")
    for version, tags in txn.version_tags.items():
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
    for version, tags in txn.pair_version_tags.items():
        for key, value in tags.items():
            client.set_model_version_tag(txn.pair_model, version, key, value)
    fault_point("version-tags")
    log = audit.audit_log_path(cfg)
    written = audit.find_record(log, "txn", txn.id)
    if written is None:
        written = audit.append_audit(
            log, {**txn.record, "txn": txn.id}, keyring=keyring_from_cfg(cfg)
        )
    fault_point("audit-append")
    for version in txn.record_versions:
        if not _has_audit_tag(client, name, version, txn.id):
            audit.tag_version(client, name, version, written)
    fault_point("audit-tags")
    audit.anchor_head(client, name, written)
    fault_point("audit-anchor")
    return written


def _pair_alias(client, txn: Transaction) -> None:
    """Move the countermeasure's alias with the speaker model's (idempotent)."""
    if txn.pair_model is None or txn.pair_alias_after is None:
        return
    if txn.pair_alias_after != NO_ALIAS:
        client.set_registered_model_alias(txn.pair_model, CHAMPION, txn.pair_alias_after)
        return
    try:
        client.delete_registered_model_alias(txn.pair_model, CHAMPION)
    except MlflowException:
        pass  # already removed


def _has_audit_tag(client, name: str, version: str, txn_id: str) -> bool:
    tags = client.get_model_version(name, version).tags
    return any(k.startswith("audit.") and f'"txn": "{txn_id}"' in v for k, v in tags.items())


def _alias(client, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def _restore_version_tags(client, name: str, before: dict) -> None:
    """Every version tag of ``name`` back to its value in ``before`` (None: it was absent)."""
    for version, tags in before.items():
        for key, old in tags.items():
            _restore(
                lambda v, _k=key, _ver=version: client.set_model_version_tag(name, _ver, _k, v),
                lambda _k=key, _ver=version: client.delete_model_version_tag(name, _ver, _k),
                old,
            )


def _back(client, txn: Transaction) -> None:
    """Undo every tag the steps before the commit point may have set."""
    name = txn.model_name
    _restore_version_tags(client, name, txn.version_tags_before)
    for key, old in txn.model_tags_before.items():
        _restore(
            lambda v, _k=key: client.set_registered_model_tag(name, _k, v),
            lambda _k=key: client.delete_registered_model_tag(name, _k),
            old,
        )
    if txn.history_after is not None:
        _restore(
            lambda v: client.set_registered_model_tag(name, HISTORY_TAG, v),
            lambda: client.delete_registered_model_tag(name, HISTORY_TAG),
            txn.history_before,
        )
    cm = txn.pair_model
    if cm is None:
        return
    _restore_version_tags(client, cm, txn.pair_version_tags_before)
    if txn.pair_alias_after is not None:
        _restore(
            lambda v: client.set_registered_model_alias(cm, CHAMPION, v),
            lambda: client.delete_registered_model_alias(cm, CHAMPION),
            txn.pair_alias_before,
        )


def _restore(set_value, delete, old: str | None) -> None:
    if old is not None:
        set_value(old)
        return
    try:
        delete()
    except MlflowException:
        pass  # never set: nothing to undo


def recover(cfg: Any, client, model_name: str) -> dict[str, Any] | None:
    """Finish or undo an interrupted transaction of ``model_name`` (call under the lock, after
    ``audit verify``); returns the ``recover`` audit record, or None when there was none."""
    path = journal_path(cfg, model_name)
    txn = read_journal(path)
    if txn is None:
        return None
    if txn.model_name != model_name:
        raise JournalError(f"{path}: journal of {txn.model_name!r}, not of {model_name!r}")
    log = audit.audit_log_path(cfg)
    done = audit.find_record(log, "recovers", txn.id)
    if done is not None:  # recovered, then killed before the journal was removed
        audit.anchor_head(client, model_name, done)  # the last record: we hold the lock
        _clear(path)
        return done
    found = _alias(client, model_name)
    if found not in (txn.alias_before, txn.alias_after):
        raise JournalError(
            f"{path}: interrupted {txn.action} (journal {txn.id}) expected alias {CHAMPION} at "
            f"v{txn.alias_before} or v{txn.alias_after}, found v{found}: it was moved by hand; "
            "check the registry against the audit log, then remove the file"
        )
    if txn.pair_model is not None:
        cm_found = _alias(client, txn.pair_model)
        after = NO_ALIAS if txn.pair_alias_after == NO_ALIAS else txn.pair_alias_after
        if (cm_found or NO_ALIAS) not in ((txn.pair_alias_before or NO_ALIAS), after):
            raise JournalError(
                f"{path}: interrupted {txn.action} (journal {txn.id}) expected alias {CHAMPION} "
                f"of {txn.pair_model} at v{txn.pair_alias_before} or v{txn.pair_alias_after}, "
                f"found v{cm_found}: it was moved by hand; check the registry against the "
                "audit log, then remove the file"
            )
    logged = audit.find_record(log, "txn", txn.id) is not None
    committed = logged or (txn.alias_after is not None and found == txn.alias_after)
    subject = f"{txn.action} of v{txn.record.get('candidate_version')}"
    if committed:
        _forward(cfg, client, txn)
        outcome = "rolled forward"
        after = txn.alias_after if txn.alias_after is not None else txn.alias_before
        what = f"finished: alias {CHAMPION} at v{after}, history, tags and audit record completed"
    else:
        _back(client, txn)
        outcome = "rolled back"
        after = txn.alias_before
        what = f"undone: alias {CHAMPION} stays at v{after}, tags restored"
        if txn.pair_model is not None:
            what += f" ({txn.pair_model} stays at v{txn.pair_alias_before})"
        if txn.artifacts:
            what += f" (report artifacts left, inert, at {txn.artifacts['artifact_path']})"
    record = audit.record(
        cfg,
        client,
        {
            "action": "recover",
            "model_name": model_name,
            "recovers": txn.id,
            "interrupted": {"action": txn.action, "started_at": txn.started_at, "by": txn.user},
            "candidate_version": txn.record.get("candidate_version"),
            "champion_before": found,
            "champion_after": after,
            "verdict": outcome,
            "reasons": [f"{subject} (started {txn.started_at}) was interrupted; {what}"],
            "ci": audit.ci_context() or None,
        },
        model_name=model_name,
        versions=[],
    )
    _clear(path)
    return record


__all__ = [
    "FAULT_ENV",
    "NO_ALIAS",
    "STEPS",
    "JournalError",
    "Transaction",
    "apply",
    "fault_point",
    "journal_path",
    "read_journal",
    "recover",
]
