"""`experiment=finetune_telephone`: the imported GE2E adapted to the telephone channel. The
preset composes to what issue 12 asks (the import's model and front end, AAM head, lower
backbone rate, frozen first layer, telephone + codec + noise augmentation, train-clean-100, the
telephone copy of test-other), and one tiny fine-tune step runs from an imported GE2E."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from speakerops.core.config import compose
from speakerops.data.prepare import prepare
from speakerops.models import encoder_file
from speakerops.train.run import train

from .conftest import MICRO_CORPUS, import_ge2e, shared

pytestmark = [
    pytest.mark.filterwarnings("ignore:You defined a `validation_step`"),
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated"),
]


def test_the_preset_composes_to_a_telephone_fine_tune_of_the_import() -> None:
    cfg = compose(["experiment=finetune_telephone"])
    imported = compose(["model=ge2e", "features=mel40_power"])
    assert cfg.model == imported.model and cfg.features == imported.features
    assert cfg.loss.head._target_.endswith("AAMSoftmax")
    assert cfg.train.init_from == "models/ge2e.safetensors"
    assert 0 < cfg.optim.backbone_lr_scale < 1 and cfg.train.freeze[0] == "lstm.weight_ih_l0"
    assert cfg.data.root.endswith("librispeech/train-clean-100")
    assert list(cfg.data.eval_channels) == ["telephone"]
    steps = cfg.augment.pipeline.augmentations
    assert cfg.augment.pipeline.speed is None
    assert steps.telephone.p >= 0.5 and set(steps.telephone.codecs) == {"mulaw", "alaw"}
    assert steps.noise.p > 0 and steps.noise.noise_dir.endswith("shared/data/noise")
    shared("noise")  # the noise step reads the real noise folder: skip, with the reason, without it
    pipeline = instantiate(cfg.augment.pipeline)  # every step builds
    assert [type(a).__name__ for a in pipeline.augmentations][-1] == "TelephoneChannel"


def test_one_tiny_fine_tune_step_from_the_imported_ge2e(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    imported = import_ge2e(tmp_path)
    cfg = compose(
        [
            "experiment=finetune_telephone",
            "data=synthetic",  # the micro corpus instead of train-clean-100
            *MICRO_CORPUS,
            "augment.pipeline.augmentations.noise.noise_dir=null",
            "augment.pipeline.augmentations.telephone.p=1.0",
            f"train.init_from={imported}",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=1",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
        ]
    )
    summary = prepare(cfg.data, progress=False)
    assert "telephone" in summary["channels"]
    run = train(cfg)
    assert run["global_step"] == 1
    before = encoder_file.read(imported).state_dict
    after = encoder_file.read(tmp_path / cfg.train.out_dir / "encoder.safetensors").state_dict
    frozen = set(cfg.train.freeze)
    for name, value in before.items():
        assert torch.equal(value, after[name]) == (name in frozen), name
