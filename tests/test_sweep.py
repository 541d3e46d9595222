"""Optuna sweeps over the real train stage: two worker processes on one sqlite study, pruning
through the Lightning callback, MLflow parent/child runs, and the best preset trained again."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import MICRO_CORPUS, REPO
from .sweep_preset import search_preset

MICRO = [
    *MICRO_CORPUS,
    "data.loader.crop_seconds=1.0",
    "model.attention_channels=8",
]

# The search space spans a learning rate at which AdamW diverges on every CPU (1e30: one step
# moves the weights by ~1e30, so the next forward pass overflows float32; 1e3 diverged on one
# machine and trained to a finite EER on another): that trial, enqueued third, starts only
# after a worker has completed its first trial, so the median pruner (n_startup_trials=1) has a
# completed trial to compare with and prunes the NaN it reports.
# The fourth trial is drawn by TPE (random start-up, seeded per worker).
MICRO_SEARCH = search_preset(
    "micro",
    max_epochs=3,
    n_trials=4,
    space="""\
  params:
    optim.lr: {type: float, low: 1.0e-4, high: 1.0e30, log: true}
    model.channels: {type: categorical, choices: [16, 24]}
  enqueue:
    - {optim.lr: 0.002, model.channels: 16}
    - {optim.lr: 0.01, model.channels: 24}
    - {optim.lr: 1.0e30, model.channels: 16}
""",
)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory):
    """A project with a conf/ copy (the sweep writes its preset there), the micro corpus and
    one finished two-worker sweep."""
    from speakerops.core.config import compose
    from speakerops.data.prepare import prepare
    from speakerops.train.sweep import sweep

    root = tmp_path_factory.mktemp("sweep")
    shutil.copytree(REPO / "conf", root / "conf")
    (root / "conf/hparams_search/micro.yaml").write_text(MICRO_SEARCH)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("SPEAKEROPS_CONF", str(root / "conf"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)  # the project's own embedded store
        prepare(compose(MICRO).data, progress=False)
        summary = sweep(["hparams_search=micro", *MICRO])
        yield root, summary


@pytest.mark.slow
def test_two_workers_share_one_study_and_prune(swept) -> None:
    import optuna
    from optuna.trial import TrialState

    root, summary = swept
    study = optuna.load_study(study_name="micro", storage=f"sqlite:///{root}/registry/optuna.db")
    trials = study.get_trials()
    assert len(trials) == 4 and summary["trials_this_sweep"] == 4
    states = {t.number: t.state for t in trials}
    assert TrialState.RUNNING not in states.values() and TrialState.WAITING not in states.values()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and summary["pruned"] == len(pruned) >= 1
    diverging = next(t for t in trials if t.params["optim.lr"] == 1e30)
    assert diverging.state == TrialState.PRUNED, diverging.user_attrs
    # stopped in its first epoch, not trained to the end
    assert diverging.user_attrs["stopped"].startswith("pruned at epoch 0"), diverging.user_attrs
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and summary["complete"] == len(complete)
    for t in complete:  # the objective is the best val_eer over the reported epochs
        assert 0.0 <= t.value <= 0.5 and t.value == min(t.intermediate_values.values())
        assert sorted(t.intermediate_values) == [0, 1, 2]  # one report per epoch
        trial_dir = Path(t.user_attrs["train_out_dir"])  # encoder kept, checkpoints dropped
        assert (trial_dir / "encoder.safetensors").is_file() and not (
            trial_dir / "checkpoints"
        ).exists()
        # the objective is the train stage's own best, whose encoder the trial kept
        kept = json.loads((trial_dir / "train.json").read_text())
        assert t.value == pytest.approx(kept["best_val_eer"], abs=1e-6), (t.number, kept)
        assert kept["epochs"] == 3 and kept["run_id"] == t.user_attrs["mlflow_run_id"]
    assert summary["best_value"] == min(t.value for t in complete)
    assert summary["best_params"] == study.best_trial.params
    assert (root / "artifacts/sweeps/micro/worker-0.log").is_file()
    assert (root / "artifacts/sweeps/micro/worker-1.log").is_file()


@pytest.mark.slow
def test_every_trial_is_an_mlflow_child_run_of_the_sweep(swept) -> None:
    from mlflow.tracking import MlflowClient

    root, summary = swept
    client = MlflowClient(f"sqlite:///{root}/registry/mlflow.db")
    experiment = client.get_experiment_by_name("speakerops")
    runs = client.search_runs([experiment.experiment_id])
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["optuna.study"] == "micro"
    assert parent.data.tags["optuna.storage"].endswith("registry/optuna.db")
    assert parent.data.metrics["best_val_eer"] == pytest.approx(summary["best_value"])
    assert parent.data.params["best.optim.lr"] == str(summary["best_params"]["optim.lr"])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 5 and len(children) == 4  # the sweep and its 4 trials, nothing else
    assert {r.data.tags["optuna.worker"] for r in children} == {"0", "1"}  # two processes
    by_state = {}
    for run in children:
        by_state.setdefault(run.data.tags["optuna.state"], []).append(run)
        trial_params = json.loads(run.data.tags["optuna.params"])
        # the trial's values reached the training config that the run logged
        assert float(run.data.params["optim.lr"]) == trial_params["optim.lr"]
        assert int(run.data.params["model.channels"]) == trial_params["model.channels"]
    assert all(r.info.status == "KILLED" for r in by_state["PRUNED"])
    for run in by_state["COMPLETE"]:
        assert run.info.status == "FINISHED"
        assert 0.0 <= run.data.metrics["trial_value"] <= run.data.metrics["val_eer"] + 1e-9
    best = client.get_run(summary["best_run_id"])
    assert best.data.metrics["trial_value"] == pytest.approx(summary["best_value"])


@pytest.mark.slow
def test_best_preset_trains_again_from_experiment(swept) -> None:
    from speakerops.core.config import compose
    from speakerops.train.run import train

    root, summary = swept
    # generated presets live in a git-ignored folder of the tree: `git status` stays clean
    preset = root / "conf/experiment/generated/micro_best.yaml"
    assert Path(summary["preset"]) == preset and preset.read_text().startswith(
        "# @package _global_"
    )
    assert summary["experiment"] == "generated/micro_best"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "conf/experiment/generated/micro_best.yaml"], cwd=REPO
    )
    assert ignored.returncode == 0, "generated presets must be git-ignored"
    base = ["hparams_search=micro", *MICRO]  # what every trial was composed with
    cfg = compose([*base, "experiment=generated/micro_best", "train.out_dir=artifacts/best"])
    assert cfg.optim.lr == summary["best_params"]["optim.lr"]
    assert cfg.model.channels == summary["best_params"]["model.channels"]
    plain = compose([*base, "train.out_dir=artifacts/best"])
    assert (plain.optim.lr, plain.model.channels) != (cfg.optim.lr, cfg.model.channels)
    result = train(cfg)
    # same config, same seed: the retrained model scores what the best trial scored
    assert result["best_val_eer"] == pytest.approx(summary["best_value"], abs=1e-4)


def test_preset_searches_config_groups_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from speakerops.core.config import compose
    from speakerops.train.sweep import write_preset

    shutil.copytree(REPO / "conf", tmp_path / "conf")
    monkeypatch.setenv("SPEAKEROPS_CONF", str(tmp_path / "conf"))
    path = tmp_path / "conf/experiment/g_best.yaml"
    write_preset({"augment": "none", "loss.head.margin": 0.15, "optim.lr": 3e-4}, path, "test")
    cfg = compose(["experiment=g_best"])
    assert cfg.augment.pipeline.augmentations == {} and cfg.loss.head.margin == 0.15
    assert cfg.optim.lr == 3e-4 and compose([]).augment.pipeline.augmentations != {}


def test_sweep_needs_a_search_config_and_a_valid_space(tmp_path: Path, monkeypatch) -> None:
    from speakerops.cli import main
    from speakerops.core.config import compose
    from speakerops.train.sweep import make_pruner, sweep_config

    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "model.channels=16"]) == 2  # a one-line error, no traceback
    with pytest.raises(ValueError, match="hparams_search=<name>.*ecapa_small"):
        sweep_config(compose([]))
    cfg = compose(["hparams_search=ecapa_small"])
    assert sweep_config(cfg).metric == "val_eer"
    assert type(make_pruner(cfg.sweep)).__name__ == "MedianPruner"
    hyper = compose(["hparams_search=ecapa_small", "sweep.pruner.type=hyperband"])
    assert type(make_pruner(hyper.sweep)).__name__ == "HyperbandPruner"
    with pytest.raises(ValueError, match="sweep.pruner.type 'bogus'"):
        make_pruner(compose(["hparams_search=ecapa_small", "sweep.pruner.type=bogus"]).sweep)
    with pytest.raises(ValueError, match="sweep trials train in one process"):
        sweep_config(compose(["hparams_search=ecapa_small", "trainer=ddp_cpu"]))


@pytest.mark.slow
def test_min_dcf_objective(swept) -> None:
    """`sweep.metric=val_min_dcf_<p>`: logged each epoch beside the module's val_eer, and the
    objective; at P = 0.5 the hull point of the EER bounds it: minDCF <= 2 EER."""
    from mlflow.tracking import MlflowClient

    from speakerops.train.sweep import sweep

    root, _ = swept
    summary = sweep(
        [
            "hparams_search=micro",
            *MICRO,
            "sweep.study_name=micro_dcf",
            "sweep.metric=val_min_dcf_0.5",
            "sweep.n_jobs=1",
            "sweep.n_trials=1",
            "sweep.enqueue=[{optim.lr:0.002,model.channels:16}]",  # not a diverging draw
            "trainer.max_epochs=1",
            "mlflow.experiment=dcf",
        ]
    )
    assert summary["complete"] == 1 and summary["metric"] == "val_min_dcf_0.5"
    client = MlflowClient(f"sqlite:///{root}/registry/mlflow.db")
    dcf = client.get_metric_history(summary["best_run_id"], "val_min_dcf_0.5")
    eer = client.get_metric_history(summary["best_run_id"], "val_eer")
    assert len(dcf) == len(eer) == 1  # one epoch
    assert summary["best_value"] == pytest.approx(min(m.value for m in dcf))
    for d, e in zip(
        sorted(dcf, key=lambda m: m.step), sorted(eer, key=lambda m: m.step), strict=True
    ):
        assert 0.0 <= d.value <= 2 * e.value + 1e-9
