"""`speakerops <command> [key=value ...]`: thin entry points over the stages.

One argument convention for every command: `key=value`. A command's own options are the bare
keys it lists (`promote candidate=models:/speaker-encoder/7 dry_run=true`); every other
`key=value` is a Hydra override of `conf/` (`model.channels=256`, `data=librispeech`,
`paths.registry_dir=/srv/registry`). `config=params.yaml` loads a composed config instead of
composing `conf/` (what the DVC stages do). `--key value` and `--flag` are accepted as
spellings of `key=value` and `flag=true` (CI scripts use them).

Each command composes the config, applies `runtime.threads`, calls one library function and
prints. Library imports sit inside the commands on purpose: torch, Lightning, MLflow and
Evidently load only for the command that needs them, so `speakerops --help` and
`speakerops params` stay instant (the one place in the package where imports are lazy).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from speakerops.core.config import compose
from speakerops.core.env import apply_threads, offline_env

EXIT_ERROR = 2  # bad input or an error; promote/gate reserve 1 for "refused"


@dataclass
class Command:
    name: str
    help: str
    run: Callable[..., int]
    options: dict[str, str] = field(default_factory=dict)  # key -> help
    flags: tuple[str, ...] = ()  # boolean options (`--flag` or `flag=true`)
    actions: tuple[str, ...] = ()  # a leading word (`keys rotate`); the first is the default
    errors_exit_2: bool = False  # any failure is exit 2 with one line (promote, gate, rollback)
    positionals: bool = False  # bare words are arguments (the service clients' SPEAKER FILE)


@dataclass
class Call:
    """A parsed command line: the command's options, Hydra overrides, an optional config file."""

    command: Command
    options: dict[str, str]
    overrides: list[str]
    config: str | None = None
    action: str | None = None
    args: list[str] = field(default_factory=list)  # bare words, for commands that take them

    def cfg(self) -> DictConfig:
        return compose(self.overrides, self.config)

    def flag(self, name: str) -> bool:
        value = self.options.get(name, "false").lower()
        if value not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{name}={self.options[name]!r}: expected true or false")
        return value in ("true", "1", "yes")


COMMANDS: dict[str, Command] = {}


def command(name: str, help_text: str, **spec: Any):
    def wrap(fn: Callable[..., int]) -> Callable[..., int]:
        COMMANDS[name] = Command(name, help_text, fn, **spec)
        return fn

    return wrap


def _print_json(data: dict) -> None:
    print(json.dumps(data, indent=2, default=str))


# --------------------------------------------------------------------------- the commands


@command(
    "params",
    "compose conf/ (with overrides) into params.yaml for DVC",
    options={"output": "where to write (default params.yaml)"},
)
def cmd_params(call: Call, cfg: DictConfig) -> int:
    from speakerops.core.config import write_params

    print(f"wrote {write_params(cfg, call.options.get('output', 'params.yaml'))}")
    return 0


@command("prepare", "corpus -> manifest, speaker-disjoint splits, hashed trial lists, quarantine")
def cmd_prepare(call: Call, cfg: DictConfig) -> int:
    from speakerops.data.prepare import prepare

    _print_json(prepare(cfg.data))
    return 0


@command("baseline", "the mean-MFCC cosine baseline on the eval trial list")
def cmd_baseline(call: Call, cfg: DictConfig) -> int:
    from speakerops.eval.evaluate import run_baseline

    _print_json(run_baseline(cfg))
    return 0


@command("train", "train a speaker-embedding model (Lightning), log it to MLflow")
def cmd_train(call: Call, cfg: DictConfig) -> int:
    from speakerops.train.run import train

    _print_json(train(cfg))
    return 0


@command(
    "sweep",
    "Optuna study over train: hparams_search=<name> [sweep.n_jobs=N] [overrides]; "
    "writes conf/experiment/generated/<study>_best.yaml",
)
def cmd_sweep(call: Call, cfg: DictConfig) -> int:
    from speakerops.train.sweep import sweep

    if call.config:
        raise ValueError(
            "sweep composes conf/ with hparams_search=<name>; config= is not supported"
        )
    _print_json(sweep(call.overrides))
    return 0


@command(
    "evaluate", "embed, score, calibrate; EER, minDCF, Cllr, DET plot -> metrics.json and MLflow"
)
def cmd_evaluate(call: Call, cfg: DictConfig) -> int:
    from speakerops.eval.evaluate import evaluate

    _print_json(evaluate(cfg))
    return 0


@command("register", "package the model, register a version with lineage, alias `challenger`")
def cmd_register(call: Call, cfg: DictConfig) -> int:
    from speakerops.registry.register import register

    _print_json(register(cfg))
    return 0


@command(
    "gate",
    "promotion gate of the registered challenger (the DVC stage): register.policy, "
    "alias `champion` on pass; exit 0 pass, 1 refused, 2 error",
    errors_exit_2=True,
)
def cmd_gate(call: Call, cfg: DictConfig) -> int:
    from speakerops.registry.promote import summary_lines
    from speakerops.registry.stages import run_gate

    result = run_gate(cfg)
    status = "PASSED: alias champion moved to" if result.passed else "REFUSED:"
    print(f"gate {status} {result.verdict['model_name']} v{result.verdict['version']}")
    print("\n".join(summary_lines(result.verdict)[1:]))
    print(f"report: {result.out_dir / 'report.md'}")
    return result.exit_code


@command(
    "promote",
    "candidate=models:/<name>/<N>: candidate vs champion on the pinned trials under "
    "register.policy; report, audit record, alias `champion` on pass "
    "(exit 0 pass, 1 refused, 2 error)",
    options={
        "candidate": "the registered version to promote, models:/<name>/<N>",
        "dry_run": "true: evaluate and report, change nothing",
        "out": "report folder (default register.promote_dir/<name>-v<N>)",
    },
    flags=("dry_run",),
    errors_exit_2=True,
)
def cmd_promote(call: Call, cfg: DictConfig) -> int:
    from speakerops.registry.promote import summary_lines
    from speakerops.registry.stages import run_promote

    if not call.options.get("candidate"):
        raise ValueError("candidate=models:/<name>/<N> is required")
    result = run_promote(
        cfg, call.options["candidate"], call.flag("dry_run"), call.options.get("out")
    )
    print("\n".join(summary_lines(result.verdict)))
    print(f"report: {result.out_dir / 'report.md'}")
    print(f"verdict: {result.out_dir / 'verdict.json'}")
    return result.exit_code


@command(
    "rollback",
    "move alias `champion` of register.model_name back to the previous champion (or to=<N>), "
    "with an audit record",
    options={
        "to": "version to restore (default: the previous champion)",
        "reason": "why (goes into the audit record)",
    },
    errors_exit_2=True,
)
def cmd_rollback(call: Call, cfg: DictConfig) -> int:
    from speakerops.registry.champion import rollback

    record = rollback(cfg, to_version=call.options.get("to"), reason=call.options.get("reason", ""))
    print(
        f"rollback: alias champion of {record['model_name']} moved from "
        f"v{record['champion_before']} to v{record['champion_after']} "
        f"(audit record {record['seq']})"
    )
    return 0


@command(
    "embed",
    "embed audio: model=<models:/name@alias|path> input=<folder|manifest.csv> "
    "output=<file.parquet|.npz> [log_dir=<production log>] [channel=<name>] [quality.<key>=...]; "
    "files skipped or refused by the input checks go to <output>.quarantine.csv",
    options={
        "model": "a registry URI (resolved in paths.registry_dir) or a local encoder",
        "input": "a folder of audio or a manifest .csv",
        "output": "embeddings file, .parquet or .npz",
        "log_dir": "append the batch to this production log",
        "channel": "channel label for the production log",
    },
)
def cmd_embed(call: Call, cfg: DictConfig) -> int:
    from speakerops.drift.ingest import embed_to_file

    missing = [k for k in ("model", "input", "output") if not call.options.get(k)]
    if missing:
        raise ValueError(f"missing {', '.join(k + '=...' for k in missing)}")
    o = call.options
    report = embed_to_file(
        cfg, o["model"], o["input"], o["output"], o.get("log_dir"), o.get("channel")
    )
    print(f"wrote {report.n_embedded} embeddings ({report.embedding_dim}-dim) to {report.output}")
    if report.log_part is not None:
        print(f"appended {report.n_embedded} rows to the production log: {report.log_part}")
    for row in report.quarantine.itertuples():
        print(f"skipped {row.path}: {row.reason}", file=sys.stderr)
    if report.quarantine_file is not None:
        print(
            f"{len(report.quarantine)} file(s) could not be embedded (listed above and in "
            f"{report.quarantine_file}); the rest were written",
            file=sys.stderr,
        )
    return 0 if report.n_embedded else EXIT_ERROR


@command(
    "keys",
    "keys for biometric data at rest: `keys init` | `keys status` | "
    "`keys rotate [retire=true] [purpose=<name>]` (master key re-wrap, or a new data key)",
    options={"purpose": "rotate: the data key to replace", "retire": "rotate: drop the old master"},
    flags=("retire",),
    actions=("status", "init", "rotate"),
)
def cmd_keys(call: Call, cfg: DictConfig) -> int:
    from speakerops.core import keyops, keys

    if call.action == "init":
        print(keyops.init_keys(cfg))
    elif call.action == "rotate":
        print(
            keyops.rotate_keys(cfg, retire=call.flag("retire"), purpose=call.options.get("purpose"))
        )
    else:
        _print_json(keys.keyring_from_cfg(cfg).status())
    return 0


@command(
    "audit",
    "`audit verify`: the audit log's keyed chain and its anchored heads",
    actions=("verify",),
)
def cmd_audit(call: Call, cfg: DictConfig) -> int:
    from speakerops.core.mlflow import client
    from speakerops.registry.audit import AuditError, audit_log_path, verify_store

    try:
        n = verify_store(cfg, client(cfg.paths.registry_dir))
    except AuditError as exc:
        print(f"speakerops audit: REFUSED: {exc}", file=sys.stderr)
        return 1
    print(f"audit log {audit_log_path(cfg)}: {n} record(s) verified (chain, MACs, heads)")
    return 0


@command(
    "models",
    "model files: `models convert <old encoder.pt> <new.safetensors>` (the only command that reads "
    "a pickled encoder, with torch.load(weights_only=True))",
    actions=("convert",),
    positionals=True,
)
def cmd_models(call: Call, cfg: DictConfig) -> int:
    from speakerops.models.legacy import convert

    if len(call.args) != 2:
        raise ValueError("usage: speakerops models convert <old encoder.pt> <new.safetensors>")
    _print_json(convert(*call.args))
    return 0


@command(
    "policy",
    "`policy commit reason=<why> [register.policy=<file>]`: make a policy the registry's "
    "committed one (audited); promotions under any other need register.policy_override",
    options={"reason": "why (goes into the audit record)"},
    actions=("commit",),
    errors_exit_2=True,
)
def cmd_policy(call: Call, cfg: DictConfig) -> int:
    from speakerops.registry.policy_pin import commit_policy

    record = commit_policy(cfg, call.options.get("reason", ""))
    print(
        f"policy {record['policy']} (sha256 {record['policy_sha256'][:12]}…) committed for "
        f"{record['model_name']} (audit record {record['seq']})"
    )
    return 0


@command("drift", "production embeddings vs the champion's reference; ticket + retraining on drift")
def cmd_drift(call: Call, cfg: DictConfig) -> int:
    from speakerops.drift.run import main as drift_main

    return drift_main(cfg)


@command(
    "demo", "the whole lifecycle on the embedded synthetic corpus (prepare .. gate), with a summary"
)
def cmd_demo(call: Call, cfg: DictConfig) -> int:
    from speakerops.demo.lifecycle import run_demo

    return run_demo(call.overrides)


@command(
    "drift-demo",
    "after `demo`: a same-distribution and a shifted-channel production batch through drift monitoring",
)
def cmd_drift_demo(call: Call, cfg: DictConfig) -> int:
    from speakerops.demo.drift import run_drift_demo

    return run_drift_demo(call.overrides)


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


def parse(argv: list[str]) -> Call:
    """`[action] key=value ... --key value --flag` -> a `Call` (options vs Hydra overrides)."""
    if not argv or argv[0] not in COMMANDS:
        got = f"unknown command {argv[0]!r}; " if argv else ""
        raise ValueError(f"{got}expected one of: {', '.join(COMMANDS)} (see --help)")
    cmd, rest = COMMANDS[argv[0]], list(argv[1:])
    action = None
    if cmd.actions:
        action = (
            rest.pop(0) if rest and "=" not in rest[0] and not rest[0].startswith("-") else None
        )
        action = action or cmd.actions[0]
        if action not in cmd.actions:
            raise ValueError(f"{cmd.name} {action!r}: expected one of {', '.join(cmd.actions)}")
    options: dict[str, str] = {}
    overrides: list[str] = []
    args: list[str] = []
    config = None
    while rest:
        item = rest.pop(0)
        if item.startswith("--"):
            key, sep, value = item[2:].replace("-", "_").partition("=")
            if key == "config" or key in cmd.options:
                if not sep:
                    if key in cmd.flags:
                        value = "true"
                    elif rest:
                        value = rest.pop(0)
                    else:
                        raise ValueError(f"--{key} needs a value")
                if key == "config":
                    config = value
                else:
                    options[key] = value
                continue
            raise ValueError(f"unknown option {item!r} for `{cmd.name}` (see `{cmd.name} --help`)")
        key, sep, value = item.partition("=")
        if not sep and cmd.positionals:
            args.append(item)
            continue
        if not sep:
            raise ValueError(f"unexpected argument {item!r}: arguments are key=value")
        if key == "config":
            config = value
        elif key in cmd.options:
            options[key] = value
        else:
            overrides.append(item)
    return Call(cmd, options, overrides, config, action, args)


def usage(cmd: Command | None = None) -> str:
    if cmd is None:
        lines = [__doc__.split("\n")[0], "", "commands:"]
        lines += [f"  {c.name:<11} {c.help}" for c in COMMANDS.values()]
        return "\n".join(lines + ["", "`speakerops <command> --help` lists its options."])
    lines = [f"speakerops {cmd.name}: {cmd.help}", ""]
    if cmd.actions:
        lines.append(f"actions: {' | '.join(cmd.actions)} (default {cmd.actions[0]})")
    lines += [f"  {k}=...  {h}" for k, h in cmd.options.items()]
    lines.append("  config=params.yaml  load a composed config instead of composing conf/")
    lines.append("  <key>=<value>       any Hydra override of conf/, e.g. model.channels=256")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else EXIT_ERROR
    if argv[0] in COMMANDS and any(a in ("-h", "--help") for a in argv[1:]):
        print(usage(COMMANDS[argv[0]]))
        return 0
    name = argv[0]
    try:
        call = parse(argv)
        offline_env()
        cfg = call.cfg()
        apply_threads(cfg.runtime.threads)
        return int(call.command.run(call, cfg) or 0)
    except Exception as exc:
        spec = COMMANDS.get(name)
        if not (_is_user_error(exc) or (spec is not None and spec.errors_exit_2)):
            raise
        print(f"speakerops {name}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _is_user_error(exc: BaseException) -> bool:
    """Bad input (files, values, config overrides): a one-line message, not a traceback."""
    if isinstance(exc, (FileNotFoundError, ValueError, KeyError)):
        return True
    module = type(exc).__module__
    return module.startswith(("hydra.", "omegaconf."))


if __name__ == "__main__":
    sys.exit(main())
