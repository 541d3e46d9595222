"""The process environment every command runs in: telemetry off (the network is closed),
child processes that find this install, and a deliberate number of torch threads."""

from __future__ import annotations

import os
import sys
from pathlib import Path

OFFLINE_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1"}


def offline_env() -> None:
    """Turn off the telemetry of MLflow and DVC (never phone home)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def child_env() -> dict[str, str]:
    """Environment for child processes (DVC and the stage commands it runs): telemetry off and
    this interpreter's bin folder first on PATH, so `speakerops` and `dvc` resolve to this
    install even when its virtual environment is not activated."""
    env = dict(os.environ, **OFFLINE_ENV)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def apply_threads(threads: int | str) -> int:
    """Use `threads` CPU threads in this process and its children (`runtime.threads`).

    Sets the OpenMP/BLAS variables (read by torch, numpy and DVC's child stages when they
    start) and, when torch is already loaded, its intra-op pool. Torch's default (one thread
    per core) made training 5x slower on a busy 2-core machine; the setting is deliberate."""
    try:
        n = int(threads)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"runtime.threads={threads!r}: expected a whole number >= 1") from exc
    if n < 1:
        raise ValueError(f"runtime.threads={threads!r}: expected a whole number >= 1")
    for key in _THREAD_VARS:
        os.environ[key] = str(n)
    torch = sys.modules.get("torch")  # not imported here: `speakerops params` stays instant
    if torch is not None:
        torch.set_num_threads(n)
    return n
