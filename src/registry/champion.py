"""The side effects of a promotion decision: the `champion` alias and its history, the
tags and artifacts on the candidate version, and the audit record; and rollback.

The decision itself is :mod:`speakerops.registry.verdict` (pure); this module only acts on
it, through an ``MlflowClient``, each decision's side effects as one journaled transaction
(:mod:`speakerops.registry.journal`: a run killed midway is finished or undone by the next). Rollback moves ``champion`` back to the version that was
champion before the current one (the registered model's ``champion_history`` tag), with an
audit record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from speakerops.core.keys import keyring_from_cfg
from speakerops.core.mlflow import client as store_client
from speakerops.core.mlflow import ensure_experiment
from speakerops.core.names import CHAMPION
from speakerops.core.paths import tracking_uri
from speakerops.core.uris import registered_model_uri, run_artifact_uri
from speakerops.registry import audit, journal
from speakerops.registry.journal import HISTORY_TAG
from speakerops.registry.lock import promotion_lock


def client_for(cfg: DictConfig) -> MlflowClient:
    """A client of the configured store (``paths.registry_dir`` or MLFLOW_TRACKING_URI), its
    experiment created when missing."""
    ensure_experiment(cfg.mlflow.experiment, cfg.paths.registry_dir)
    return store_client(cfg.paths.registry_dir)


def model_version(client: MlflowClient, name: str, version: str | None, alias: str | None):
    """The registered version ``name/version`` or ``name@alias``; a clear error when absent."""
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, version)
    except MlflowException as exc:
        uri = registered_model_uri(name, None if alias else version, alias or None)
        raise ValueError(f"{uri}: no such registered model version ({exc.message})") from exc


def current_champion(client, name: str):
    """The version behind alias `champion`, or None."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def champion_history(client, name: str) -> list[str]:
    """Versions that have been champion, oldest first (registered-model tag)."""
    rm = client.get_registered_model(name)
    raw = rm.tags.get(HISTORY_TAG)
    if not raw:
        return []
    try:
        return [str(v) for v in json.loads(raw)]
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"registered model {name}: tag {HISTORY_TAG} is not a JSON list") from exc


def record_promotion(
    cfg: DictConfig,
    client: MlflowClient,
    verdict: dict,
    cand,
    champ,
    out: Path,
    context: dict,
    model_tags: dict[str, str] | None = None,
    pair: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """MLflow artifacts + tags, alias move on pass, champion history, audit record: one
    journaled transaction (:mod:`speakerops.registry.journal`). ``pair``: the countermeasures
    of a pair promotion (:func:`speakerops.registry.pair.pair_checks`); the candidate's CM
    alias ``champion`` moves with the speaker model's."""
    name, version = cand.name, str(cand.version)
    passed = verdict["passed"]
    before = str(champ.version) if champ is not None else None
    stamp = context["timestamp"].replace(":", "").replace("-", "")
    artifact_path = f"promotion/{stamp}-v{version}"
    rm = client.get_registered_model(name)
    history_raw = (rm.tags or {}).get(HISTORY_TAG)
    history = None
    if passed:
        history = champion_history(client, name)
        if before is not None and (not history or history[-1] != before):
            history.append(before)
        if not history or history[-1] != version:
            history.append(version)
    reasons = verdict["reasons"]
    # the latest attempt (every attempt is also an `audit.<n>` tag and a line of the log)
    tags = {
        "promotion.last_verdict": verdict["verdict"],
        "promotion.last_reasons": "; ".join(reasons)[:4900] or "all gates passed",
        "promotion.last_champion_before": before or "none",
        "promotion.last_trials_sha256": verdict["trials"]["sha256"],
        "promotion.last_policy_sha256": verdict["policy"]["sha256"],
        "promotion.last_artifacts": artifact_path if cand.run_id else "",
        "gate": "passed" if passed else "refused",
        "gate_reasons": "; ".join(c["reason"] for c in verdict["checks"])[:4900],
    }
    if passed:
        tags["promotion.promoted_at"] = context["timestamp"]
    record = {
        "timestamp": context["timestamp"],
        "user": context["user"],
        "action": verdict["action"],
        "model_name": name,
        "candidate_version": version,
        "champion_before": before,
        "champion_after": version if passed else before,
        "verdict": verdict["verdict"],
        "reasons": reasons,
        "trials_sha256": verdict["trials"]["sha256"],
        "policy_sha256": verdict["policy"]["sha256"],
        "policy_override": verdict["policy"].get("pin", {}).get("override"),
        "report": str(out / "report.md"),
        "mlflow_artifacts": run_artifact_uri(cand.run_id, artifact_path) if cand.run_id else None,
        "ci": {k: v for k, v in context.items() if k not in ("timestamp", "user")} or None,
    }
    model_tags = dict(model_tags or {})
    pair_fields = _pair_fields(client, pair, passed, tags)
    if pair is not None:
        cm_before = current_champion(client, pair["model_name"])
        cm_before = str(cm_before.version) if cm_before is not None else None
        record["countermeasure"] = {
            "model_name": pair["model_name"],
            "candidate_version": (pair.get("candidate") or {}).get("version"),
            "champion_before": cm_before,
            "champion_after": pair_fields.get("pair_alias_after") or cm_before,
        }
    txn = journal.Transaction(
        action=verdict["action"],
        model_name=name,
        record=record,
        record_versions=[version],
        alias_before=before,
        alias_after=version if passed else None,
        history_before=history_raw,
        history_after=history,
        model_tags=model_tags,
        model_tags_before={k: (rm.tags or {}).get(k) for k in model_tags},
        version_tags={version: tags},
        version_tags_before={version: {k: cand.tags.get(k) for k in tags}},
        artifacts=(
            {"run_id": cand.run_id, "local_dir": str(out), "artifact_path": artifact_path}
            if cand.run_id
            else None
        ),
        **pair_fields,
    )
    return journal.apply(cfg, client, txn)


def _pair_fields(client, pair: dict | None, passed: bool, tags: dict[str, str]) -> dict:
    """The transaction's countermeasure part: its alias move (on pass) and its version's tags
    (the same ``promotion.*`` / ``gate`` tags as the speaker version)."""
    if pair is None or not pair.get("candidate"):
        return {}  # no countermeasure of the candidate to move or tag
    name, version = pair["model_name"], str(pair["candidate"]["version"])
    before = current_champion(client, name)
    before = str(before.version) if before is not None else None
    old = client.get_model_version(name, version).tags
    return {
        "pair_model": name,
        "pair_alias_before": before,
        "pair_alias_after": version if passed else None,
        "pair_version_tags": {version: dict(tags)},
        "pair_version_tags_before": {version: {k: old.get(k) for k in tags}},
    }


def record_error(
    cfg: DictConfig, candidate_uri: str, message: str, action: str = "promote"
) -> dict:
    """Audit an attempt that could not be evaluated (exit code 2)."""
    return audit.append_audit(
        audit.audit_log_path(cfg),
        {
            "action": action,
            "candidate": candidate_uri,
            "verdict": "error",
            "reasons": [message],
            "ci": audit.ci_context() or None,
        },
        keyring=keyring_from_cfg(cfg),
    )


def rollback(
    cfg: DictConfig,
    model_name: str | None = None,
    to_version: str | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """Move `champion` back to the previous champion (or to ``to_version``, which must have
    been champion before), under the promotion lock; returns the audit record."""
    name = model_name or str(cfg.register.model_name)
    with promotion_lock(cfg, name, tracking_uri(cfg.paths.registry_dir)):
        return _rollback_locked(cfg, name, to_version, reason)


def _rollback_locked(
    cfg: DictConfig, name: str, to_version: str | None, reason: str
) -> dict[str, Any]:
    client = client_for(cfg)
    audit.verify_store(cfg, client)
    journal.recover(cfg, client, name)
    champ = current_champion(client, name)
    if champ is None:
        raise ValueError(f"registered model {name}: no champion to roll back from")
    current = str(champ.version)
    history = champion_history(client, name)
    if not history or history[-1] != current:
        history.append(current)  # champion set outside promote: treat it as the latest
    if to_version is None:
        earlier = [v for v in history[:-1] if v != current]
        if not earlier:
            raise ValueError(
                f"registered model {name}: no champion before v{current} is recorded "
                f"(history {history}); name one that passed a promotion with --to <version>"
            )
        target = earlier[-1]
        while history and history[-1] != target:
            history.pop()
    else:
        target = str(to_version)
        if target == current:
            raise ValueError(f"v{target} is already the champion")
        vetted = model_version(client, name, target, None).tags.get("promotion.promoted_at")
        if target not in history and not vetted:
            raise ValueError(
                f"v{target} of {name} has never passed a promotion (history {history}): "
                "rollback only restores a vetted version; use `speakerops promote`"
            )
        if target in history:
            history = history[: len(history) - history[::-1].index(target)]
        else:
            history.append(target)
    model_version(client, name, target, None)  # exists
    record = {
        "timestamp": audit.utc_now(),
        "action": "rollback",
        "model_name": name,
        "candidate_version": target,
        "champion_before": current,
        "champion_after": target,
        "verdict": "rolled back",
        "reasons": [reason or f"rollback from v{current} to v{target}"],
        "ci": audit.ci_context() or None,
    }
    old_tags = model_version(client, name, current, None).tags
    pair = _rollback_pair(client, old_tags, model_version(client, name, target, None).tags)
    if pair:
        record["countermeasure"] = {
            "model_name": pair["pair_model"],
            "champion_before": pair["pair_alias_before"],
            "champion_after": pair["pair_alias_after"] or None,
        }
    key = "promotion.rolled_back"
    txn = journal.Transaction(
        action="rollback",
        model_name=name,
        record=record,
        record_versions=[current, target],
        alias_before=current,
        alias_after=target,
        history_before=client.get_registered_model(name).tags.get(HISTORY_TAG),
        history_after=history,
        version_tags={current: {key: record["timestamp"]}},
        version_tags_before={current: {key: old_tags.get(key)}},
        **pair,
    )
    return journal.apply(cfg, client, txn)


def _rollback_pair(client, current_tags: dict, target_tags: dict) -> dict:
    """A rollback moves the countermeasure's alias with the speaker model's: to the target's
    countermeasure, or off (the target was a speaker model alone)."""
    from speakerops.registry.pair import CM_MODEL_TAG, CM_VERSION_TAG

    cm = target_tags.get(CM_MODEL_TAG) or current_tags.get(CM_MODEL_TAG)
    if not cm:
        return {}
    before = current_champion(client, cm)
    before = str(before.version) if before is not None else None
    after = target_tags.get(CM_VERSION_TAG) or journal.NO_ALIAS
    if (before or journal.NO_ALIAS) == after:
        return {}
    return {"pair_model": cm, "pair_alias_before": before, "pair_alias_after": after}
