"""Retraining through DVC once drift is confirmed.

``trigger_retraining`` runs the configured command (default
``dvc exp run --set-param data.extra_manifests=[<manifest>]``) in the project root with
telemetry off and this interpreter's bin folder first on PATH (the stages call
``speakerops``). The training config's ``data.extra_manifests`` lists manifest CSVs whose
rows join the training split, so the experiment retrains on the original data plus
the newly labelled production data; the result is a new challenger that then goes
through promotion (``speakerops promote``). ``{manifest}`` in the command is replaced by
the manifest path (relative to the project root when inside it).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from speakerops.core.env import child_env
from speakerops.drift.config import drift_config

log = logging.getLogger("speakerops.drift")
MANIFEST_COLUMNS = ("utt_id", "path", "speaker", "duration", "sample_rate")


def validate_manifest(path: str | Path) -> pd.DataFrame:
    """Read a labelled manifest CSV; refuse a missing file, missing columns or no rows."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labelled manifest {path} does not exist")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"labelled manifest {path} is not a readable CSV: {exc}") from exc
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"labelled manifest {path} lacks column(s) {missing} (needs {list(MANIFEST_COLUMNS)})"
        )
    if df.empty:
        raise ValueError(f"labelled manifest {path} has no rows")
    if df["speaker"].isna().any():
        raise ValueError(
            f"labelled manifest {path}: {int(df['speaker'].isna().sum())} row(s) have no speaker label"
        )
    return df


def _resolve_executable(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name  # the venv's own dvc when PATH lacks it
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    raise FileNotFoundError(
        f"retraining command {name!r} not found on PATH or beside {sys.executable}"
    )


def retraining_command(cfg, labelled_manifest: str | Path | None) -> tuple[list[str], Path]:
    """The argv and working directory ``trigger_retraining`` would use."""
    r = drift_config(cfg).retrain
    root = Path(r.cwd).resolve() if r.cwd else Path.cwd().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"drift.retrain.cwd {root} is not a folder")
    if labelled_manifest is None:
        argv = [str(a) for a in r.command_without_manifest]
    else:
        m = Path(labelled_manifest).resolve()
        try:
            shown = str(m.relative_to(root))
        except ValueError:
            shown = str(m)
        argv = [str(a).replace("{manifest}", shown) for a in r.command]
    if not argv:
        raise ValueError("drift.retrain.command is empty")
    argv[0] = _resolve_executable(argv[0])
    return argv, root


def trigger_retraining(
    cfg, labelled_manifest: Path | None, log_path: str | Path | None = None
) -> int:
    """Run the DVC retraining command; return its exit code. ``log_path``: also keep its
    output there (otherwise it goes to this process's stdout/stderr)."""
    r = drift_config(cfg).retrain
    if labelled_manifest is not None:
        validate_manifest(labelled_manifest)
    argv, root = retraining_command(cfg, labelled_manifest)
    env = child_env()
    log.info("retraining: %s (in %s)", " ".join(argv), root)
    timeout = None if r.timeout_s in (None, 0) else float(r.timeout_s)
    try:
        if log_path is None:
            proc = subprocess.run(argv, cwd=root, env=env, timeout=timeout, check=False)
        else:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "w") as fh:
                proc = subprocess.run(
                    argv,
                    cwd=root,
                    env=env,
                    timeout=timeout,
                    check=False,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                )
    except subprocess.TimeoutExpired:
        log.error("retraining command timed out after %s s", timeout)
        return 124
    if proc.returncode != 0:
        log.error("retraining command exited with %d", proc.returncode)
    return int(proc.returncode)
