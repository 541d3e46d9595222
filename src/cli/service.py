"""The verification service commands: serve, serve-token, the HTTP clients, and the MLflow UI."""

from __future__ import annotations

import sys
from collections.abc import Callable

from omegaconf import DictConfig

from speakerops.cli.base import Call, _print_json, command


@command("serve", "the verification service (FastAPI on serve.host:serve.port, OpenAPI at /docs)")
def cmd_serve(call: Call, cfg: DictConfig) -> int:
    from speakerops.serve.app import run

    run(cfg)
    return 0


@command(
    "serve-token",
    "issue a bearer token: `serve-token tenant=<name> [label=<who>]`, or `serve-token admin=true` "
    "(/admin routes); `serve-token revoke=<token_id>` removes one",
    options={
        "tenant": "the tenant the token is for",
        "admin": "an admin token instead",
        "label": "who the token is for (kept beside its hash)",
        "revoke": "the id of a token to remove",
    },
    flags=("admin",),
)
def cmd_serve_token(call: Call, cfg: DictConfig) -> int:
    from speakerops.serve.tokens import ADMIN, issue_token, revoke_token

    revoke = call.options.get("revoke")
    if revoke:
        owner = revoke_token(cfg.serve.tokens, revoke)
        if owner is None:
            raise ValueError(f"revoke={revoke}: no such token id in {cfg.serve.tokens}")
        print(f"{owner}: token id {revoke} revoked")
        return 0
    tenant = ADMIN if call.flag("admin") else call.options.get("tenant")
    if not tenant:
        raise ValueError("missing tenant=... (or admin=true, or revoke=<token_id>)")
    token_id, token = issue_token(cfg.serve.tokens, tenant, label=call.options.get("label"))
    print(f"{tenant}: token id {token_id} (stored hashed in {cfg.serve.tokens})")
    print(token)
    return 0


@command(
    "templates",
    "the service's templates and the champion: `templates status` (per model version) | "
    "`templates migrate` (re-embed from retained audio, else list who must re-enroll)",
    actions=("status", "migrate"),
)
def cmd_templates(call: Call, cfg: DictConfig) -> int:
    from speakerops.core.keys import keyring_from_cfg
    from speakerops.serve.migrate import migrate_templates
    from speakerops.serve.settings import ServeSettings
    from speakerops.serve.store import TemplateStore

    if call.action == "migrate":
        report = migrate_templates(cfg)
        _print_json(report)
        if report["must_reenroll"]:
            print(
                f"speakerops templates: {len(report['must_reenroll'])} template(s) could not be "
                f"re-embedded: their speakers must re-enroll (listed above)",
                file=sys.stderr,
            )
        return 0
    store = TemplateStore(ServeSettings.from_cfg(cfg).store_url, keyring_from_cfg(cfg))
    counts = store.counts_by_version()
    store.dispose()
    _print_json(
        [{"model_name": n, "model_version": v, "templates": c} for (n, v), c in counts.items()]
    )
    return 0


_CLIENT_OPTIONS = {
    "url": "the service (default http://127.0.0.1:8000)",
    "tenant": "the tenant (required)",
    "token": "bearer token (default: $SPEAKEROPS_TOKEN)",
}


def _client_command(action: str) -> Callable[..., int]:
    def run(call: Call, cfg: DictConfig) -> int:
        from speakerops.serve.client import ClientError, run_command

        o = call.options
        if not o.get("tenant"):
            raise ValueError("missing tenant=... (or --tenant)")
        url = o.get("url", "http://127.0.0.1:8000")
        try:
            _print_json(run_command(action, url, o["tenant"], o.get("token"), call.args))
        except ClientError as exc:
            print(f"speakerops {action}: {exc}", file=sys.stderr)
            return 1
        return 0

    return run


for _action, _usage in (
    ("enroll", "SPEAKER FILE [FILE...]: enroll a speaker with the service"),
    ("verify", "SPEAKER FILE: verify a claimed speaker with the service"),
    ("identify", "FILE: identify the speaker among the enrolled ones (or 'unknown')"),
    ("forget", "SPEAKER: delete a speaker's template from the service"),
):
    command(_action, _usage, options=_CLIENT_OPTIONS, positionals=True)(_client_command(_action))


@command("ui", "the MLflow UI on the store of paths.registry_dir (ui.host, ui.port)")
def cmd_ui(call: Call, cfg: DictConfig) -> int:
    import os

    from speakerops.core.mlflow import ui_command

    argv = ui_command(cfg.paths.registry_dir, cfg.ui.host, cfg.ui.port)
    print(" ".join(argv))
    os.execv(argv[0], argv)
    return 0


# --------------------------------------------------------------------------- parsing
