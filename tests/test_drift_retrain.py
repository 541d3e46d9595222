"""Retraining through a real (tiny) DVC project: git init, dvc init, one stage that writes
the `data.extra_manifests` param into its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from speakerops.core.keys import open_keyring
from speakerops.drift.log import append_production_log, embedding_columns
from speakerops.drift.retrain import retraining_command, trigger_retraining, validate_manifest
from speakerops.drift.run import main
from speakerops.drift.simulated_traffic import synthetic_population, synthetic_window
from speakerops.registry.reference import save_reference

ENV = {
    **os.environ,
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
}
DVC = str(Path(sys.executable).parent / "dvc")


def _sh(args: list[str], cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, env=ENV, check=True, capture_output=True, text=True)


@pytest.fixture()
def dvc_project(tmp_path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    _sh(["git", "init", "-q"], proj)
    _sh(["git", "config", "user.email", "t@example.org"], proj)
    _sh(["git", "config", "user.name", "t"], proj)
    _sh([DVC, "init", "-q"], proj)
    (proj / "params.yaml").write_text("data:\n  extra_manifests: []\n")
    script = (
        "import json, yaml; p = yaml.safe_load(open('params.yaml')); "
        "json.dump(p['data']['extra_manifests'], open('out.json', 'w'))"
    )
    (proj / "dvc.yaml").write_text(
        "stages:\n  train:\n"
        f'    cmd: {sys.executable} -c "{script}"\n'
        "    params: [data.extra_manifests]\n"
        "    outs: [out.json]\n"
    )
    (proj / ".gitignore").write_text("/out.json\n")
    _sh(["git", "add", "-A"], proj)
    _sh(["git", "commit", "-qm", "init"], proj)
    return proj


def _manifest(path: Path, rows: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "utt_id": [f"p{i}" for i in range(rows)],
            "path": [f"audio/p{i}.wav" for i in range(rows)],
            "speaker": [f"spk{i % 2}" for i in range(rows)],
            "duration": [3.2] * rows,
            "sample_rate": [8000] * rows,
        }
    ).to_csv(path, index=False)
    return path


def test_dvc_exp_run_adds_the_labelled_manifest(dvc_project):
    manifest = _manifest(dvc_project / "data" / "labelled" / "prod-2025-03.csv")
    cfg = {"retrain": {"cwd": str(dvc_project)}}
    argv, root = retraining_command(cfg, manifest)
    assert argv[1:] == [
        "exp",
        "run",
        "--set-param",
        "data.extra_manifests=[data/labelled/prod-2025-03.csv]",
    ]
    assert root == dvc_project.resolve()
    rc = trigger_retraining(cfg, manifest, log_path=dvc_project.parent / "retrain.log")
    assert rc == 0, (dvc_project.parent / "retrain.log").read_text()
    assert json.loads((dvc_project / "out.json").read_text()) == ["data/labelled/prod-2025-03.csv"]
    assert "data/labelled/prod-2025-03.csv" in (dvc_project / "params.yaml").read_text()
    exps = subprocess.run(
        [DVC, "exp", "list", "--name-only"],
        cwd=dvc_project,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert exps.returncode == 0 and exps.stdout.strip(), "dvc recorded no experiment"


def test_dvc_repro_variant_and_failures(dvc_project, tmp_path):
    cfg = {"retrain": {"cwd": str(dvc_project), "command_without_manifest": ["dvc", "repro"]}}
    assert trigger_retraining(cfg, None, log_path=tmp_path / "r.log") == 0
    assert json.loads((dvc_project / "out.json").read_text()) == []
    bad = {
        "retrain": {
            "cwd": str(dvc_project),
            "command_without_manifest": ["dvc", "repro", "no-such-stage"],
        }
    }
    assert trigger_retraining(bad, None, log_path=tmp_path / "bad.log") != 0
    outside = _manifest(tmp_path / "elsewhere.csv")
    argv, _ = retraining_command({"retrain": {"cwd": str(dvc_project)}}, outside)
    assert argv[-1] == f"data.extra_manifests=[{outside.resolve()}]"


def test_manifest_validation(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        validate_manifest(tmp_path / "none.csv")
    pd.DataFrame({"utt_id": ["a"], "path": ["a.wav"]}).to_csv(tmp_path / "cols.csv", index=False)
    with pytest.raises(
        ValueError, match=r"lacks column\(s\) \['speaker', 'duration', 'sample_rate'\]"
    ):
        validate_manifest(tmp_path / "cols.csv")
    _manifest(tmp_path / "empty.csv", rows=0)
    with pytest.raises(ValueError, match="has no rows"):
        validate_manifest(tmp_path / "empty.csv")
    with pytest.raises(FileNotFoundError, match="not found on PATH"):
        retraining_command({"retrain": {"command_without_manifest": ["no-such-binary-xyz"]}}, None)


def _drifted_world(dvc_project: Path, tmp_path: Path) -> dict:
    """A reference, a drifted window in the log, a labelled manifest: the drift job's config."""
    emb, meta = synthetic_population(1500, n_speakers=600, p_phone=0.1, seed=1000)
    save_reference(
        tmp_path / "ref",
        emb,
        meta,
        pd.DataFrame({"score": [0.5, 0.1]}),
        keyring=open_keyring(tmp_path / "registry"),
        model_name="speaker-encoder",
        model_version="1",
    )
    window = synthetic_window(600, n_speakers=300, p_phone=0.9, seed=5)
    append_production_log(
        tmp_path / "log", window[embedding_columns(window)].to_numpy(), utt_ids=window["utt_id"],
        keyring=open_keyring(tmp_path / "registry"),
        model_name="speaker-encoder", model_version="1", durations_s=window["duration_s"],
        sample_rates=window["sample_rate"], snr_db=window["snr_db"], channels=window["channel"],
        timestamp="2025-01-01T12:00:00",
    )  # fmt: skip
    manifest = _manifest(dvc_project / "data" / "labelled.csv")
    cfg = {
        "paths": {"registry_dir": str(tmp_path / "registry")},
        "drift": {
            "log_dir": str(tmp_path / "log"),
            "output_dir": str(tmp_path / "out"),
            "progress": False,
            "reference": {"source": "path", "path": str(tmp_path / "ref")},
            "window": {"start": "2025-01-01", "end": "2025-01-02"},
            "embedding": {"one_per_speaker": False},
            "report": {"enabled": False},
            "tickets": {"dir": str(tmp_path / "tickets")},
            "retrain": {"labelled_manifest": str(manifest), "cwd": str(dvc_project)},
        },
    }
    return cfg


def test_drift_job_retrains_once_per_ticket_and_manifest(dvc_project, tmp_path):
    cfg = _drifted_world(dvc_project, tmp_path)
    assert main(cfg) == 1
    runs = sorted((tmp_path / "out").iterdir())
    first = json.loads((runs[0] / "summary.json").read_text())
    assert first["retrain"]["status"] == "ok" and first["retrain"]["returncode"] == 0
    assert json.loads((dvc_project / "out.json").read_text()) == ["data/labelled.csv"]
    assert main(cfg) == 1
    second = json.loads((sorted((tmp_path / "out").iterdir())[-1] / "summary.json").read_text())
    assert (
        second["retrain"]["status"] == "skipped"
        and "already retrained" in second["retrain"]["reason"]
    )
    ticket = json.loads(next((tmp_path / "tickets").glob("drift-*.json")).read_text())
    assert len(ticket["retrain"]) == 1 and ticket["retrain"][0]["manifest_sha256"]
    assert len(ticket["events"]) == 2


def test_stages_find_this_install_without_an_activated_venv(dvc_project, tmp_path, monkeypatch):
    """DVC stage commands call `speakerops`; a scheduled job often runs `.venv/bin/speakerops
    drift` without activating the venv, so the retraining run must put this install first."""
    (dvc_project / "dvc.yaml").write_text(
        "stages:\n  train:\n"
        "    cmd: speakerops params --help > out.json\n"
        "    params: [data.extra_manifests]\n"
        "    outs: [out.json]\n"
    )
    _sh(["git", "commit", "-qam", "stage calls speakerops"], dvc_project)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    log = tmp_path / "r.log"
    cfg = {"retrain": {"cwd": str(dvc_project), "command_without_manifest": ["dvc", "repro"]}}
    assert trigger_retraining(cfg, None, log_path=log) == 0, log.read_text()
    assert "params.yaml" in (dvc_project / "out.json").read_text()


def _stage(dvc_project: Path, script: str) -> None:
    (dvc_project / "stage.py").write_text(script)
    (dvc_project / "dvc.yaml").write_text(
        "stages:\n  gate:\n"
        f"    cmd: {sys.executable} stage.py\n"
        "    params: [data.extra_manifests]\n"
    )
    _sh(["git", "add", "stage.py"], dvc_project)
    _sh(["git", "commit", "-qam", "gate stage"], dvc_project)


def test_a_challenger_refused_by_the_gate_is_a_verdict_not_a_failure(dvc_project, tmp_path):
    """The pipeline's gate stage exits 1 when it refuses; the drift job reports the new
    challenger's verdict from the gate.json that run wrote (and still exits 1: drift)."""
    cfg = _drifted_world(dvc_project, tmp_path)
    _stage(
        dvc_project,
        "import json, os, sys; os.makedirs('artifacts/register', exist_ok=True); "
        "json.dump({'model_name': 'speaker-encoder', 'version': '2', 'passed': False}, "
        "open('artifacts/register/gate.json', 'w')); sys.exit(1)",
    )
    assert main(cfg) == 1
    summary = json.loads(next((tmp_path / "out").glob("*/summary.json")).read_text())
    r = summary["retrain"]
    assert r["status"] == "refused" and r["returncode"] != 0
    assert r["gate"]["version"] == "2" and r["gate"]["passed"] is False


def test_a_retraining_that_breaks_before_its_gate_is_an_error(dvc_project, tmp_path):
    cfg = _drifted_world(dvc_project, tmp_path)
    stale = dvc_project / "artifacts" / "register" / "gate.json"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"version": "1", "passed": False}))
    os.utime(stale, (0, 0))  # an old verdict is not this run's
    _stage(dvc_project, "import sys; sys.exit('training diverged')")
    assert main(cfg) == 2
    summary = json.loads(next((tmp_path / "out").glob("*/summary.json")).read_text())
    assert summary["retrain"]["status"] == "failed" and summary["retrain"]["gate"] is None
