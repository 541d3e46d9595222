"""Front end, ECAPA-TDNN, AAM-softmax and the self-describing encoder file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from scipy.signal import resample_poly

from speakerops.models.ecapa import ECAPATDNN
from speakerops.models.encoder import SpeakerEncoder
from speakerops.models.features import Fbank, FeatureConfig
from speakerops.models.losses import AAMSoftmax

from .conftest import tone, write_wav

SMALL = {
    "arch": "ecapa_tdnn",
    "n_mels": 80,
    "channels": 32,
    "embedding_dim": 192,
    "attention_channels": 16,
}


def small_encoder() -> SpeakerEncoder:
    torch.manual_seed(0)
    enc = SpeakerEncoder(ECAPATDNN(80, 32, 192, attention_channels=16), FeatureConfig(), SMALL)
    return enc.eval()


def test_fbank_is_80_dim_10ms_and_mean_normalized() -> None:
    feats = Fbank(FeatureConfig())(torch.from_numpy(tone(2.0))[None])
    assert feats.shape == (1, 197, 80)  # (32000 - n_fft 512) // hop 160 + 1 frames
    assert torch.allclose(feats.mean(dim=1), torch.zeros(80), atol=1e-4)


def test_ecapa_embedding_shape_and_variable_length() -> None:
    torch.manual_seed(0)
    model = ECAPATDNN(80, 32, 192, attention_channels=16).eval()
    for frames in (50, 301):
        assert model(torch.randn(3, frames, 80)).shape == (3, 192)
    # pooling is an attention-weighted average over time: a stationary input (one frame held)
    # embeds alike at 50 and 301 frames (zero-padded edges: 5.6 % apart), while two different
    # held frames are 65 % apart; weights that do not sum to 1 over time (softmax over the
    # channels) put the two lengths 84 % apart
    frame = torch.randn(2, 1, 80, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        short, long = model(frame.expand(-1, 50, -1)), model(frame.expand(-1, 301, -1))
        assert float((short - long).norm() / long.norm()) < 0.15
        assert float((long[0] - long[1]).norm() / long[1].norm()) > 0.3
        # each utterance of a batch is embedded on its own
        x = torch.randn(3, 301, 80)
        torch.testing.assert_close(model(x)[1], model(x[1:2])[0], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="divisible"):
        ECAPATDNN(80, 30, 192)


def test_aam_margin_penalizes_the_target_logit_only() -> None:
    torch.manual_seed(0)
    head = AAMSoftmax(8, 5, margin=0.3, scale=10.0)
    emb, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    cos = F.linear(F.normalize(emb), F.normalize(head.weight))
    head.set_margin_fraction(0.0)
    assert torch.allclose(head.logits(emb, labels), 10 * cos, atol=1e-5)
    head.set_margin_fraction(1.0)
    logits = head.logits(emb, labels)
    theta = torch.acos(cos[torch.arange(4), labels].clamp(-1, 1))
    expected = 10 * torch.where(
        theta + 0.3 < math.pi, torch.cos(theta + 0.3), logits[torch.arange(4), labels] / 10
    )
    assert torch.allclose(logits[torch.arange(4), labels], expected, atol=1e-4)
    mask = F.one_hot(labels, 5).bool()
    assert torch.allclose(logits[~mask], 10 * cos[~mask], atol=1e-5)
    head.set_margin_fraction(0.5)
    assert head.margin == pytest.approx(0.15)


def test_encoder_file_round_trip_keeps_settings_and_outputs(tmp_path: Path) -> None:
    enc = small_encoder()
    enc.extras["calibration"] = {"kind": "linear", "a": 2.0, "b": -1.0}
    enc.save(tmp_path / "enc.safetensors")
    back = SpeakerEncoder.load(tmp_path / "enc.safetensors")
    wav = tone(1.0)
    np.testing.assert_allclose(back.embed(wav, 16000), enc.embed(wav, 16000), atol=1e-5)
    assert back.sample_rate == 16000 and back.extras["calibration"]["a"] == 2.0
    with pytest.raises(ValueError, match="not a speakerops encoder"):
        torch.save({"x": 1}, tmp_path / "other.pt")
        SpeakerEncoder.load(tmp_path / "other.pt")


def test_encoder_resamples_other_rates(tmp_path: Path) -> None:
    enc = small_encoder()
    wav16 = tone(1.5, 16000)
    path8 = write_wav(tmp_path / "x8k.wav", tone(1.5, 8000), 8000)
    e8 = enc.embed_file(path8)
    assert e8.shape == (192,) and np.all(np.isfinite(e8))
    cos = float(e8 @ enc.embed(wav16) / np.linalg.norm(e8) / np.linalg.norm(enc.embed(wav16)))
    assert cos > 0.5  # the same tone at 8 kHz lands near its 16 kHz version
    # embed_file resamples to the model's rate: it matches `embed` of the file's samples
    # resampled independently (scipy polyphase, 8k -> 16k): 1 % apart; the same samples taken
    # as 16 kHz audio (resampling skipped) are 12 % away
    samples, rate = sf.read(path8, dtype="float32")
    assert rate == 8000
    ref = enc.embed(resample_poly(samples.astype(np.float64), 2, 1).astype(np.float32), 16000)
    unresampled = enc.embed(samples, 16000)

    def dist(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))

    assert dist(e8, ref) < 0.03, dist(e8, ref)
    assert dist(unresampled, ref) > 0.06, dist(unresampled, ref)
    np.testing.assert_allclose(enc.embed(samples, 8000), e8, atol=1e-5)  # embed resamples too
