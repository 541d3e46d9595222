"""The GE2E importer: resemblyzer's wheel -> a speakerops encoder file that embeds as resemblyzer.

resemblyzer is installed by scripts/install.sh (the `[pretrained]` extra + resemblyzer
`--no-deps`), so nothing here skips in the test command. Parity is measured on the same
preprocessed input: resemblyzer's own `preprocess_wav` (resampling to 16 kHz, volume
normalization to -30 dBFS, its webrtcvad silence trimming) feeds both `VoiceEncoder.
embed_utterance` and the imported encoder's `embed`. The suite checks a seeded sample of
test-other and FSDD files; `bench/bench_import_ge2e.py` checks every one of them.
"""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from speakerops.cli import main
from speakerops.core.config import compose
from speakerops.core.jsonio import sha256_file
from speakerops.models import encoder_file
from speakerops.models.encoder import SpeakerEncoder
from speakerops.models.features import Fbank, FeatureConfig
from speakerops.models.importers import source_tags
from speakerops.models.importers.from_resemblyzer import weights_file
from speakerops.models.windowing import Window
from tests.conftest import shared

with warnings.catch_warnings():  # resemblyzer imports scipy.ndimage.morphology (deprecated)
    warnings.simplefilter("ignore", DeprecationWarning)
    from resemblyzer import VoiceEncoder, audio, preprocess_wav

SAMPLE_SEED, N_TEST_OTHER, N_FSDD = 12, 8, 16


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> tuple:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ge2e") / "ge2e.safetensors"
    assert main(["models", "import", "source=resemblyzer", f"output={out}"]) == 0
    yield out, SpeakerEncoder.load(out)
    torch.set_num_threads(threads)


def test_import_records_source_sha256_and_licence_and_maps_every_weight(imported) -> None:
    out, enc = imported
    content = encoder_file.read(out)  # checked against its sidecar
    src = content.extras["source"]
    assert src["name"] == "resemblyzer" and src["package"] == "resemblyzer 0.1.4"
    assert src["sha256"] == sha256_file(weights_file()) and src["licence"] == "Apache-2.0"
    assert src["left_out"] == "similarity_weight, similarity_bias"
    assert source_tags(content.extras)["source"] == "resemblyzer"
    assert source_tags(content.extras)["source_sha256"] == src["sha256"]
    assert source_tags({}) == {}
    assert content.arch == "ge2e" and content.features["frontend"] == "mel_power"
    assert content.kwargs["window"] == {"length_s": 1.6, "hop_s": 0.77, "min_coverage": 0.75}
    reference = VoiceEncoder("cpu", verbose=False).state_dict()
    ours = enc.backbone.state_dict()
    assert set(reference) == set(ours)  # resemblyzer's encoder has no similarity parameters
    for key, value in reference.items():
        assert torch.equal(ours[key], value), key
    assert sum(v.numel() for v in ours.values()) == 1_423_616


def test_import_refuses_an_unknown_source_and_a_path_for_a_packaged_one(tmp_path, capsys) -> None:
    out = tmp_path / "x.safetensors"
    assert main(["models", "import", "source=nope", f"output={out}"]) == 2
    assert "unknown import source" in capsys.readouterr().err
    assert main(["models", "import", "source=resemblyzer", f"output={out}", "path=/x"]) == 2
    assert "takes no path=" in capsys.readouterr().err
    assert not out.exists()


def test_mel_power_front_end_is_resemblyzers() -> None:
    wav = preprocess_wav(shared("fsdd", "recordings", "7_theo_3.wav"))
    features = OmegaConf.to_container(compose(["features=mel40_power"]).features)
    ours = Fbank(FeatureConfig(**features))(torch.from_numpy(wav))[0].numpy()
    ref = audio.wav_to_mel_spectrogram(wav)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-5 * max(1.0, float(np.abs(ref).max()))


@pytest.mark.parametrize("n_samples", [1, 400, 16000, 25599, 25600, 37919, 37920, 100_003])
def test_window_plan_is_resemblyzers(n_samples: int) -> None:
    win = Window(1.6, 0.77, 0.75)
    starts, frames = win.plan(n_samples, 16000, 160)
    _, mel_slices = VoiceEncoder.compute_partial_slices(n_samples, rate=1.3, min_coverage=0.75)
    assert [(s, s + frames) for s in starts] == [(m.start, m.stop) for m in mel_slices]


def test_window_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="model.window.hop_s"):
        Window.from_cfg({"length_s": 1.6, "hop_s": 2.0, "min_coverage": 0.75})
    with pytest.raises(ValueError, match="model.window="):
        Window.from_cfg({"length_s": 1.6})
    assert Window.from_cfg(None) is None


@pytest.mark.realdata
def test_imported_ge2e_embeds_as_resemblyzer_on_a_seeded_sample(imported) -> None:
    _, enc = imported
    rng = random.Random(SAMPLE_SEED)
    other = sorted(shared("librispeech", "test-other").glob("*/*.flac"))
    fsdd = sorted(shared("fsdd", "recordings").glob("*.wav"))
    files = rng.sample(other, N_TEST_OTHER) + rng.sample(fsdd, N_FSDD)
    reference = VoiceEncoder("cpu", verbose=False)
    cosines = {}
    for path in files:
        wav = preprocess_wav(path)
        ref = reference.embed_utterance(wav)
        ours = enc.embed(wav, 16000, str(path))
        cosines[path.name] = float(ref @ ours / np.linalg.norm(ref) / np.linalg.norm(ours))
    assert min(cosines.values()) >= 0.999, cosines
    # the windows matter: a long utterance in one pass of the LSTM is another embedding
    longest = max(files[:N_TEST_OTHER], key=lambda p: p.stat().st_size)
    wav = torch.from_numpy(preprocess_wav(longest))
    whole = enc.backbone(enc.fbank(wav[None]))[0].detach().numpy()
    assert float(whole @ enc.embed(wav.numpy(), 16000)) < 0.999
