"""`speakerops <command> [options] [overrides]`: thin entry points over the stages.

Heavy libraries (torch, Lightning, MLflow, Evidently) load only inside the command that needs
them, so `speakerops --help` is instant. Hydra overrides (`model.channels=256`,
`data=librispeech`) follow the command; `--config params.yaml` loads a composed config instead
of composing `conf/` (what the DVC stages do).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

COMMANDS: dict[str, tuple[str, Callable]] = {}


def command(name: str, help_text: str):
    def wrap(fn: Callable) -> Callable:
        COMMANDS[name] = (help_text, fn)
        return fn

    return wrap


def _cfg(args: argparse.Namespace):
    from speakerops.core.config import compose
    from speakerops.core.env import offline_env

    offline_env()
    return compose(args.overrides, args.config)


def _print_json(data: dict) -> None:
    print(json.dumps(data, indent=2, default=str))


@command("params", "compose conf/ (with overrides) into params.yaml for DVC")
def cmd_params(args: argparse.Namespace) -> int:
    from speakerops.core.config import write_params

    print(f"wrote {write_params(_cfg(args), args.output or 'params.yaml')}")
    return 0


@command("prepare", "corpus -> manifest, speaker-disjoint splits, hashed trial lists, quarantine")
def cmd_prepare(args: argparse.Namespace) -> int:
    from speakerops.data.prepare import prepare

    _print_json(prepare(_cfg(args).data))
    return 0


@command("baseline", "the mean-MFCC cosine baseline on the eval trial list")
def cmd_baseline(args: argparse.Namespace) -> int:
    from speakerops.eval.evaluate import run_baseline

    _print_json(run_baseline(_cfg(args)))
    return 0


@command("train", "train a speaker-embedding model (Lightning), log it to MLflow")
def cmd_train(args: argparse.Namespace) -> int:
    from speakerops.train.run import train

    _print_json(train(_cfg(args)))
    return 0


@command(
    "sweep",
    "Optuna study over train: hparams_search=<name> [sweep.n_jobs=N] [overrides]; "
    "writes conf/experiment/generated/<study>_best.yaml",
)
def cmd_sweep(args: argparse.Namespace) -> int:
    from speakerops.core.env import offline_env
    from speakerops.train.sweep import sweep

    if args.config:
        raise ValueError(
            "sweep composes conf/ with hparams_search=<name>; --config is not supported"
        )
    offline_env()
    _print_json(sweep(args.overrides))
    return 0


@command(
    "evaluate", "embed, score, calibrate; EER, minDCF, Cllr, DET plot -> metrics.json and MLflow"
)
def cmd_evaluate(args: argparse.Namespace) -> int:
    from speakerops.eval.evaluate import evaluate

    _print_json(evaluate(_cfg(args)))
    return 0


@command("register", "package the model, register a version with lineage, alias `challenger`")
def cmd_register(args: argparse.Namespace) -> int:
    from speakerops.registry.register import register

    _print_json(register(_cfg(args)))
    return 0


@command(
    "gate",
    "promotion gate of the registered challenger (the DVC stage): registry/policy.yaml, "
    "alias `champion` on pass; exit 0 pass, 1 refused, 2 error",
)
def cmd_gate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from speakerops.core.jsonio import dumps
    from speakerops.registry.promote import EXIT_ERROR, promote, summary_lines

    try:
        cfg = _cfg(args)
        registered = json.loads((Path(cfg.register.out_dir) / "registered.json").read_text())
        gate_dir = Path(cfg.register.get("gate_dir") or cfg.register.out_dir)
        result = promote(
            cfg, registered["model_uri"], out_dir=gate_dir / "promotion", action="gate"
        )
    except Exception as exc:  # noqa: BLE001 - any failure to evaluate is exit 2, never 1
        print(f"speakerops gate: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    (gate_dir / "gate.json").write_text(dumps(result.verdict))
    status = "PASSED: alias champion moved to" if result.passed else "REFUSED:"
    print(f"gate {status} {registered['model_name']} v{result.verdict['version']}")
    print("\n".join(summary_lines(result.verdict)[1:]))
    print(f"report: {result.out_dir / 'report.md'}")
    return result.exit_code


def _option(args: argparse.Namespace, name: str) -> str | None:
    """`--name value` (argparse) or `name=value` among the overrides (removed from them)."""
    value = getattr(args, name.replace("-", "_"), None)
    rest = []
    for item in args.overrides:
        key, sep, val = item.partition("=")
        if sep and key == name:
            value = val
        else:
            rest.append(item)
    args.overrides = rest
    return value


@command(
    "promote",
    "--candidate models:/<name>/<N>: candidate vs champion on the pinned trials under "
    "registry/policy.yaml; report, audit record, alias `champion` on pass "
    "(exit 0 pass, 1 refused, 2 error)",
)
def cmd_promote(args: argparse.Namespace) -> int:
    from speakerops.registry.champion import record_error
    from speakerops.registry.promote import EXIT_ERROR, promote, summary_lines

    candidate = _option(args, "candidate")
    out = _option(args, "out")
    dry_run = bool(getattr(args, "dry_run", False)) or _option(args, "dry-run") in (
        "1",
        "true",
        "True",
    )
    if not candidate:
        print(
            "speakerops promote: error: --candidate models:/<name>/<N> is required", file=sys.stderr
        )
        return EXIT_ERROR
    cfg = None
    try:
        cfg = _cfg(args)
        result = promote(cfg, candidate, dry_run=dry_run, out_dir=out)
    except Exception as exc:  # noqa: BLE001 - any failure to evaluate is exit 2, never 1
        print(f"speakerops promote: error: {exc}", file=sys.stderr)
        if cfg is not None and not dry_run:
            try:
                record_error(cfg, candidate, str(exc))
            except Exception as log_exc:  # noqa: BLE001
                print(f"speakerops promote: could not audit the error: {log_exc}", file=sys.stderr)
        return EXIT_ERROR
    print("\n".join(summary_lines(result.verdict)))
    print(f"report: {result.out_dir / 'report.md'}")
    print(f"verdict: {result.out_dir / 'verdict.json'}")
    return result.exit_code


cmd_promote.options = [  # type: ignore[attr-defined]
    (("--candidate",), {"help": "the registered version to promote, models:/<name>/<N>"}),
    (("--dry-run",), {"action": "store_true", "help": "evaluate and report; change nothing"}),
    (("--out",), {"help": "report folder (default register.promote_dir/<name>-v<N>)"}),
]


@command(
    "rollback",
    "move alias `champion` back to the previous champion (or --to <N>), with an audit record",
)
def cmd_rollback(args: argparse.Namespace) -> int:
    from speakerops.registry.champion import rollback
    from speakerops.registry.promote import EXIT_ERROR

    to = _option(args, "to")
    reason = _option(args, "reason") or ""
    model = _option(args, "model")
    try:
        record = rollback(_cfg(args), model_name=model, to_version=to, reason=reason)
    except Exception as exc:  # noqa: BLE001
        print(f"speakerops rollback: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(
        f"rollback: alias champion of {record['model_name']} moved from "
        f"v{record['champion_before']} to v{record['champion_after']} "
        f"(audit record {record['seq']})"
    )
    return 0


cmd_rollback.options = [  # type: ignore[attr-defined]
    (("--to",), {"help": "version to restore (default: the previous champion)"}),
    (("--reason",), {"help": "why (goes into the audit record)"}),
    (("--model",), {"help": "registered model name (default register.model_name)"}),
]


@command(
    "embed",
    "embed audio: model=<models:/name@alias|path> input=<folder|manifest.csv> "
    "output=<file.parquet|.npz> [log_dir=<production log>] [channel=<name>] [quality.<key>=...]; "
    "files skipped or refused by the input checks go to <output>.quarantine.csv",
)
def cmd_embed(args: argparse.Namespace) -> int:
    from speakerops.core import paths
    from speakerops.core.config import compose
    from speakerops.data.quality import QualitySettings
    from speakerops.eval.embed import embed_inputs, quarantine_path, write_embeddings
    from speakerops.registry.package import load_encoder

    checks = [o for o in args.overrides if o.startswith(("quality.", "audio.extensions="))]
    opts = _key_values(
        [o for o in args.overrides if o not in checks],
        required=("model", "input", "output"),
        optional=("log_dir", "channel"),
    )
    cfg = compose(checks, args.config)
    encoder = load_encoder(opts["model"], tracking_uri=paths.tracking_uri("registry"))
    batch, quarantine = embed_inputs(
        encoder,
        opts["input"],
        cfg.audio.extensions,
        QualitySettings.from_config(cfg.quality),
        desc="speakerops embed",
    )
    write_embeddings(batch, opts["output"])
    print(
        f"wrote {len(batch.utt_ids)} embeddings ({encoder.embedding_dim}-dim) to {opts['output']}"
    )
    if "log_dir" in opts and batch.utt_ids:
        part = _append_to_production_log(batch, opts)
        print(f"appended {len(batch.utt_ids)} rows to the production log: {part}")
    for row in quarantine.itertuples():
        print(f"skipped {row.path}: {row.reason}", file=sys.stderr)
    if len(quarantine):
        qpath = quarantine_path(opts["output"])
        quarantine.to_csv(qpath, index=False)
        print(
            f"{len(quarantine)} file(s) could not be embedded (listed above and in {qpath}); "
            "the rest were written",
            file=sys.stderr,
        )
    return 0 if batch.utt_ids else 2


def _str_or_none(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _append_to_production_log(batch, opts: dict[str, str]):
    """Log embeddings with model version, duration, native rate, blind SNR, channel (`channel=`,
    else a manifest's `channel` column) and, for a manifest with a `speaker` column, HMAC
    pseudonyms of the speakers."""
    from pathlib import Path

    from speakerops.core import paths
    from speakerops.core.config import compose
    from speakerops.core.keys import keyring_from_cfg
    from speakerops.drift.log import append_production_log
    from speakerops.registry.package import resolve_model_version

    name, version = resolve_model_version(opts["model"], paths.tracking_uri("registry"))
    speakers = None
    channels = [opts.get("channel")] * len(batch.utt_ids)
    if Path(opts["input"]).suffix.lower() == ".csv":
        import pandas as pd

        manifest = pd.read_csv(opts["input"], dtype=str).set_index("utt_id")
        if "speaker" in manifest.columns:
            speakers = [manifest["speaker"].get(u) for u in batch.utt_ids]
        if "channel" in manifest.columns and "channel" not in opts:
            channels = [_str_or_none(manifest["channel"].get(u)) for u in batch.utt_ids]
    return append_production_log(
        opts["log_dir"],
        batch.embeddings,
        utt_ids=batch.utt_ids,
        model_name=name,
        model_version=version,
        durations_s=batch.durations,
        sample_rates=batch.sample_rates,
        snr_db=batch.snr_db,
        channels=channels,
        speaker_ids=speakers,
        keyring=keyring_from_cfg(compose([])),
    )


@command(
    "keys",
    "keys for biometric data at rest: `keys init` | `keys status` | "
    "`keys rotate [--retire] [purpose=<name>]` (master key re-wrap, or a new data key)",
)
def cmd_keys(args: argparse.Namespace) -> int:
    from speakerops.core import keyops, keys

    action, rest = (args.overrides[0], args.overrides[1:]) if args.overrides else ("status", [])
    purpose = None
    if action == "rotate":
        purpose = next((o.split("=", 1)[1] for o in rest if o.startswith("purpose=")), None)
        rest = [o for o in rest if not o.startswith("purpose=")]
    cfg = _cfg(argparse.Namespace(overrides=rest, config=args.config))
    if action == "init":
        print(keyops.init_keys(cfg))
    elif action == "status":
        _print_json(keys.keyring_from_cfg(cfg).status())
    elif action == "rotate":
        print(keyops.rotate_keys(cfg, retire=bool(args.retire), purpose=purpose))
    else:
        raise ValueError(f"keys {action!r}: expected init, status or rotate")
    return 0


cmd_keys.options = [  # type: ignore[attr-defined]
    (("--retire",), {"action": "store_true", "help": "rotate: drop the old master's wrapping"}),
]


@command("audit", "`audit verify`: the audit log's keyed chain and its anchored heads")
def cmd_audit(args: argparse.Namespace) -> int:
    from speakerops.core.mlflow import client
    from speakerops.registry import audit

    action, rest = (args.overrides[0], args.overrides[1:]) if args.overrides else ("verify", [])
    if action != "verify":
        raise ValueError(f"audit {action!r}: expected verify")
    cfg = _cfg(argparse.Namespace(overrides=rest, config=args.config))
    try:
        n = audit.verify_store(cfg, client(cfg.paths.registry_dir))
    except audit.AuditError as exc:
        print(f"speakerops audit: REFUSED: {exc}", file=sys.stderr)
        return 1
    print(f"audit log {audit.audit_log_path(cfg)}: {n} record(s) verified (chain, MACs, heads)")
    return 0


@command(
    "models",
    "model files: `models convert <old encoder.pt> <new.safetensors>` (the only command that reads "
    "a pickled encoder, with torch.load(weights_only=True))",
)
def cmd_models(args: argparse.Namespace) -> int:
    from speakerops.models.legacy import convert

    if len(args.overrides) != 3 or args.overrides[0] != "convert":
        raise SystemExit("usage: speakerops models convert <old encoder.pt> <new.safetensors>")
    _print_json(convert(*args.overrides[1:]))
    return 0


@command("drift", "production embeddings vs the champion's reference; ticket + retraining on drift")
def cmd_drift(args: argparse.Namespace) -> int:
    from speakerops.drift.run import main as drift_main

    return drift_main(_cfg(args))


@command(
    "demo", "the whole lifecycle on the embedded synthetic corpus (prepare .. gate), with a summary"
)
def cmd_demo(args: argparse.Namespace) -> int:
    from speakerops.demo import run_demo

    return run_demo(args.overrides)


@command(
    "drift-demo",
    "after `demo`: a same-distribution and a shifted-channel production batch through drift monitoring",
)
def cmd_drift_demo(args: argparse.Namespace) -> int:
    from speakerops.drift.demo import run_drift_demo

    return run_drift_demo(args.overrides)


@command("serve", "the verification service (FastAPI on serve.host:serve.port, OpenAPI at /docs)")
def cmd_serve(args: argparse.Namespace) -> int:
    from speakerops.serve.app import run

    run(_cfg(args))
    return 0


@command(
    "serve-token", "issue a bearer token for a tenant of the service: `serve-token tenant=<name>`"
)
def cmd_serve_token(args: argparse.Namespace) -> int:
    from speakerops.serve.tokens import issue_token

    opts = _key_values(args.overrides[:1], ("tenant",))
    cfg = _cfg(argparse.Namespace(overrides=args.overrides[1:], config=args.config))
    token_id, token = issue_token(cfg.serve.tokens, opts["tenant"])
    print(f"tenant {opts['tenant']}: token id {token_id} (stored hashed in {cfg.serve.tokens})")
    print(token)
    return 0


def _client_command(action: str):
    def run(args: argparse.Namespace) -> int:
        from speakerops.serve.client import ClientError, run_command

        try:
            _print_json(run_command(action, args.url, args.tenant, args.token, args.overrides))
        except ClientError as exc:
            print(f"speakerops {action}: {exc}", file=sys.stderr)
            return 1
        return 0

    run.options = [  # type: ignore[attr-defined]
        (("--url",), {"default": "http://127.0.0.1:8000", "help": "the service"}),
        (("--tenant",), {"required": True}),
        (("--token",), {"help": "bearer token (default: $SPEAKEROPS_TOKEN)"}),
    ]
    return run


for _action, _usage in (
    ("enroll", "SPEAKER FILE [FILE...]: enroll a speaker with the service"),
    ("verify", "SPEAKER FILE: verify a claimed speaker with the service"),
    ("identify", "FILE: identify the speaker among the enrolled ones (or 'unknown')"),
    ("forget", "SPEAKER: delete a speaker's template from the service"),
):
    command(_action, _usage)(_client_command(_action))


@command("ui", "start the MLflow UI on the embedded store (http://127.0.0.1:5000)")
def cmd_ui(args: argparse.Namespace) -> int:
    import os

    from speakerops.core import paths

    uri = paths.tracking_uri("registry")
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        "5000",
    ]
    if paths.artifact_location("registry"):
        argv += ["--default-artifact-root", paths.artifact_location("registry")]
    print(" ".join(argv))
    os.execv(sys.executable, argv + list(args.overrides))
    return 0


def _key_values(
    items: list[str], required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, str]:
    """Parse `key=value` arguments, naming what is missing or unknown."""
    opts: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in required + optional:
            raise SystemExit(
                f"unexpected argument {item!r}: expected {', '.join(k + '=...' for k in required + optional)}"
            )
        opts[key] = value
    missing = [k for k in required if k not in opts]
    if missing:
        raise SystemExit(f"missing {', '.join(k + '=...' for k in missing)}")
    return opts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speakerops", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (help_text, fn) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        for flags, kwargs in getattr(fn, "options", ()):
            p.add_argument(*flags, **kwargs)
        p.add_argument("--config", help="a composed params.yaml to load instead of composing conf/")
        if name == "params":
            p.add_argument("--output", help="where to write (default params.yaml)")
        p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.channels=256")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(COMMANDS[args.command][1](args) or 0)
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        print(f"speakerops {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _is_user_error(exc: BaseException) -> bool:
    """Bad input (files, values, config overrides): a one-line message, not a traceback."""
    if isinstance(exc, (FileNotFoundError, ValueError, KeyError)):
        return True
    module = type(exc).__module__
    return module.startswith(("hydra.", "omegaconf."))


if __name__ == "__main__":
    sys.exit(main())
