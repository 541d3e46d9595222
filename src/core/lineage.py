"""Lineage: the facts that trace a registered model to code, data and configuration."""

from __future__ import annotations

import subprocess
from pathlib import Path

from speakerops.core.jsonio import sha256_json


def git_commit(cwd: str | Path = ".") -> str:
    """HEAD's sha (suffixed `-dirty` when tracked files differ), or `unknown` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def params_digest(params: dict) -> str:
    """sha256 of the composed parameters (canonical JSON)."""
    return sha256_json(params)
