"""An imported pretrained encoder goes through the gates like a trained one: `models import`
into `train.out_dir`, then the real `evaluate`, `register` (no training run: a run of its own,
`import-<source>`, tagged with the source) and `promote` to champion, on a tiny synthetic
corpus. An encoder with neither a training run nor a source is refused with what to run."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from speakerops.cli import main
from speakerops.core.jsonio import sha256_file
from speakerops.core.mlflow import client
from speakerops.core.names import CHAMPION
from speakerops.data.prepare import prepare
from speakerops.eval.evaluate import evaluate
from speakerops.models.importers.from_resemblyzer import weights_file
from speakerops.registry.register import register

from .promote_world import UNTRAINED_POLICY as POLICY
from .promote_world import cli, make_cfg, random_encoder, write_corpus

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def test_imported_encoder_is_registered_and_promoted_without_a_training_run(tmp_path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    corpus = write_corpus(tmp_path / "corpus", 12, 4)
    cfg = make_cfg(tmp_path, tmp_path / "prepared", corpus, **{"evaluate.bootstrap.n": 50})
    prepare(cfg.data, progress=False)
    train_dir = Path(cfg.train.out_dir)
    train_dir.mkdir(parents=True)

    # a trained-looking encoder with no training run and no source: refused, saying what to do
    random_encoder().save(train_dir / "encoder.safetensors")
    evaluate(cfg, progress=False)
    with pytest.raises(FileNotFoundError, match="speakerops models import source="):
        register(cfg)

    out = train_dir / "encoder.safetensors"
    assert main(["models", "import", "source=resemblyzer", f"output={out}"]) == 0
    evaluate(cfg, progress=False)
    reg = register(cfg)
    assert reg["source"] == "resemblyzer"
    assert reg["source_sha256"] == sha256_file(weights_file())
    store = client(cfg.paths.registry_dir)
    run = store.get_run(reg["run_id"])
    assert run.info.run_name == "import-resemblyzer"
    assert run.data.tags["source_sha256"] == reg["source_sha256"]
    version = store.get_model_version(cfg.register.model_name, reg["version"])
    assert version.tags["model_arch"] == "ge2e" and version.tags["source"] == "resemblyzer"

    params = tmp_path / "params.yaml"
    OmegaConf.save(cfg, params, resolve=True)
    rc, stdout, stderr = cli(
        "promote", f"config={params}", f"candidate={reg['model_uri']}", f"out={tmp_path / 'p'}"
    )
    assert rc == 0, stdout + stderr
    champion = store.get_model_version_by_alias(cfg.register.model_name, CHAMPION)
    assert str(champion.version) == reg["version"]
