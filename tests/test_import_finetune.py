"""Fine-tuning an imported encoder: `train.init_from=<imported GE2E>` with a frozen first layer
and a lower backbone learning rate, through the real training path (Lightning, MLflow)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speakerops.core.config import compose
from speakerops.core.jsonio import sha256_file
from speakerops.core.mlflow import client
from speakerops.data.prepare import prepare
from speakerops.models import encoder_file
from speakerops.train.run import train

from .conftest import MICRO_CORPUS, import_ge2e

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:You defined a `validation_step`"),
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated"),
]

FIRST_LAYER = ["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0"]
GE2E = [
    *MICRO_CORPUS,
    "model=ge2e",
    "features=mel40_power",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def test_fine_tuning_the_imported_ge2e_keeps_frozen_layers_and_its_inference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    imported = import_ge2e(tmp_path)
    prepare(compose(GE2E).data, progress=False)
    freeze = "train.freeze=[" + ",".join(FIRST_LAYER) + "]"
    with pytest.raises(ValueError, match="train.freeze: 'gru' names no parameter"):
        train(compose([*GE2E, f"train.init_from={imported}", "train.freeze=[gru]"]))
    lr_monitor = "+callbacks.lr_monitor._target_=pytorch_lightning.callbacks.LearningRateMonitor"
    run = train(
        compose(
            [
                *GE2E,
                f"train.init_from={imported}",
                freeze,
                "optim.backbone_lr_scale=0.1",
                lr_monitor,
            ]
        )
    )
    before = encoder_file.read(imported)
    after = encoder_file.read(tmp_path / "artifacts/train/encoder.safetensors")
    for name, value in before.state_dict.items():
        same = torch.equal(value, after.state_dict[name])
        assert same == (name in FIRST_LAYER), f"{name}: frozen={name in FIRST_LAYER}, same={same}"
    # the fine-tuned encoder keeps the front end and the windowed inference of the import
    assert after.features == before.features and after.kwargs == before.kwargs
    logged = client(compose(GE2E).paths.registry_dir).get_run(run["run_id"]).data
    assert logged.tags["init_from_sha256"] == sha256_file(imported)
    # two parameter groups: the backbone learns at a tenth of the head's rate
    lrs = sorted(v for k, v in logged.metrics.items() if k.startswith("lr-"))
    assert len(lrs) == 2 and lrs[0] == pytest.approx(0.1 * lrs[1]), logged.metrics
