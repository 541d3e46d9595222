"""`sweep()`: one Optuna study over the train stage, its MLflow parent run and `sweep.json`.

MLflow: one parent run `sweep-<study>` (tags: study, storage with the password hidden; params:
the `sweep.*` config; metrics: trial counts and `best_<metric>`) with one child run per trial
(see `speakerops.train.sweep.workers`). The best trial becomes a generated experiment preset
(`speakerops.train.sweep.presets`), also logged to the parent run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from mlflow.entities import Param
from omegaconf import OmegaConf
from optuna.trial import TrialState

from speakerops.core import env, paths
from speakerops.core.config import compose, flatten
from speakerops.core.mlflow import client as store_client
from speakerops.train.sweep.presets import preset_path, write_preset
from speakerops.train.sweep.space import make_pruner, make_sampler, sweep_config
from speakerops.train.sweep.workers import (
    make_storage,
    masked,
    run_worker,
    run_workers,
    storage_url,
)


def sweep(overrides: list[str] | None = None) -> dict:
    """Run the study configured by `hparams_search=<name>`; returns the summary (`sweep.json`)."""
    overrides = list(overrides or [])
    env.offline_env()
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
    client = store_client(cfg.paths.registry_dir)
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(
            cfg.mlflow.experiment,
            artifact_location=paths.artifact_location(cfg.paths.registry_dir),
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
        client.log_batch(parent, params=[Param(k, v[:6000]) for k, v in items[i : i + 100]])
    print(f"[sweep] study {study_name!r} in {masked(url)}; MLflow parent run {parent}", flush=True)

    status = "FAILED"
    try:
        if n_jobs == 1:
            run_worker(overrides, 0, 1, parent)
        else:
            run_workers(overrides, n_jobs, parent, out_dir, study, set(before))
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
    preset_file, preset_name = preset_path(study_name)
    header = (
        f"Best trial of Optuna study {study_name!r} ({masked(url)}): trial {best.number}, "
        f"{metric}={best.value:.6g} ({sw.direction}).\n"
        f"MLflow run {best.user_attrs.get('mlflow_run_id')} (parent {parent}).\n"
        f"Written by `speakerops sweep`; train it with `speakerops train experiment={preset_name}`.\n"
        f"The trials also had: {' '.join(overrides) or '(no overrides)'}"
    )
    preset = write_preset(best.params, preset_file, header)
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
