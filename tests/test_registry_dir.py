"""`paths.registry_dir=elsewhere` moves every command to that store: train, register,
promote, embed, drift and ui all read and write the MLflow store (and the audit log and
keyring) under `elsewhere`, and nothing appears at the default `registry/`.

Real MLflow, Lightning, Evidently on the micro corpus (12 speakers x 3 short recordings),
one training epoch of a 16-channel ECAPA; the CLI called in-process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from speakerops.cli import main
from speakerops.core import keys
from speakerops.core.config import compose
from speakerops.core.mlflow import client

from .conftest import MICRO_CORPUS

POLICY = "require_champion: false\nabsolute:\n  eer: {max: 1.0}\n"


@pytest.mark.slow
def test_registry_dir_moves_every_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(keys.MASTER_KEY_ENV, raising=False)
    monkeypatch.setenv(keys.MASTER_KEY_FILE_ENV, str(tmp_path / "master.key"))
    elsewhere = tmp_path / "stores" / "elsewhere"
    (tmp_path / "policy.yaml").write_text(POLICY)
    over = [
        *MICRO_CORPUS,
        "model.channels=16",
        "model.attention_channels=8",
        "trainer.max_epochs=1",
        "data.workers=0",
        "data.synthetic.workers=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "evaluate.bootstrap.n=20",
        f"register.policy={tmp_path / 'policy.yaml'}",
        f"paths.registry_dir={elsewhere}",
    ]
    for step in (["keys", "init"], ["prepare"], ["train"], ["evaluate"], ["register"]):
        assert main([*step, *over]) == 0, step
    assert main(["promote", "candidate=models:/speaker-encoder/1", *over]) == 0
    prepared = pd.read_csv(Path(compose(over).data.prepared_dir) / "manifest.csv")
    manifest = tmp_path / "incoming.csv"  # production ids are opaque (never the speaker's)
    prepared.assign(utt_id=[f"req-{i:04d}" for i in range(len(prepared))]).to_csv(manifest)
    assert (
        main(
            [
                "embed",
                "model=models:/speaker-encoder@champion",  # resolved in `elsewhere`
                f"input={manifest}",
                f"output={tmp_path / 'emb.parquet'}",
                f"log_dir={tmp_path / 'log'}",
                *over,
            ]
        )
        == 0
    )
    drift = [
        f"drift.log_dir={tmp_path / 'log'}",
        "drift.run_name=moved",
        "drift.window.min_rows=10",
        "drift.progress=false",
        "drift.retrain.enabled=false",
        "drift.report.enabled=false",
        "drift.embedding.method=mmd",
    ]
    main(["drift", *over, *drift])  # the verdict on 36 rows does not matter here
    summary = json.loads(Path("outputs/drift/moved/summary.json").read_text())
    assert summary["model"]["version"] == "1", summary  # the champion's reference, from elsewhere
    executed: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda path, argv: executed.append(argv))
    assert main(["ui", *over]) == 0
    store = f"sqlite:///{elsewhere.resolve() / 'mlflow.db'}"
    assert store in executed[0] and (elsewhere / "artifacts").resolve().as_uri() in executed[0]

    reg = client(elsewhere)
    mv = reg.get_model_version("speaker-encoder", "1")
    assert {"champion", "challenger"} <= set(mv.aliases)
    assert reg.get_run(mv.run_id).data.metrics["val_eer"] >= 0  # the training run is there
    assert (elsewhere / "audit.jsonl").is_file() and (elsewhere / "keyring.json").is_file()
    assert not (tmp_path / "registry").exists() and not (tmp_path / "mlruns").exists()
    assert not (tmp_path / "mlflow.db").exists()
