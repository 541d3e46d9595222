"""The lifecycle commands: prepare .. promote, embed, keys, audit, models, policy, drift, demos."""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from speakerops.cli.base import EXIT_ERROR, Call, _print_json, command


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
    "the embeddings are written encrypted to <output>.enc (embed.plaintext=true: the plain file); "
    "files skipped or refused by the input checks go to <output>.quarantine.csv",
    options={
        "model": "a registry URI (resolved in paths.registry_dir) or a local encoder",
        "input": "a folder of audio or a manifest .csv",
        "output": "embeddings file, .parquet or .npz (written as <output>.enc, encrypted)",
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
    if not report.n_embedded:
        print("no embeddings written: every input was skipped or refused", file=sys.stderr)
    else:
        print(
            f"wrote {report.n_embedded} embeddings ({report.embedding_dim}-dim) to {report.output}"
        )
    if report.plaintext and report.n_embedded:
        print(
            f"warning: embed.plaintext=true: {report.output} holds biometric data (embeddings) "
            "unencrypted; keep it off shared storage and delete it after use",
            file=sys.stderr,
        )
    elif report.n_embedded:
        print(
            "  encrypted with the store's keyring: read it with "
            "speakerops.eval.embed.read_embeddings(path, keyring_from_cfg(cfg)), or embed again "
            "with embed.plaintext=true for a plain file"
        )
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
        from speakerops.serve.audit import command_trail

        trail = command_trail(cfg, keys.keyring_from_cfg(cfg))  # opened before the master moves
        purpose, retire = call.options.get("purpose"), call.flag("retire")
        line = keyops.rotate_keys(cfg, retire=retire, purpose=purpose)
        trail.record("keys.rotate", purpose=purpose, retire=retire, summary=line)
        print(line)
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
    "a pickled encoder, with torch.load(weights_only=True)); `models import source=<resemblyzer|speechbrain> "
    "output=<file.safetensors> [path=<source folder>] [licence=<SPDX id>]` (a pretrained encoder from another toolkit)",
    options={
        "source": "import: the source toolkit (resemblyzer, speechbrain)",
        "output": "import: the encoder file to write (*.safetensors, + its .sha256 sidecar)",
        "path": "import: the source's file or folder, for sources not inside a package",
        "licence": "import: the source's licence (SPDX id) when its folder does not say",
    },
    actions=("convert", "import"),
    positionals=True,
)
def cmd_models(call: Call, cfg: DictConfig) -> int:
    if call.action == "import":
        return _models_import(call)
    from speakerops.models.legacy import convert

    if len(call.args) != 2:
        raise ValueError("usage: speakerops models convert <old encoder.pt> <new.safetensors>")
    _print_json(convert(*call.args))
    return 0


def _models_import(call: Call) -> int:
    from omegaconf import OmegaConf

    from speakerops.core.config import compose
    from speakerops.models.importers import import_encoder, source_of

    if call.config or call.args:
        raise ValueError(
            "usage: speakerops models import source=<name> output=<file.safetensors> "
            "[path=<source>] [conf/ overrides] (no config=, no bare words)"
        )
    for key in ("source", "output"):
        if not call.options.get(key):
            raise ValueError(f"models import: {key}= is required")
    name = call.options["source"]
    cfg = compose([*source_of(name).overrides, *call.overrides])
    _print_json(
        import_encoder(
            name,
            call.options["output"],
            OmegaConf.to_container(cfg.model, resolve=True),
            OmegaConf.to_container(cfg.features, resolve=True),
            call.options.get("path"),
            call.options.get("licence"),
        )
    )
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


@command(
    "drift",
    "production embeddings vs the champion's reference; ticket + retraining on drift "
    "(`drift check`, the default); `drift compact`: each partition of the production log "
    "(drift.log_dir) rewritten as one part, rows still encrypted",
    actions=("check", "compact"),
)
def cmd_drift(call: Call, cfg: DictConfig) -> int:
    if call.action == "compact":
        from speakerops.drift.compact import compact_production_log

        report = compact_production_log(cfg.drift.log_dir)
        _print_json(report)
        for e in report["errors"]:
            print(f"speakerops drift compact: {e['partition']}: {e['error']}", file=sys.stderr)
        return EXIT_ERROR if report["errors"] else 0
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
    options={"via": "batch (`speakerops embed`, default) | api (traffic to `speakerops serve`)"},
)
def cmd_drift_demo(call: Call, cfg: DictConfig) -> int:
    from speakerops.demo.drift import run_drift_demo

    return run_drift_demo(call.overrides, via=call.options.get("via", "batch"))
