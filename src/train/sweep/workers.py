"""Sweep workers: the Optuna storage, the objective (one trial = one real `train()`), one
worker's share of the trials, and N worker processes on one study.

Parallel workers: `sweep.n_jobs=N` starts N processes (`python -m speakerops.train.sweep
--worker i ...`) on one study in one storage (`load_if_exists`); worker i runs its share of
`sweep.n_trials` (n_trials // N, plus one for the first n_trials % N workers) with sampler seed
`seed + i`. More workers can join from other machines with the same command and a shared
storage URL.

Storage: `sweep.storage` null is `sqlite:///<paths.registry_dir>/optuna.db`, else any Optuna RDB
URL (`postgresql://...`, `mysql+pymysql://...`). One RDB storage type for the laptop and the team
server, as for MLflow. sqlite serializes writers with a file lock; trials write a few rows per
epoch, so a 30 s busy timeout (`connect_args`) is ample for a handful of workers. A heartbeat
marks the RUNNING trials of a killed worker FAIL (`heartbeat_interval`).

MLflow: one child run per trial (`mlflow.parentRunId`, `optuna.trial`, `optuna.state`); the
trial's parameters are the run's config params, its value the metric `trial_value`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from speakerops.core import env
from speakerops.core.config import compose
from speakerops.core.mlflow import client as store_client
from speakerops.train.run import train
from speakerops.train.sweep.callbacks import OptunaPruning, metric_callbacks
from speakerops.train.sweep.space import (
    as_overrides,
    make_pruner,
    make_sampler,
    suggest,
    sweep_config,
)

SQLITE_TIMEOUT_S = 30
HEARTBEAT_S = 60


def storage_url(sweep: DictConfig, registry_dir: str | Path) -> str:
    """`sweep.storage`, or the sqlite file `<registry_dir>/optuna.db` (absolute path)."""
    if sweep.get("storage"):
        return str(sweep.storage)
    path = Path(registry_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'optuna.db'}"


def masked(url: str) -> str:
    """The storage URL with any password hidden (for logs and MLflow tags)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def make_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna RDB storage; sqlite gets a busy timeout so parallel workers wait for the lock."""
    engine_kwargs = (
        {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
    )
    with warnings.catch_warnings():  # the heartbeat is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_S,
            grace_period=3 * HEARTBEAT_S,
        )


def objective_for(
    cfg: DictConfig, overrides: list[str], parent_run_id: str | None, worker: int
) -> Callable[[optuna.Trial], float]:
    """The Optuna objective: compose with the trial's overrides, train, return the metric."""
    sweep = cfg.sweep
    study = str(sweep.study_name)
    out_root = Path(sweep.out_dir)
    params = OmegaConf.to_container(sweep.params, resolve=True)
    client = store_client(cfg.paths.registry_dir)

    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, params)
        n = trial.number
        trial_cfg = compose(
            [
                *overrides,
                *as_overrides(values),
                f"train.out_dir={out_root / f'trial-{n:04d}'}",
                "train.resume=false",
                f"mlflow.run_name={study}-trial-{n}",
            ]
        )
        tags = {
            "optuna.study": study,
            "optuna.trial": str(n),
            "optuna.worker": str(worker),
            "optuna.params": json.dumps(values, sort_keys=True),
        }
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        pruning = OptunaPruning(trial, str(sweep.metric), str(sweep.direction))
        print(f"[sweep {study}] worker {worker} trial {n}: {' '.join(as_overrides(values))}")
        try:
            callbacks = [*metric_callbacks(str(sweep.metric)), pruning]
            summary = train(trial_cfg, extra_callbacks=callbacks, tags=tags)
        except Exception as exc:
            _drop_checkpoints(trial_cfg, sweep)
            pruned = isinstance(exc, optuna.TrialPruned)
            message = str(exc) if pruned else f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("error" if not pruned else "stopped", message[:2000])
            if pruning.run_id:
                trial.set_user_attr("mlflow_run_id", pruning.run_id)
                client.set_tag(pruning.run_id, "optuna.state", "PRUNED" if pruned else "FAIL")
                client.set_tag(pruning.run_id, "optuna.stopped", message[:5000])
                client.set_terminated(pruning.run_id, "KILLED" if pruned else "FAILED")
            print(f"[sweep {study}] worker {worker} trial {n}: {message}")
            raise
        _drop_checkpoints(trial_cfg, sweep)
        value = pruning.best()
        if value is None:
            raise RuntimeError(f"trial {n}: no finite {sweep.metric} was reported")
        trial.set_user_attr("mlflow_run_id", summary["run_id"])
        trial.set_user_attr("train_out_dir", str(trial_cfg.train.out_dir))
        client.set_tag(summary["run_id"], "optuna.state", "COMPLETE")
        client.log_metric(summary["run_id"], "trial_value", value)
        print(f"[sweep {study}] worker {worker} trial {n}: {sweep.metric}={value:.4f}")
        return value

    return objective


def _drop_checkpoints(trial_cfg: DictConfig, sweep: DictConfig) -> None:
    """A trial's Lightning checkpoints go unless `sweep.keep_checkpoints` (its best checkpoint
    and encoder file are artifacts of its MLflow run; the encoder also stays in the trial folder)."""
    if not sweep.get("keep_checkpoints", False):
        shutil.rmtree(trial_cfg.callbacks.model_checkpoint.dirpath, ignore_errors=True)


def run_worker(overrides: list[str], worker: int, n_workers: int, parent_run_id: str | None) -> int:
    """One worker: load the study and run this worker's share of `sweep.n_trials`."""
    env.offline_env()
    cfg = compose(overrides)
    sweep = sweep_config(cfg)
    n_trials = int(sweep.n_trials)
    quota = n_trials // n_workers + (1 if worker < n_trials % n_workers else 0)
    if quota == 0:
        return 0
    study = optuna.load_study(
        study_name=str(sweep.study_name),
        storage=make_storage(storage_url(sweep, cfg.paths.registry_dir)),
        sampler=make_sampler(sweep, worker),
        pruner=make_pruner(sweep),
    )
    study.optimize(
        objective_for(cfg, overrides, parent_run_id, worker),
        n_trials=quota,
        timeout=sweep.get("timeout"),
        catch=(Exception,),  # a failed trial (diverged, out of memory) is FAIL; the study goes on
        gc_after_trial=True,
    )
    return quota


def _worker_cmd(overrides: list[str], worker: int, n_workers: int, parent: str) -> list[str]:
    return [
        sys.executable, "-m", "speakerops.train.sweep",
        "--worker", str(worker), "--workers", str(n_workers), "--parent-run-id", parent,
        "--", *overrides,
    ]  # fmt: skip


def _report_finished(study: optuna.Study, seen: set[int], metric: str) -> None:
    for t in study.get_trials(deepcopy=False):
        if t.number in seen or t.state in (TrialState.RUNNING, TrialState.WAITING):
            continue
        seen.add(t.number)
        value = "" if t.value is None else f" {metric}={t.value:.4f}"
        print(f"[sweep] trial {t.number} {t.state.name}{value} {t.params}", flush=True)


def run_workers(
    overrides: list[str],
    n_jobs: int,
    parent: str,
    out_dir: Path,
    study: optuna.Study,
    seen: set[int],
) -> None:
    """N worker processes on the one study; their output goes to `<out_dir>/worker-<i>.log`."""
    procs, logs = [], []
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # N processes x all-core torch thread pools thrash a CPU: give each worker its share
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n_jobs)))
    try:
        for i in range(n_jobs):
            log = open(out_dir / f"worker-{i}.log", "w")  # noqa: SIM115 (closed below)
            logs.append(log)
            cmd = _worker_cmd(overrides, i, n_jobs, parent)
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
        print(f"[sweep] {n_jobs} workers started; logs in {out_dir}/worker-*.log", flush=True)
        while any(p.poll() is None for p in procs):
            time.sleep(2.0)
            _report_finished(study, seen, str(study.user_attrs.get("metric", "value")))
        _report_finished(study, seen, str(study.user_attrs.get("metric", "value")))
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait()
        raise
    finally:
        for log in logs:
            log.close()
    failed = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode != 0]
    if failed:
        details = []
        for i, code in failed:
            tail = (out_dir / f"worker-{i}.log").read_text(errors="replace")[-3000:]
            details.append(f"worker {i} exited with {code}; end of worker-{i}.log:\n{tail}")
        raise RuntimeError("sweep worker(s) failed:\n" + "\n".join(details))


def worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m speakerops.train.sweep")
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--parent-run-id", default=None)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    n = run_worker(args.overrides, args.worker, args.workers, args.parent_run_id)
    print(f"[sweep] worker {args.worker} done: {n} trial(s)")
    return 0
