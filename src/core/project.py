"""`speakerops init [dir]`: scaffold a project that runs on the installed package.

What a project gets (every template is the checkout's own file, shipped in the wheel as
`speakerops/templates/`, so there is one copy of each):

- `conf/project/default.yaml` and `conf/README.md`: commented override stubs; the packaged
  config tree (`speakerops/conf`) is layered under `conf/` (`speakerops.core.config`);
- `dvc.yaml` (the checkout's pipeline without its `src/` code dependencies, which a project
  does not have: after upgrading the package, `dvc repro -f` reruns it) and `params.yaml`
  composed from the layered tree;
- `registry/policy.yaml` (the packaged default policy), `.gitignore`, `.dvcignore`;
- `.github/workflows/promote.yml` and `drift.yml` (the examples, installing the package
  instead of a checkout);
- `git init` / `dvc init` when the folder is not a repository yet, and `speakerops keys init`
  (the master key protecting biometric data at rest, created once outside every project).

Nothing is overwritten unless `force` (the refusal names every file in the way).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from speakerops.core.config import compose, packaged_policy, write_params
from speakerops.core.env import child_env
from speakerops.core.keyops import init_keys

_PACKAGE_DIR = Path(__file__).resolve().parents[1]
WORKFLOWS = ("promote.yml", "drift.yml")
# the checkout's install step(s) of each workflow -> the package's
_CHECKOUT_INSTALLS = (
    "bash scripts/install.sh",
    "pip install -e .",
)
_PACKAGE_INSTALL = (
    'python -m venv .venv && .venv/bin/pip install "${{ vars.SPEAKEROPS_PACKAGE || '
    "'speakerops' }}\"  # a wheel URL/path or an index name"
)

PROJECT_STUB = """\
# This project's settings over speakerops' packaged defaults (speakerops/conf in the installed
# package; `python -c "import speakerops.core.config as c; print(c.packaged_conf_dir())"`
# prints where). Hydra reads this file after the packaged config groups and before
# `experiment=...` and the command line, so the command line still wins. Uncomment what you
# change; see conf/README.md for replacing or adding a whole option of a group.
#
# defaults:
#   - override /data: folder        # folder-per-speaker corpus (conf/data/folder.yaml)
#   - override /model: ecapa512     # any conf/model/<name>.yaml, packaged or yours
#
# data:
#   root: /srv/corpora/my_speakers  # <root>/<speaker>/<utterance>.wav
#
# trainer:
#   max_epochs: 20
#
# register:
#   model_name: my-speaker-encoder
#   policy: registry/policy.yaml    # the promotion gates (this project's file)
#
# paths:
#   registry_dir: registry          # embedded MLflow store; MLFLOW_TRACKING_URI points at a server
"""

CONF_README = """\
# conf/: this project's layer over speakerops' packaged config

`speakerops` composes one Hydra tree from two folders, this one first:

1. this `conf/`;
2. the packaged defaults (`speakerops/conf` in the installed package).

Hydra looks a file up in that order, so:

- `conf/project/default.yaml` holds this project's top-level settings (stubs inside);
- `conf/<group>/<option>.yaml` with a packaged name (e.g. `conf/model/ecapa512.yaml`) replaces
  that option; a new name (e.g. `conf/model/mynet.yaml`) adds one: `model=mynet`;
- every group you leave alone comes from the package, and upgrades with it;
- a `conf/config.yaml` of your own replaces the packaged top-level config entirely.

After editing, `speakerops params` recomposes `params.yaml`; `dvc repro` then reruns what changed
(`speakerops demo` does both).
"""


class ProjectExistsError(ValueError):
    """init would overwrite files; the message lists them."""


def template_dir() -> Path:
    """The templates: `speakerops/templates/` in a wheel, the checkout's root in a checkout."""
    inside = _PACKAGE_DIR / "templates"
    return inside if (inside / "dvc.yaml").is_file() else _PACKAGE_DIR.parent


def workflow_dir() -> Path:
    inside = _PACKAGE_DIR / "templates" / "workflows"
    return inside if inside.is_dir() else _PACKAGE_DIR.parent / ".github" / "workflows"


def project_dvc_yaml(text: str) -> str:
    """The checkout's dvc.yaml for a project: without the `src/...` code dependencies (a
    project has no src/; DVC refuses a missing dependency)."""
    pipeline = yaml.safe_load(text)
    for stage in pipeline["stages"].values():
        deps = [d for d in stage.get("deps", []) if not str(d).startswith("src/")]
        if deps:
            stage["deps"] = deps
        else:
            stage.pop("deps", None)
    header = (
        "# The speakerops pipeline (`speakerops init`): prepare -> train -> evaluate -> register\n"
        "# -> gate (+ the baseline). Each stage reads params.yaml: `speakerops params` composes\n"
        "# conf/ over the packaged defaults into it (`speakerops demo` does, then `dvc repro`).\n"
    )
    return header + yaml.safe_dump(pipeline, sort_keys=False, width=100)


def project_workflow(text: str) -> str:
    for old in _CHECKOUT_INSTALLS:
        text = text.replace(old, _PACKAGE_INSTALL)
    return text.replace("python -m pip install --upgrade pip\n", "").replace(
        "pip install torch==2.11.0 torchaudio==2.11.0 --index-url "
        "https://download.pytorch.org/whl/cpu\n",
        "",
    )


def _files() -> dict[str, str]:
    """Relative path -> content of every file init writes (params.yaml comes after)."""
    tpl, wf = template_dir(), workflow_dir()
    files = {
        "conf/project/default.yaml": PROJECT_STUB,
        "conf/README.md": CONF_README,
        "dvc.yaml": project_dvc_yaml((tpl / "dvc.yaml").read_text()),
        "registry/policy.yaml": packaged_policy().read_text(),
        ".gitignore": (tpl / ".gitignore").read_text(),
        ".dvcignore": (tpl / ".dvcignore").read_text(),
    }
    for name in WORKFLOWS:
        files[f".github/workflows/{name}"] = project_workflow((wf / name).read_text())
    return files


@contextmanager
def _inside(path: Path) -> Iterator[None]:
    before = Path.cwd()
    conf_env = os.environ.pop("SPEAKEROPS_CONF", None)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)
        if conf_env is not None:
            os.environ["SPEAKEROPS_CONF"] = conf_env


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=child_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} in {cwd} failed: {proc.stderr.strip()[-500:]}")


def init_project(target: str | Path = ".", force: bool = False) -> dict[str, object]:
    """Scaffold a project in `target` (created when missing); returns what was done."""
    root = Path(target).absolute()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root}: exists and is not a folder")
    files = _files()
    clash = sorted(rel for rel in [*files, "params.yaml"] if (root / rel).exists())
    if clash and not force:
        raise ProjectExistsError(
            f"{root}: would overwrite {', '.join(clash)}; pass force=true to overwrite them"
        )
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    done: list[str] = []
    if not (root / ".git").exists() and shutil.which("git"):
        _run(["git", "init", "-q"], root)
        done.append("git init")
    if not (root / ".dvc").exists():
        _run([sys.executable, "-m", "dvc", "init", "-q"], root)
        _run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], root)
        done.append("dvc init")
    with _inside(root):
        cfg = compose([])
        write_params(cfg)
        # registering needs the master key that protects biometric data at rest (as demo.sh:
        # created once, outside every project; an existing or configured key is kept)
        key = init_keys(cfg)
    return {
        "project": str(root),
        "wrote": [*files, "params.yaml"],
        "overwrote": clash,
        "ran": done,
        "master_key": key,
        "next": f"cd {root} && speakerops demo",
    }
