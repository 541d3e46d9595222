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
