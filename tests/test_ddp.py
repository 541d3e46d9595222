"""DDP on the CPU (gloo, 2 processes) through the real `speakerops train` command: one MLflow
run, sharded training batches, gradients synchronized (both ranks end with the same weights),
and the validation EER of a one-process run within noise."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from .conftest import REPO

pytestmark = pytest.mark.slow  # trains twice: 2 DDP processes, then one

BIN = Path(sys.executable).parent
CORPUS = [  # 10 training speakers (40 utterances), 8 calibration speakers (48 target trials)
    "data.synthetic.n_speakers=20",
    "data.synthetic.utts_per_speaker=4",
    "data.synthetic.min_duration=1.5",
    "data.synthetic.max_duration=2.0",
    "data.calibration_fraction=0.4",
    "data.eval_fraction=0.1",
]
RUN = [
    *CORPUS,
    "data.loader.num_workers=0",
    "data.loader.crop_seconds=1.0",
    "data.loader.crops_per_utterance=1",
    "augment=none",
    "model.channels=16",
    "model.attention_channels=8",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def test_ddp_cpu_two_processes_log_one_run_and_match_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from speakerops.core.config import compose
    from speakerops.data.prepare import prepare
    from speakerops.train.run import train

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPEAKEROPS_CONF", str(REPO / "conf"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the project's own embedded store
    prepare(compose(CORPUS).data, progress=False)

    # per-process batch 4 x 2 processes = the one-process batch of 8
    cmd = [str(BIN / "speakerops"), "train", "trainer=ddp_cpu", *RUN, "data.loader.batch_size=4"]
    cmd.append("train.out_dir=artifacts/ddp")
    # every rank saves its parameters when training ends (tests/ddp_probe.py)
    cmd += [
        "+callbacks.rank_weights._target_=tests.ddp_probe.SaveRankWeights",
        f"+callbacks.rank_weights.out_dir={tmp_path / 'ranks'}",
    ]
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, SPEAKEROPS_CONF=str(REPO / "conf"), PYTHONPATH=path)
    env["SPEAKEROPS_EXTRA_TARGETS"] = "tests.ddp_probe.SaveRankWeights"  # the operator's own
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]
    ddp = json.loads((tmp_path / "artifacts/ddp/train.json").read_text())
    assert ddp["world_size"] == 2 and ddp["epochs"] == 2
    # gradients are all-reduced: after 10 steps on different shards both ranks hold the same
    # weights, bit for bit (BatchNorm running statistics are buffers, per process by design)
    rank0, rank1 = (load_file(str(tmp_path / "ranks" / f"rank{r}.safetensors")) for r in (0, 1))
    assert int(rank0.pop("global_step")) == int(rank1.pop("global_step")) == 10
    assert rank0.keys() == rank1.keys() and len(rank0) > 10
    for name, weight in rank0.items():
        assert torch.equal(weight, rank1[name]), name

    client = MlflowClient(f"sqlite:///{tmp_path}/registry/mlflow.db")
    experiment = client.get_experiment_by_name("speakerops")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [ddp["run_id"]]  # one run, not one per process
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.params["trainer.devices"] == "2"
    history = client.get_metric_history(run.info.run_id, "val_eer")
    assert len(history) == 2  # one validation per epoch, logged once
    assert min(m.value for m in history) == pytest.approx(ddp["best_val_eer"])

    single = train(compose([*RUN, "data.loader.batch_size=8", "train.out_dir=artifacts/single"]))
    assert single["world_size"] == 1
    # each rank trains on its half of the 40 crops (DistributedSampler): 5 steps of 4 per epoch,
    # as many optimizer steps as one process with batches of 8 (unsharded ranks would take 10)
    assert ddp["global_step"] == single["global_step"] == 2 * 5

    # within noise: 2 sigma of the difference of two independent EER estimates on this trial
    # list at p = 0.5 (the widest), var(EER) ~ p(1-p)/4 (1/n_target + 1/n_nontarget)
    trials = pd.read_csv(tmp_path / "data/prepared/trials_calibration.csv", comment="#")
    n_tar, n_non = int(trials["label"].sum()), int((trials["label"] == 0).sum())
    tolerance = 2 * math.sqrt(2 * 0.25 / 4 * (1 / n_tar + 1 / n_non))
    assert 0.1 < tolerance < 0.15, (n_tar, n_non)
    assert abs(ddp["best_val_eer"] - single["best_val_eer"]) <= tolerance, (ddp, single)
