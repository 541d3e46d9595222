"""The project and packaging commands: `init` (scaffold a project on the installed package) and
`export` (an encoder as ONNX or TorchScript)."""

from __future__ import annotations

from omegaconf import DictConfig

from speakerops.cli.base import Call, _print_json, command


@command(
    "init",
    "`init [dir] [force=true]`: scaffold a project (conf/ override stubs over the packaged "
    "defaults, dvc.yaml, params.yaml, registry/policy.yaml, .gitignore, .dvcignore, the promote "
    "and drift workflows; git init / dvc init when absent); refuses to overwrite without force",
    options={"force": "true: overwrite files that exist"},
    flags=("force",),
    positionals=True,
)
def cmd_init(call: Call, cfg: DictConfig) -> int:
    from speakerops.core.project import init_project

    if len(call.args) > 1:
        raise ValueError(f"init takes one folder, got {' '.join(call.args)}")
    _print_json(init_project(call.args[0] if call.args else ".", force=call.flag("force")))
    return 0


@command(
    "export",
    "`export model=<models:/name/N|@alias|file> format=onnx|torchscript [output=<file>]`: the "
    "encoder with its front end in one graph (dynamic length; sample rate and calibration in "
    "the file's metadata); a registered version gets the file logged with its sha256",
    options={
        "model": "a registry URI (resolved in paths.registry_dir) or a local encoder file",
        "format": "onnx | torchscript",
        "output": "the file to write (default paths.artifacts_dir/export/<name>-v<N>.<ext>)",
    },
)
def cmd_export(call: Call, cfg: DictConfig) -> int:
    from speakerops.registry.export import export_model

    missing = [k for k in ("model", "format") if not call.options.get(k)]
    if missing:
        raise ValueError(f"missing {', '.join(k + '=...' for k in missing)}")
    o = call.options
    result = export_model(cfg, o["model"], o["format"], o.get("output"))
    result.pop("metadata")
    _print_json(result)
    return 0
