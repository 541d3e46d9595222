"""The SpeechBrain importer: a pretrained folder's ECAPA-TDNN reproduces SpeechBrain's embeddings.

No pretrained SpeechBrain file can be downloaded here, so the folder is made locally in the
layout of SpeechBrain's pretrained speaker models (`spkrec-ecapa-voxceleb`: `hyperparams.yaml`
with its Fbank, sentence mean normalization and ECAPA_TDNN of channels [1024, 1024, 1024, 1024,
3072], and `embedding_model.ckpt`, the model's `torch.save`d state dict) from a randomly
initialised SpeechBrain ECAPA whose BatchNorm statistics and affine parameters are drawn too (at
initialisation they are 0 and 1, which would hide a mis-mapped BatchNorm). SpeechBrain itself
builds the reference from the same YAML (`hyperpyyaml`) and embeds the same waveforms:
compute_features -> mean_var_norm -> embedding_model, as its `EncoderClassifier.encode_batch`.
speechbrain comes with the `[peer]` extra, which scripts/install.sh installs.
"""

from __future__ import annotations

import hyperpyyaml  # the [peer] extra (scripts/install.sh installs it): no skip
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from speakerops.cli import main
from speakerops.core.config import compose
from speakerops.data.audio import load_audio
from speakerops.models import encoder_file
from speakerops.models.encoder import SpeakerEncoder
from speakerops.models.importers import from_speechbrain, source_tags
from tests.conftest import shared

HYPERPARAMS = """\
# the layout of speechbrain/spkrec-ecapa-voxceleb's hyperparams.yaml
pretrained_path: .
n_mels: 80
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [1024, 1024, 1024, 1024, 3072]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 128
    lin_neurons: 192
mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
"""


def composed() -> tuple[dict, dict]:
    cfg = compose(list(from_speechbrain.OVERRIDES))
    return OmegaConf.to_container(cfg.model, resolve=True), OmegaConf.to_container(cfg.features)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, one_torch_thread):
    path = tmp_path_factory.mktemp("spkrec-ecapa")
    (path / "hyperparams.yaml").write_text(HYPERPARAMS)
    torch.manual_seed(7)
    modules = hyperpyyaml.load_hyperpyyaml(HYPERPARAMS)
    model = modules["embedding_model"].eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    torch.save(model.state_dict(), path / "embedding_model.ckpt")  # SpeechBrain's torch_save
    return path, modules


def test_speechbrain_import_reproduces_speechbrains_embeddings(folder, tmp_path, capsys) -> None:
    path, modules = folder
    out = tmp_path / "sb.safetensors"
    args = ["models", "import", "source=speechbrain", f"path={path}", f"output={out}"]
    assert main(args) == 2  # no licence given and no model card naming one
    assert "licence is unknown" in capsys.readouterr().err and not out.exists()
    (path / "README.md").write_text("---\nlicense: apache-2.0\ntags: [speaker]\n---\n# card\n")
    assert main(args) == 0
    content = encoder_file.read(out)
    assert content.arch == "ecapa_speechbrain" and content.features["frontend"] == "sb_fbank"
    assert content.kwargs["layer_channels"] == [1024, 1024, 1024, 1024, 3072]
    tags = source_tags(content.extras)
    assert tags["source"] == "speechbrain" and tags["source_licence"] == "apache-2.0"
    assert tags["source_sha256"] == encoder_file.sha256_bytes(
        (path / "embedding_model.ckpt").read_bytes()
    )
    enc = SpeakerEncoder.load(out)
    # a test-other reading and an 8 kHz FSDD digit, both as the encoder reads them (16 kHz)
    files = [
        shared("librispeech", "test-other", "1688", "1688-142285-0005.flac"),
        shared("fsdd", "recordings", "4_george_12.wav"),
    ]
    worst = 0.0
    for file in files:
        wav, _ = load_audio(file, 16000)
        batch = torch.from_numpy(wav)[None]
        ones = torch.ones(1)
        with torch.no_grad():
            feats = modules["mean_var_norm"](modules["compute_features"](batch), ones)
            reference = modules["embedding_model"](feats, ones)[0, 0].numpy()
        ours = enc.embed(wav, 16000, str(file))
        assert ours.shape == reference.shape == (192,)
        worst = max(worst, float(np.abs(ours - reference).max()))
    assert worst <= 1e-5, worst


def test_speechbrain_hyperparams_are_data_and_unsupported_settings_are_refused(
    folder, tmp_path
) -> None:
    path, _ = folder
    marker = tmp_path / "ran"
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "embedding_model.ckpt").write_bytes((path / "embedding_model.ckpt").read_bytes())
    text = HYPERPARAMS + f'side_effect: !apply:os.system ["touch {marker}"]\n'
    (evil / "hyperparams.yaml").write_text(
        text.replace("std_norm: False\nembedding", "std_norm: True\nembedding", 1)
    )
    with pytest.raises(
        ValueError, match="mean_var_norm must be norm_type: sentence, std_norm: False"
    ):
        from_speechbrain.convert(evil, *composed(), "apache-2.0")
    assert not marker.exists()  # the !apply: tag was read as data, never run
    (evil / "hyperparams.yaml").write_text(
        HYPERPARAMS.replace("    lin_neurons: 192", "    lin_neurons: 192\n    dropout: 0.5")
    )
    with pytest.raises(ValueError, match=r"embedding_model.dropout=0.5 is not supported"):
        from_speechbrain.convert(evil, *composed(), "apache-2.0")
