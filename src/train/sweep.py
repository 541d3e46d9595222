"""`speakerops sweep hparams_search=<name> [sweep.n_jobs=N] [overrides]`: an Optuna study over
the train stage.

The search space, sampler, pruner, objective metric and storage live in
`conf/hparams_search/<name>.yaml` (package `_global_`: it may also set other keys, e.g. a shorter
`trainer.max_epochs` for the trials) under the key `sweep`. Each trial composes `conf/` with the
command's overrides plus the trial's (`optim.lr=0.0031 model.channels=256`), trains with the real
`train()` and returns the best value of `sweep.metric` over its epochs: `val_eer` (logged by the
module) or `val_min_dcf_<p>` (minDCF at P_target p, logged by `ValidationMinDCF`). Pruning: after
every validation the metric is reported to the trial (`trial.report(value, epoch)`) and the
configured pruner decides (`trial.should_prune()`).

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

MLflow: one parent run `sweep-<study>` (tags: study, storage with the password hidden) and one
child run per trial (`mlflow.parentRunId`, `optuna.trial`, `optuna.state`); the trial's
parameters are the run's config params, its value the metric `trial_value`.

Best preset: `conf/experiment/<study>_best.yaml` (`# @package _global_`, the best trial's
parameters as nested keys; a searched config group becomes `override /<group>: <option>`), so
`speakerops train experiment=<study>_best` trains it again.

Why not `optuna_integration.PyTorchLightningPruningCallback`: optuna-integration 5.0 imports
`lightning.pytorch` (the `lightning` package), absent here, and its callback subclasses
`lightning.pytorch.Callback`, not this project's `pytorch_lightning.Callback`. `OptunaPruning`
below does what it does for one process (report at `on_validation_end`, skip the sanity check,
raise `TrialPruned`), and also stops a diverged trial (non-finite loss or embeddings).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback

SAMPLERS = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "gp": "GPSampler",
    "cmaes": "CmaEsSampler",
    "qmc": "QMCSampler",
}
PRUNERS = {
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "threshold": "ThresholdPruner",
    "none": "NopPruner",
}
SQLITE_TIMEOUT_S = 30
HEARTBEAT_S = 60


# --------------------------------------------------------------------------- configuration


def sweep_config(cfg: DictConfig) -> DictConfig:
    """The `sweep` node, checked; a clear error when no hparams_search was selected."""
    from speakerops.config import conf_dir

    node = cfg.get("sweep")
    if node is None:
        options = sorted(p.stem for p in (conf_dir() / "hparams_search").glob("*.yaml"))
        raise ValueError(
            f"no sweep settings: pass hparams_search=<name> (in {conf_dir() / 'hparams_search'}: "
            f"{', '.join(options) or 'none'})"
        )
    for key in ("study_name", "metric", "direction", "n_trials", "params"):
        if node.get(key) is None:
            raise ValueError(f"sweep.{key} is missing in the hparams_search config")
    metric_callbacks(str(node.metric))  # a malformed val_min_dcf_<p> fails here, not in a trial
    if node.direction not in ("minimize", "maximize"):
        raise ValueError(f"sweep.direction must be minimize or maximize, got {node.direction!r}")
    if int(node.n_trials) < 1 or int(node.get("n_jobs") or 1) < 1:
        raise ValueError("sweep.n_trials and sweep.n_jobs must be >= 1")
    devices = cfg.trainer.get("devices", 1)
    n_devices = len(devices) if OmegaConf.is_list(devices) else devices  # [0] is one device
    if str(n_devices) != "1" or int(cfg.trainer.get("num_nodes") or 1) != 1:
        raise ValueError(
            "sweep trials train in one process each (trainer.devices=1): run trials in parallel "
            "with sweep.n_jobs instead of DDP"
        )
    if not node.params:
        raise ValueError("sweep.params is empty: nothing to search")
    for name, spec in node.params.items():
        kind = spec.get("type")
        if kind not in ("float", "int", "categorical"):
            raise ValueError(
                f"sweep.params.{name}.type must be float, int or categorical, got {kind!r}"
            )
        if kind == "categorical" and not spec.get("choices"):
            raise ValueError(f"sweep.params.{name}: a categorical needs choices")
        if kind != "categorical" and (spec.get("low") is None or spec.get("high") is None):
            raise ValueError(f"sweep.params.{name}: a {kind} needs low and high")
    return node


def storage_url(sweep: DictConfig, registry_dir: str | Path) -> str:
    """`sweep.storage`, or the sqlite file `<registry_dir>/optuna.db` (absolute path)."""
    if sweep.get("storage"):
        return str(sweep.storage)
    path = Path(registry_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'optuna.db'}"


def masked(url: str) -> str:
    """The storage URL with any password hidden (for logs and MLflow tags)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def make_storage(url: str):
    """Optuna RDB storage; sqlite gets a busy timeout so parallel workers wait for the lock."""
    import optuna

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


def make_sampler(sweep: DictConfig, worker: int = 0):
    """`sweep.sampler.type` (tpe | random | gp | cmaes | qmc) with `sweep.sampler.<type>` kwargs;
    seed = sweep.sampler.seed + worker, so parallel workers do not draw the same points."""
    import optuna

    node = sweep.get("sampler") or {}
    kind = node.get("type", "tpe")
    if kind not in SAMPLERS:
        raise ValueError(f"sweep.sampler.type {kind!r} is not one of {sorted(SAMPLERS)}")
    kwargs = OmegaConf.to_container(node.get(kind) or OmegaConf.create({}), resolve=True)
    seed = node.get("seed")
    return getattr(optuna.samplers, SAMPLERS[kind])(
        seed=None if seed is None else int(seed) + worker, **kwargs
    )


def make_pruner(sweep: DictConfig):
    """`sweep.pruner.type` (median | percentile | successive_halving | hyperband | threshold |
    none) with `sweep.pruner.<type>` kwargs."""
    import optuna

    node = sweep.get("pruner") or {}
    kind = node.get("type", "median")
    if kind not in PRUNERS:
        raise ValueError(f"sweep.pruner.type {kind!r} is not one of {sorted(PRUNERS)}")
    kwargs = OmegaConf.to_container(node.get(kind) or OmegaConf.create({}), resolve=True)
    return getattr(optuna.pruners, PRUNERS[kind])(**kwargs)


def suggest(trial, params: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's values for the search space `{key: {type, low, high, log, step, choices}}`."""
    values: dict[str, Any] = {}
    for name, spec in params.items():
        kind = spec["type"]
        if kind == "categorical":
            values[name] = trial.suggest_categorical(name, list(spec["choices"]))
        elif kind == "int":
            values[name] = trial.suggest_int(
                name,
                int(spec["low"]),
                int(spec["high"]),
                step=int(spec.get("step") or 1),
                log=bool(spec.get("log", False)),
            )
        else:
            step = spec.get("step")
            values[name] = trial.suggest_float(
                name,
                float(spec["low"]),
                float(spec["high"]),
                step=None if step is None else float(step),
                log=bool(spec.get("log", False)),
            )
    return values


def as_overrides(values: Mapping[str, Any]) -> list[str]:
    """`{"optim.lr": 0.003}` -> `["optim.lr=0.003"]` (repr keeps floats exact)."""
    return [f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()]


# --------------------------------------------------------------------------- pruning callback


class Diverged(RuntimeError):
    """Training produced a non-finite loss or embeddings and the pruner did not prune it."""


class _ForwardHookCallback(Callback):
    """A callback that holds one forward hook on the module and always removes it."""

    _hook = None

    def _remove_hook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._remove_hook()


class OptunaPruning(_ForwardHookCallback):
    """Reports `monitor` after each validation to the Optuna trial and prunes on its pruner's
    word; the pytorch_lightning equivalent of optuna-integration's
    `PyTorchLightningPruningCallback` (single process).

    A diverged trial (a non-finite training loss, or a non-finite embedding during validation,
    seen by a forward hook before the metric is computed) is reported as NaN, which Optuna's
    pruners prune once they have started: `TrialPruned` when the pruner agrees, else `Diverged`
    (the trial FAILs). `values` keeps {epoch: value}; `best()` is the objective (min or max over
    epochs).
    """

    def __init__(self, trial, monitor: str, direction: str = "minimize") -> None:
        super().__init__()
        self.trial, self.monitor, self.direction = trial, monitor, direction
        self.values: dict[int, float] = {}
        self.run_id: str | None = None
        self.stopped: str | None = None
        self._hook = None

    def on_fit_start(self, trainer, pl_module) -> None:
        logger = trainer.logger
        self.run_id = getattr(logger, "run_id", None)

    def _stop(self, epoch: int, why: str) -> None:
        import optuna

        self.trial.report(math.nan, step=epoch)
        if self.trial.should_prune():
            self.stopped = f"pruned at epoch {epoch}: {why}"
            raise optuna.TrialPruned(self.stopped)
        self.stopped = f"diverged at epoch {epoch}: {why}"
        raise Diverged(self.stopped)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import torch

        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all()):
            self._stop(trainer.current_epoch, f"training loss {float(loss)} at batch {batch_idx}")

    def on_validation_start(self, trainer, pl_module) -> None:
        import torch

        def check(module, inputs, output) -> None:
            if isinstance(output, torch.Tensor) and not bool(torch.isfinite(output).all()):
                self._stop(trainer.current_epoch, "non-finite embeddings at validation")

        self._hook = pl_module.register_forward_hook(check)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._remove_hook()

    def on_validation_end(self, trainer, pl_module) -> None:
        import optuna

        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(
                f"sweep.metric {self.monitor!r} was not logged; logged metrics: "
                f"{', '.join(sorted(trainer.callback_metrics)) or 'none'}"
            )
        epoch = int(trainer.current_epoch)
        self.values[epoch] = float(value)
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            self.stopped = f"pruned at epoch {epoch}: {self.monitor}={float(value):.4f}"
            raise optuna.TrialPruned(self.stopped)

    def best(self) -> float | None:
        finite = [v for v in self.values.values() if math.isfinite(v)]
        if not finite:
            return None
        return min(finite) if self.direction == "minimize" else max(finite)


MIN_DCF_PREFIX = "val_min_dcf_"


class ValidationMinDCF(_ForwardHookCallback):
    """Logs `val_min_dcf_<p_target>` each validation: minDCF (`speakerops.eval.metrics.min_dcf`,
    C_miss = C_fa = 1) of the cosine scores of the validation trial list, from the embeddings the
    module returns in validation (a forward hook; batches of one utterance in `val_utt_ids`
    order, as the module assumes). Added to trials whose `sweep.metric` is `val_min_dcf_<p>`
    (the module itself logs val_eer only).
    """

    def __init__(self, p_target: float) -> None:
        super().__init__()
        self.p_target = float(p_target)
        self.name = f"{MIN_DCF_PREFIX}{p_target:g}"
        self._embeddings: list = []
        self._hook = None

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._embeddings = []

        def keep(module, inputs, output) -> None:
            self._embeddings.append(output.detach().float().cpu().numpy())

        self._hook = pl_module.register_forward_hook(keep)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        import numpy as np

        from speakerops.eval.metrics import min_dcf
        from speakerops.eval.scoring import cosine_scores

        self._remove_hook()
        dm = trainer.datamodule
        if trainer.sanity_checking or dm is None or not self._embeddings:
            return
        emb = np.concatenate(self._embeddings)
        if len(emb) != len(dm.val_utt_ids):
            return
        scores = cosine_scores(dict(zip(dm.val_utt_ids, emb, strict=True)), dm.val_trials)
        value = min_dcf(scores, dm.val_trials["label"].to_numpy(), self.p_target)
        pl_module.log(self.name, value)


def metric_callbacks(metric: str) -> list[Callback]:
    """What a trial needs to log `metric` beyond the module's own `val_eer`."""
    if metric.startswith(MIN_DCF_PREFIX):
        try:
            p_target = float(metric[len(MIN_DCF_PREFIX) :])
        except ValueError:
            raise ValueError(
                f"sweep.metric {metric!r}: expected {MIN_DCF_PREFIX}<p_target>, e.g. "
                f"{MIN_DCF_PREFIX}0.01"
            ) from None
        return [ValidationMinDCF(p_target)]
    return []


# --------------------------------------------------------------------------- one worker


def objective_for(cfg: DictConfig, overrides: list[str], parent_run_id: str | None, worker: int):
    """The Optuna objective: compose with the trial's overrides, train, return the metric."""
    from mlflow.tracking import MlflowClient

    from speakerops.config import compose
    from speakerops.registry import tracking
    from speakerops.train.run import train

    sweep = cfg.sweep
    study = str(sweep.study_name)
    out_root = Path(sweep.out_dir)
    params = OmegaConf.to_container(sweep.params, resolve=True)
    client = MlflowClient(tracking.tracking_uri(cfg.paths.registry_dir))

    def objective(trial) -> float:
        import optuna

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
    and encoder.pt are artifacts of its MLflow run; encoder.pt also stays in the trial folder)."""
    if not sweep.get("keep_checkpoints", False):
        shutil.rmtree(Path(trial_cfg.train.out_dir) / "checkpoints", ignore_errors=True)


def run_worker(overrides: list[str], worker: int, n_workers: int, parent_run_id: str | None) -> int:
    """One worker: load the study and run this worker's share of `sweep.n_trials`."""
    import optuna

    from speakerops.config import compose
    from speakerops.registry import tracking

    tracking.offline_env()
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


# --------------------------------------------------------------------------- the sweep


def write_preset(best_params: Mapping[str, Any], path: Path, header: str) -> Path:
    """`# @package _global_` experiment preset: nested keys; a searched config group (a key
    naming a folder of conf/) becomes a defaults-list override."""
    from speakerops.config import conf_dir

    groups = {p.name for p in conf_dir().iterdir() if p.is_dir()}
    defaults = [{f"override /{k}": v} for k, v in best_params.items() if k in groups]
    values = OmegaConf.create({})
    for key, value in best_params.items():
        if key not in groups:
            OmegaConf.update(values, key, value, force_add=True)
    body = OmegaConf.to_container(values)
    text = "# @package _global_\n" + "".join(f"# {line}\n" for line in header.splitlines())
    if defaults:
        text += OmegaConf.to_yaml(OmegaConf.create({"defaults": defaults}))
    if body:
        text += OmegaConf.to_yaml(OmegaConf.create(body))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _worker_cmd(overrides: list[str], worker: int, n_workers: int, parent: str) -> list[str]:
    return [
        sys.executable, "-m", "speakerops.train.sweep",
        "--worker", str(worker), "--workers", str(n_workers), "--parent-run-id", parent,
        "--", *overrides,
    ]  # fmt: skip


def _report_finished(study, seen: set[int], metric: str) -> None:
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False):
        if t.number in seen or t.state in (TrialState.RUNNING, TrialState.WAITING):
            continue
        seen.add(t.number)
        value = "" if t.value is None else f" {metric}={t.value:.4f}"
        print(f"[sweep] trial {t.number} {t.state.name}{value} {t.params}", flush=True)


def _run_workers(
    overrides: list[str], n_jobs: int, parent: str, out_dir: Path, study, seen: set[int]
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


def sweep(overrides: list[str] | None = None) -> dict:
    """Run the study configured by `hparams_search=<name>`; returns the summary (`sweep.json`)."""
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    from speakerops.config import compose, conf_dir, flatten
    from speakerops.registry import tracking

    overrides = list(overrides or [])
    tracking.offline_env()
    cfg = compose(overrides)
    sw = sweep_config(cfg)
    study_name, metric = str(sw.study_name), str(sw.metric)
    url = storage_url(sw, cfg.paths.registry_dir)
    n_jobs = int(sw.get("n_jobs") or 1)
    out_dir = Path(sw.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    study = optuna.create_study(
        study_name=study_name,
        storage=make_storage(url),
        sampler=make_sampler(sw),
        pruner=make_pruner(sw),
        direction=str(sw.direction),
        load_if_exists=True,
    )
    if study.direction.name.lower() != str(sw.direction):
        raise ValueError(
            f"study {study_name!r} in {masked(url)} was created to {study.direction.name.lower()}, "
            f"sweep.direction is {sw.direction}: use another sweep.study_name"
        )
    study.set_user_attr("metric", metric)
    before = {t.number for t in study.get_trials(deepcopy=False)}
    for params in sw.get("enqueue") or []:
        study.enqueue_trial(OmegaConf.to_container(params, resolve=True), skip_if_exists=True)

    # a client, not mlflow.set_tracking_uri: that would export MLFLOW_TRACKING_URI process-wide
    client = MlflowClient(tracking.tracking_uri(cfg.paths.registry_dir))
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(
            cfg.mlflow.experiment,
            artifact_location=tracking.artifact_location(cfg.paths.registry_dir),
        )
    )
    parent = client.create_run(
        experiment_id,
        run_name=f"sweep-{study_name}",
        tags={
            "optuna.study": study_name,
            "optuna.storage": masked(url),
            "optuna.metric": metric,
            "optuna.direction": str(sw.direction),
            "speakerops.command": "sweep " + " ".join(overrides),
        },
    ).info.run_id
    sweep_params = {k: v for k, v in flatten(cfg).items() if k.startswith("sweep.")}
    items = sorted(sweep_params.items())
    for i in range(0, len(items), 100):
        from mlflow.entities import Param

        client.log_batch(parent, params=[Param(k, v[:6000]) for k, v in items[i : i + 100]])
    print(f"[sweep] study {study_name!r} in {masked(url)}; MLflow parent run {parent}", flush=True)

    status = "FAILED"
    try:
        if n_jobs == 1:
            run_worker(overrides, 0, 1, parent)
        else:
            _run_workers(overrides, n_jobs, parent, out_dir, study, set(before))
        status = "FINISHED"
    finally:
        trials = [t for t in study.get_trials(deepcopy=False) if t.number not in before]
        counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
        for state in ("complete", "pruned", "fail"):
            client.log_metric(parent, f"n_{state}", counts[state])
        if status != "FINISHED":
            client.set_terminated(parent, "FAILED")

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    summary: dict[str, Any] = {
        "study": study_name,
        "storage": masked(url),
        "metric": metric,
        "direction": str(sw.direction),
        "parent_run_id": parent,
        "trials_this_sweep": len(trials),
        "complete": counts["complete"],
        "pruned": counts["pruned"],
        "failed": counts["fail"],
    }
    if not complete:
        client.set_terminated(parent, "FAILED")
        errors = [t.user_attrs["error"] for t in trials if "error" in t.user_attrs]
        first = f"; first error: {errors[0]}" if errors else ""
        raise RuntimeError(f"study {study_name!r}: no trial completed ({summary}){first}")
    best = study.best_trial
    preset_name = f"{study_name}_best"
    header = (
        f"Best trial of Optuna study {study_name!r} ({masked(url)}): trial {best.number}, "
        f"{metric}={best.value:.6g} ({sw.direction}).\n"
        f"MLflow run {best.user_attrs.get('mlflow_run_id')} (parent {parent}).\n"
        f"Written by `speakerops sweep`; train it with `speakerops train experiment={preset_name}`.\n"
        f"The trials also had: {' '.join(overrides) or '(no overrides)'}"
    )
    preset = write_preset(best.params, conf_dir() / "experiment" / f"{preset_name}.yaml", header)
    summary.update(
        best_trial=best.number,
        best_value=best.value,
        best_params=best.params,
        best_run_id=best.user_attrs.get("mlflow_run_id"),
        preset=str(preset),
        experiment=preset_name,
    )
    client.log_metric(parent, f"best_{metric}", float(best.value))
    for key, value in best.params.items():
        client.log_param(parent, f"best.{key}", value)
    client.set_tag(parent, "optuna.best_trial", str(best.number))
    if summary["best_run_id"]:
        client.set_tag(parent, "optuna.best_run_id", summary["best_run_id"])
    (out_dir / "sweep.json").write_text(json.dumps(summary, indent=2, default=str))
    client.log_artifact(parent, str(preset), "preset")
    client.log_artifact(parent, str(out_dir / "sweep.json"))
    client.set_terminated(parent, "FINISHED")
    return summary


def _worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m speakerops.train.sweep")
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--parent-run-id", default=None)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    n = run_worker(args.overrides, args.worker, args.workers, args.parent_run_id)
    print(f"[sweep] worker {args.worker} done: {n} trial(s)")
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
