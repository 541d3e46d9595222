"""The base layer: paths from the configured registry, the scoped fluent MLflow store,
metric names from the P_targets, deterministic JSON, the runtime thread setting."""

from __future__ import annotations

import math
import os
from pathlib import Path

import mlflow
import pytest
import torch

from speakerops.core.env import apply_threads
from speakerops.core.jsonio import dumps, sha256_file, sha256_json
from speakerops.core.mlflow import client, ensure_experiment, fluent_store
from speakerops.core.names import metric_keys
from speakerops.core.paths import artifact_location, tracking_uri


def test_tracking_uri_is_the_configured_registry_unless_a_server_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(tmp_path / "reg") == f"sqlite:///{(tmp_path / 'reg').resolve()}/mlflow.db"
    assert (tmp_path / "reg").is_dir()
    assert (
        artifact_location(tmp_path / "reg") == (tmp_path / "reg" / "artifacts").resolve().as_uri()
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking_uri(tmp_path / "reg") == "http://mlflow.example:5000"
    assert artifact_location(tmp_path / "reg") is None


def test_fluent_store_is_scoped_and_restores_the_globals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    before = mlflow.get_tracking_uri()
    exp = ensure_experiment("scoped", tmp_path / "reg")
    assert ensure_experiment("scoped", tmp_path / "reg") == exp  # found, not created twice
    uri = tracking_uri(tmp_path / "reg")
    with fluent_store(uri):
        assert mlflow.get_tracking_uri() == uri and mlflow.get_registry_uri() == uri
        assert "MLFLOW_TRACKING_URI" not in os.environ  # not exported: no team server implied
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.log_param("k", "v")
    assert mlflow.get_tracking_uri() == before
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    assert client(tmp_path / "reg").get_run(run.info.run_id).data.params == {"k": "v"}


def test_metric_keys_follow_the_p_targets() -> None:
    assert metric_keys([0.01, 0.05], calibrated=False) == ["eer", "min_dcf_0.01", "min_dcf_0.05"]
    assert metric_keys([0.001]) == [
        "eer",
        "min_dcf_0.001",
        "act_dcf_0.001",
        "cllr",
        "min_cllr",
        "cal_loss",
    ]


def test_json_is_deterministic_and_hashes_agree(tmp_path: Path) -> None:
    a = dumps({"b": 1.0, "a": [math.nan, 2]})
    assert a == dumps({"a": [math.nan, 2], "b": 1.0}) and '"a": [\n    null' in a
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_file(tmp_path / "f") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert sha256_json({"x": 1, "y": 2}) == sha256_json({"y": 2, "x": 1})


def test_apply_threads_sets_torch_and_the_child_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", str(before))
    try:
        assert apply_threads("2") == 2
        assert torch.get_num_threads() == 2 and os.environ["OMP_NUM_THREADS"] == "2"
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="runtime.threads"):
        apply_threads(0)


def test_a_fresh_embedded_store_opened_by_several_processes_at_once(tmp_path: Path) -> None:
    """Two trainings started together on a new registry: each process creates the store; the
    lock in init_store makes one migrate it and the others find it ready (MLflow alone races
    and one dies in its table creation)."""
    import subprocess
    import sys
    import time

    registry = tmp_path / "registry"
    start = time.time() + 3.0  # every process past its imports, then all at once
    code = (
        "import sys, time; from speakerops.core.mlflow import client;"
        f"time.sleep(max(0.0, {start} - time.time()));"
        "c = client(sys.argv[1]); print(len(c.search_experiments()))"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(registry)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert out.strip() == "1"  # the store with its Default experiment, in every process
    assert (registry / "mlflow.db.lock").is_file()
    assert ensure_experiment("after", registry) == ensure_experiment("after", registry)
