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
    "issue a bearer token for a tenant of the service: `serve-token tenant=<name>`",
    options={"tenant": "the tenant the token is for"},
)
def cmd_serve_token(call: Call, cfg: DictConfig) -> int:
    from speakerops.serve.tokens import issue_token

    tenant = call.options.get("tenant")
    if not tenant:
        raise ValueError("missing tenant=...")
    token_id, token = issue_token(cfg.serve.tokens, tenant)
    print(f"tenant {tenant}: token id {token_id} (stored hashed in {cfg.serve.tokens})")
    print(token)
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
