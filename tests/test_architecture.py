"""The import contracts (pyproject.toml `[tool.importlinter]`, docs/ARCHITECTURE.md): imports
point down the layers cli/demo > serve > drift > registry > train > eval > models > data >
core, and no library module imports the command line. They hold on the real tree, and they
break when a back-edge is planted in a copy of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

LINT = Path(sys.executable).parent / "lint-imports"


def lint(root: Path | None = None) -> subprocess.CompletedProcess:
    """`lint-imports` with the repo's contracts on the installed `speakerops` (the tree), or
    on the copy of it under `root` (first on PYTHONPATH)."""
    env = dict(os.environ)
    if root is not None:
        env["PYTHONPATH"] = str(root)
    return subprocess.run(
        [str(LINT), str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_contracts_hold_on_the_tree() -> None:
    proc = lint()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in proc.stdout


def test_a_planted_back_edge_breaks_them(tmp_path: Path) -> None:
    copy = shutil.copytree(
        REPO / "src", tmp_path / "speakerops", ignore=shutil.ignore_patterns("__pycache__")
    )
    with open(copy / "core" / "names.py", "a") as fh:  # the base layer reaching up into eval
        fh.write("\nfrom speakerops.eval import metrics  # noqa: E402,F401\n")
    with open(copy / "data" / "__init__.py", "a") as fh:  # a library module importing the CLI
        fh.write("\nfrom speakerops import cli  # noqa: E402,F401\n")
    proc = lint(tmp_path)
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Contracts: 0 kept, 2 broken." in proc.stdout
    assert "speakerops.core is not allowed to import speakerops.eval" in proc.stdout
    assert "speakerops.core.names -> speakerops.eval" in proc.stdout
    assert "speakerops.data is not allowed to import speakerops.cli" in proc.stdout
