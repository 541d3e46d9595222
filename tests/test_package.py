"""speakerops as a package: the default config ships inside it and a project's conf/ is layered
over it file by file; `speakerops init` scaffolds a project."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
import soundfile as sf
import tomllib
import torch
import yaml

from speakerops.core.config import (
    compose,
    conf_layers,
    conf_options,
    find_conf_file,
    packaged_conf_dir,
    packaged_policy,
)
from speakerops.core.env import child_env
from speakerops.core.jsonio import sha256_file
from speakerops.core.mlflow import ensure_experiment, fluent_store
from speakerops.core.paths import tracking_uri
from speakerops.models.ecapa import ECAPATDNN
from speakerops.models.encoder import FILENAME, SpeakerEncoder
from speakerops.models.features import FeatureConfig
from speakerops.registry.package import ENCODER_SHA256_TAG, log_encoder_model
from speakerops.train.sweep.presets import preset_path

from .conftest import REPO, shared


def test_pyproject_ships_every_subpackage_and_the_config_tree() -> None:
    """The wheel's package list is explicit (src/ is mapped to `speakerops`): it must name every
    folder of src/ with an __init__.py, and map conf/ and the default policy into the package."""
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(("speakerops", *p.parent.relative_to(REPO / "src").parts))
        for p in (REPO / "src").rglob("__init__.py")
    }
    listed = set(tool["packages"])
    assert found - listed == set(), f"missing from pyproject's packages: {found - listed}"
    assert tool["package-dir"]["speakerops.conf"] == "conf"
    assert tool["package-dir"]["speakerops.conf.registry"] == "registry"
    assert "policy.yaml" in tool["package-data"]["speakerops.conf.registry"]
    # in the checkout the packaged tree is the clone's own conf/ (one copy)
    assert packaged_conf_dir() == REPO / "conf"
    assert packaged_policy() == REPO / "registry" / "policy.yaml"


def test_a_project_conf_is_layered_over_the_packaged_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "project").mkdir()
    # one replaced option, one new option, top-level settings; nothing else is copied
    (conf / "model" / "ecapa_small.yaml").write_text(
        "arch: ecapa_tdnn\nn_mels: ${features.n_mels}\nchannels: 48\nembedding_dim: 96\n"
        "attention_channels: 16\nres2_scale: 8\n"
    )
    (conf / "model" / "mynet.yaml").write_text(
        "arch: xvector\nn_mels: ${features.n_mels}\nchannels: 32\nstats_channels: 64\n"
        "embedding_dim: 16\n"
    )
    (conf / "project" / "default.yaml").write_text("seed: 7\nregister:\n  model_name: my-enc\n")
    monkeypatch.chdir(tmp_path)
    assert conf_layers() == [conf, REPO / "conf"]
    cfg = compose([])
    assert (cfg.model.channels, cfg.model.embedding_dim) == (48, 96)  # the project's file
    assert (cfg.seed, cfg.register.model_name) == (7, "my-enc")  # conf/project/default.yaml
    assert cfg.register.policy == "registry/policy.yaml"  # the rest: packaged defaults
    assert cfg.drift.embedding.method in ("model", "mmd")
    assert compose(["model=mynet"]).model.arch == "xvector"
    assert compose(["seed=3"]).seed == 3  # the command line still wins
    assert {"mynet", "ecapa512", "ecapa_small"} <= set(conf_options("model"))
    assert find_conf_file("model/ecapa_small.yaml") == conf / "model" / "ecapa_small.yaml"
    assert find_conf_file("drift/default.yaml") == REPO / "conf" / "drift" / "default.yaml"
    assert preset_path("s")[0] == conf / "experiment" / "generated" / "s_best.yaml"
    # no conf/ at all: the packaged tree alone, as in the clone
    monkeypatch.chdir(tmp_path / "conf" / "model")
    assert conf_layers() == [REPO / "conf"]
    assert compose([]).model.channels == 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_mlflow_models_serve_embeds_a_wav_from_a_registered_version(tmp_path: Path) -> None:
    """The registered pyfunc is code, not a pickle (MLflow's models from code), names an
    installable speakerops, and `mlflow models serve --env-manager local` embeds a WAV file."""
    flac = shared("librispeech", "test-other", "3005", "3005-163389-0005.flac")
    wav_path = tmp_path / "speech.wav"
    data, rate = sf.read(str(flac), dtype="float32")
    sf.write(str(wav_path), data[: 3 * rate], rate)  # a WAV, as a client would send
    torch.manual_seed(0)
    spec = {"arch": "ecapa_tdnn", "n_mels": 80, "channels": 32, "embedding_dim": 192}
    backbone = ECAPATDNN(80, 32, 192, attention_channels=16)
    enc = SpeakerEncoder(backbone, FeatureConfig(), {**spec, "attention_channels": 16}).eval()
    packaged = enc.save(tmp_path / "register" / FILENAME)
    registry = tmp_path / "registry"
    exp_id = ensure_experiment("serve", registry)
    uri = tracking_uri(registry)
    with fluent_store(uri):
        with mlflow.start_run(experiment_id=exp_id):
            model_uri = log_encoder_model(packaged)
        tags = {ENCODER_SHA256_TAG: sha256_file(packaged)}
        version = mlflow.register_model(model_uri, "speaker-encoder", tags=tags).version
    model_dir = next(p.parent for p in (registry / "artifacts").rglob("MLmodel"))
    assert not list(model_dir.rglob("*.pkl")), "no pickled python_model"
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["model_code_path"].endswith("pyfunc_model.py")
    first = (model_dir / "requirements.txt").read_text().splitlines()[0]
    assert first.startswith("speakerops @ file://"), first  # the wheel or checkout installed
    assert Path(first.split("file://", 1)[1]).exists()

    port = _free_port()
    env = dict(child_env(), MLFLOW_TRACKING_URI=uri, OMP_NUM_THREADS="1")  # venv's bin on PATH
    cmd = [str(Path(sys.executable).with_name("mlflow")), "models", "serve"]
    cmd += ["-m", f"models:/speaker-encoder/{version}", "--env-manager", "local"]
    cmd += ["-h", "127.0.0.1", "-p", str(port)]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(240):  # a bounded wait for start-up (torch import, model load)
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/ping", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        body = {"dataframe_split": {"columns": ["path"], "data": [[str(wav_path)]]}}
        resp = httpx.post(f"{base}/invocations", json=body, timeout=120)
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    assert resp.status_code == 200, (tmp_path / "serve.log").read_text()[-3000:]
    got = np.asarray(resp.json()["predictions"], dtype=np.float32)
    assert got.shape == (1, 192)
    np.testing.assert_allclose(got[0], enc.embed_file(wav_path), atol=1e-5)


def test_init_scaffolds_a_project_and_refuses_to_overwrite_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from speakerops.cli import main
    from speakerops.core.project import init_project

    done = init_project(tmp_path / "proj")
    root = tmp_path / "proj"
    assert done["ran"] == ["git init", "dvc init"] and (root / ".git").is_dir()
    assert "SPEAKEROPS_DATA_KEY" in str(done["master_key"])  # the run's key: nothing created
    for rel in ("conf/project/default.yaml", "conf/README.md", "params.yaml", ".dvcignore"):
        assert (root / rel).is_file(), rel
    assert (root / "registry/policy.yaml").read_bytes() == packaged_policy().read_bytes()
    assert "!registry/policy.yaml" in (root / ".gitignore").read_text()
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    assert list(stages) == list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    deps = [d for s in stages.values() for d in s.get("deps", [])]
    assert "data/prepared" in deps and not [d for d in deps if str(d).startswith("src/")]
    for name in ("promote.yml", "drift.yml"):
        flow = (root / ".github/workflows" / name).read_text()
        assert "scripts/install.sh" not in flow and "pip install -e ." not in flow
        assert "vars.SPEAKEROPS_PACKAGE" in flow and "speakerops " in flow
    # the stubs are comments only: params.yaml is the packaged defaults
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["model"]["channels"] == 64 and params["register"]["policy"].endswith(
        "policy.yaml"
    )
    # a second init refuses, names the files, writes nothing; force=true overwrites
    (root / "dvc.yaml").write_text("# mine\n")
    assert main(["init", str(root)]) == 2
    err = capsys.readouterr().err
    assert "would overwrite" in err and "dvc.yaml" in err and "force=true" in err
    assert (root / "dvc.yaml").read_text() == "# mine\n"
    assert main(["init", str(root), "force=true"]) == 0
    assert "stages:" in (root / "dvc.yaml").read_text()
