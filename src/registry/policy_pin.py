"""The registry's committed promotion policy.

A promotion is decided by a policy file, so the file is pinned like the trial list: the
registered model carries the sha256 of its committed policy (tag ``policy.committed_sha256``,
with ``policy.committed_path``). The first promotion of a model commits the policy it used;
afterwards a promotion under any other policy file (e.g. a lax one given as
``register.policy=<file>``) is refused, unless ``register.policy_override="<why>"`` says so,
which the verdict and the audit record carry. ``speakerops policy commit`` (audited) makes a new
policy the committed one.
"""

from __future__ import annotations

from typing import Any

from speakerops.core.paths import tracking_uri
from speakerops.core.policy import Policy, load_policy
from speakerops.registry import audit, journal
from speakerops.registry.champion import client_for
from speakerops.registry.lock import promotion_lock

COMMITTED_TAG = "policy.committed_sha256"
COMMITTED_PATH_TAG = "policy.committed_path"


class PolicyNotCommitted(ValueError):
    """The policy given is not the registry's committed one and no override was given."""


def committed_policy(client, model_name: str) -> str | None:
    """The committed policy's sha256 (None before the first promotion)."""
    return (client.get_registered_model(model_name).tags or {}).get(COMMITTED_TAG)


def commit_tags(policy: Policy) -> dict[str, str]:
    """The registered-model tags that make ``policy`` the committed one."""
    return {COMMITTED_TAG: policy.sha256, COMMITTED_PATH_TAG: str(policy.path)}


def commit(client, model_name: str, policy: Policy) -> None:
    for key, value in commit_tags(policy).items():
        client.set_registered_model_tag(model_name, key, value)


def check_policy(client, model_name: str, policy: Policy, override: str | None) -> dict[str, Any]:
    """How `policy` stands against the committed one: ``{"committed": sha, ...}`` with
    ``first_use`` (the promotion's transaction commits it: :func:`commit_tags`) or ``override``
    (the reason); raises :class:`PolicyNotCommitted` otherwise."""
    committed = committed_policy(client, model_name)
    if committed is None:
        return {"committed": policy.sha256, "first_use": True}
    if committed == policy.sha256:
        return {"committed": committed}
    if override:
        return {"committed": committed, "override": str(override)}
    raise PolicyNotCommitted(
        f"policy {policy.path} (sha256 {policy.sha256[:12]}…) is not the committed policy of "
        f"{model_name} (sha256 {committed[:12]}…): promote under the committed policy, make this "
        "one the committed policy with `speakerops policy commit register.policy=<file>`, or "
        'give register.policy_override="<why>" (recorded in the audit log)'
    )


def commit_policy(cfg: Any, reason: str, model_name: str | None = None) -> dict[str, Any]:
    """``speakerops policy commit``: make ``register.policy`` the committed policy of the model,
    under the promotion lock, with an audit record; returns the record."""
    name = model_name or str(cfg.register.model_name)
    policy = load_policy(cfg.register.policy)
    with promotion_lock(cfg, name, tracking_uri(cfg.paths.registry_dir)):
        client = client_for(cfg)
        audit.verify_store(cfg, client)
        journal.recover(cfg, client, name)  # an interrupted promotion is finished or undone
        before = committed_policy(client, name)
        commit(client, name, policy)
        return audit.record(
            cfg,
            client,
            {
                "action": "policy-commit",
                "model_name": name,
                "policy": str(policy.path),
                "policy_sha256": policy.sha256,
                "policy_sha256_before": before,
                "reasons": [reason or "policy committed"],
                "ci": audit.ci_context() or None,
            },
            model_name=name,
            versions=[],
        )
