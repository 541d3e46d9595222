"""Tests for speakerops.train.augment: invariants on generated signals (always) and on real
audio from ../shared/data (LibriSpeech test-other speech, Speech Commands noise, real RIRs)."""

from __future__ import annotations

import importlib.util
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from speakerops.train.augment import (
    AddNoise,
    AugmentPipeline,
    Reverberate,
    SpecAugment,
    SpeedPerturb,
    TelephoneChannel,
    achieved_snr_db,
    alaw_decode,
    alaw_encode,
    colored_noise,
    direct_path_index,
)

from .conftest import REPO, SHARED_DATA

SR = 16000
DATA = SHARED_DATA  # ../shared/data, or $SPEAKEROPS_SHARED_DATA (conftest.py)
CONF = REPO / "conf" / "augment"
NOISE_ORDER = ("white", "pink", "brown")
HAVE_PRA = importlib.util.find_spec("pyroomacoustics") is not None


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def speechlike(n: int = 2 * SR, seed: int = 0) -> torch.Tensor:
    """Amplitude-modulated harmonic bursts plus a little noise (broadband, non-stationary)."""
    g = gen(seed)
    t = torch.arange(n) / SR
    f0 = 120.0 + 40.0 * torch.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / SR
    x = sum(torch.sin(k * phase) / k for k in range(1, 30))
    env = (torch.sin(2 * math.pi * 3.0 * t) > -0.2).float()
    return (0.1 * x * env + 0.003 * torch.randn(n, generator=g)).float()


def noise_bursts(n: int = 2 * SR, seed: int = 0) -> torch.Tensor:
    """White noise gated on and off: flat autocorrelation, so xcorr(x, y) traces the RIR."""
    g = gen(seed)
    env = (torch.sin(2 * math.pi * 2.0 * torch.arange(n) / SR) > 0).float()
    return 0.1 * torch.randn(n, generator=g) * env


def peak_freq(x: torch.Tensor, sr: int = SR) -> float:
    spec = torch.fft.rfft(x.double() * torch.hann_window(x.numel(), dtype=torch.float64))
    k = int(spec.abs().argmax())
    return k * sr / x.numel()


def band_energy_fraction(x: torch.Tensor, f_lo: float, f_hi: float, sr: int = SR) -> float:
    spec = torch.fft.rfft(x.double()).abs().square()
    f = torch.fft.rfftfreq(x.numel(), 1.0 / sr)
    return float(spec[(f >= f_lo) & (f < f_hi)].sum() / spec.sum())


def xcorr_peak_lag(x: torch.Tensor, y: torch.Tensor, max_lag: int = 2000) -> int:
    """Lag (samples) maximizing sum_n x[n] y[n + lag]; positive = y delayed."""
    n = x.numel() + y.numel()
    c = torch.fft.irfft(
        torch.fft.rfft(y.double(), n=n) * torch.fft.rfft(x.double(), n=n).conj(), n=n
    )
    lags = torch.cat([c[: max_lag + 1], c[-max_lag:]])
    idx = int(lags.abs().argmax())
    return idx if idx <= max_lag else idx - (2 * max_lag + 1)


def corrcoef(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([x.double(), y.double()]))[0, 1])


def all_on_pipeline(**kw) -> AugmentPipeline:
    return AugmentPipeline(
        [
            Reverberate(p=1.0, simulator="noise"),
            AddNoise(p=1.0),
            TelephoneChannel(p=1.0, packet_loss=0.05),
        ],
        sample_rate=SR,
        speed=SpeedPerturb(p=1.0),
        **kw,
    )


# ---------------------------------------------------------------------------- generated signals
@pytest.mark.parametrize("n", [1, 7, 400, 16000, 32001])
def test_pipeline_keeps_length_dtype_and_is_finite(n: int) -> None:
    pipe = all_on_pipeline()
    x = speechlike(max(n, 1))[:n]
    for seed in range(3):
        y, idx = pipe(x, gen(seed))
        assert y.shape == x.shape and y.dtype == torch.float32
        assert torch.isfinite(y).all()
        assert idx in (1, 2)


def test_empty_and_bad_input() -> None:
    pipe = all_on_pipeline()
    y, idx = pipe(torch.zeros(0), gen())
    assert y.numel() == 0 and idx == 0
    with pytest.raises(ValueError, match="1-D float"):
        pipe(torch.zeros(2, 100), gen())
    with pytest.raises(ValueError, match="1-D float"):
        pipe(torch.zeros(100, dtype=torch.int16), gen())


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
@pytest.mark.parametrize("snr", [0.0, 7.5, 15.0])
def test_generated_noise_hits_target_snr(color: str, snr: float) -> None:
    aug = AddNoise(snr_db=(snr, snr), colors=[color], p=1.0)
    x = speechlike()
    for seed in range(3):
        y = aug(x, gen(seed), SR)
        assert abs(achieved_snr_db(x, y) - snr) < 0.5


def test_generated_noise_snr_range_and_colours() -> None:
    aug = AddNoise(snr_db=(0.0, 15.0), p=1.0)
    x = speechlike()
    snrs = [achieved_snr_db(x, aug(x, gen(s), SR)) for s in range(20)]
    assert all(-0.5 < s < 15.5 for s in snrs)
    assert max(snrs) - min(snrs) > 5.0  # the target is drawn, not fixed
    # spectral slope: low band share grows white < pink < brown
    low = [band_energy_fraction(colored_noise(32000, c, gen(1)), 0, 500) for c in NOISE_ORDER]
    assert low[0] < 0.1 < low[1] < low[2]
    for c in NOISE_ORDER:
        assert abs(float(colored_noise(32000, c, gen(2)).square().mean()) - 1.0) < 1e-3


def test_silent_input_stays_finite() -> None:
    x = torch.zeros(SR)
    for aug in (AddNoise(p=1.0), Reverberate(p=1.0, simulator="noise"), TelephoneChannel(p=1.0)):
        y = aug(x, gen(), SR)
        assert torch.isfinite(y).all() and y.shape == x.shape
        assert float(y.abs().max()) == 0.0


def test_speed_change_scales_pitch_and_duration() -> None:
    n = 2 * SR
    sine = torch.sin(2 * math.pi * 440.0 * torch.arange(n) / SR)
    for factor in (0.9, 1.1):
        raw = SpeedPerturb.change_speed(sine, factor, SR)
        assert abs(raw.numel() - n / factor) <= 2  # duration / factor before the crop
        assert abs(peak_freq(raw) - 440.0 * factor) < 2.0  # pitch * factor
    sp = SpeedPerturb(p=1.0)
    seen = set()
    for seed in range(12):
        y, idx = sp(sine, gen(seed), SR)
        seen.add(idx)
        assert y.numel() == n
        assert abs(peak_freq(y) - 440.0 * sp.index_to_factor[idx]) < 2.0
    assert seen == {1, 2}


def test_speed_index_convention() -> None:
    sp = SpeedPerturb(factors=(1.1, 1.0, 0.9))
    assert sp.index_to_factor == (1.0, 1.1, 0.9)
    assert sp.num_label_copies == 3
    assert AugmentPipeline([], sample_rate=SR, speed=sp).num_label_copies == 3
    assert AugmentPipeline([], sample_rate=SR).num_label_copies == 1
    with pytest.raises(ValueError, match="must contain 1.0"):
        SpeedPerturb(factors=(0.9, 1.1))
    # default p = 2/3: uniform over the three speeds (WeSpeaker)
    g = gen(3)
    counts = np.bincount([SpeedPerturb().draw_index(g) for _ in range(3000)], minlength=3)
    assert np.all(np.abs(counts / 3000 - 1 / 3) < 0.04)
    with pytest.raises(TypeError, match="speed="):
        AugmentPipeline([SpeedPerturb()], sample_rate=SR)


def test_simulated_reverb_noise_rir_keeps_alignment_and_changes_signal() -> None:
    aug = Reverberate(p=1.0, simulator="noise")
    x = noise_bursts()
    for seed in range(4):
        y = aug(x, gen(seed), SR)
        assert abs(xcorr_peak_lag(x, y)) <= 2
        assert corrcoef(x, y) < 0.98
        assert abs(float(y.square().mean() / x.square().mean()) - 1.0) < 1e-3  # level kept


@pytest.mark.skipif(not HAVE_PRA, reason="pyroomacoustics not installed (optional dependency)")
def test_simulated_reverb_pyroomacoustics() -> None:
    aug = Reverberate(p=1.0, simulator="pyroomacoustics", rt60=(0.3, 0.8))
    x = noise_bursts()
    for seed in range(3):
        h = aug.draw_rir(gen(seed), SR)
        assert torch.isfinite(h).all() and h.numel() > 0.25 * SR
        y = aug(x, gen(seed), SR)
        assert abs(xcorr_peak_lag(x, y)) <= 2 and corrcoef(x, y) < 0.98


def test_reverb_simulator_choice() -> None:
    assert Reverberate(simulator="noise").simulator == "noise"
    expected = "pyroomacoustics" if HAVE_PRA else "noise"
    assert Reverberate().simulator == expected


@pytest.mark.parametrize("codec", ["mulaw", "alaw", "pcm8", "none"])
def test_telephone_removes_energy_above_4khz(codec: str) -> None:
    x = torch.randn(2 * SR, generator=gen(5)) * 0.1
    assert band_energy_fraction(x, 4000, 8000) > 0.4
    y = TelephoneChannel(codecs=[codec], p=1.0)(x, gen(), SR)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert band_energy_fraction(y, 4000, 8000) < 1e-4
    assert band_energy_fraction(y, 0, 150) < 0.01  # high-pass side of the band
    assert band_energy_fraction(y, 500, 3000) > 0.8


def test_telephone_at_8khz_and_too_low_rate() -> None:
    x = torch.randn(8000, generator=gen()) * 0.1
    y = TelephoneChannel(p=1.0)(x, gen(), 8000)
    assert y.shape == x.shape and torch.isfinite(y).all()
    # already at the channel rate, the band-pass still applies: white noise (13 % of its
    # energy in 3.5-4 kHz, 4 % below 150 Hz) leaves with ~1e-5 in each, the band kept
    assert band_energy_fraction(x, 3500, 4000, 8000) > 0.1
    assert band_energy_fraction(y, 3500, 4000, 8000) < 1e-3
    assert band_energy_fraction(y, 0, 150, 8000) < 1e-3
    assert band_energy_fraction(y, 500, 3000, 8000) > 0.7
    with pytest.raises(ValueError, match="sample_rate >= 8000"):
        TelephoneChannel(p=1.0)(torch.randn(4000), gen(), 4000)


def test_companding_roundtrip() -> None:
    x = torch.linspace(-1, 1, 10001)
    codes = alaw_encode(x)
    assert int(codes.min()) >= 0 and int(codes.max()) <= 255
    err = (alaw_decode(codes) - x).abs()
    # companding: error grows with level, ~1/16 of the segment step; small near 0
    assert float(err[x.abs() < 0.01].max()) < 1e-3 and float(err.max()) < 0.03
    assert torch.all(alaw_decode(alaw_encode(x)).diff() >= 0)  # monotone


def test_packet_loss_zeroes_frames() -> None:
    x = torch.randn(SR, generator=gen()) * 0.1 + 0.2 * torch.sin(torch.arange(SR) * 0.1)
    y = TelephoneChannel(codecs=["none"], p=1.0, packet_loss=0.5)(x, gen(1), SR)
    # 20 ms frames at 16 kHz; skip 2.5 ms at each edge (resampler and band-pass ringing)
    frames = y.reshape(-1, 320)[:, 40:-40].abs().amax(dim=1)
    lost = float((frames < 0.02).float().mean())
    assert 0.25 < lost < 0.75
    clean = TelephoneChannel(codecs=["none"], p=1.0)(x, gen(1), SR).reshape(-1, 320)[:, 40:-40]
    assert float((clean.abs().amax(dim=1) < 0.02).float().mean()) == 0.0


def test_determinism_for_a_seed() -> None:
    pipe = all_on_pipeline()
    x = speechlike()
    y1, i1 = pipe(x, gen(42))
    y2, i2 = pipe(x, gen(42))
    y3, _ = pipe(x, gen(43))
    assert i1 == i2 and torch.equal(y1, y2)
    assert not torch.allclose(y1, y3)
    # the global RNG is not used
    torch.manual_seed(0)
    a = pipe(x, gen(7))[0]
    torch.manual_seed(1)
    b = pipe(x, gen(7))[0]
    assert torch.equal(a, b)


def test_p_zero_is_identity_and_probabilities_apply() -> None:
    x = speechlike()
    pipe = AugmentPipeline(
        [
            Reverberate(p=0.0, simulator="noise"),
            AddNoise(p=0.0),
            TelephoneChannel(p=0.0),
        ],
        sample_rate=SR,
        speed=SpeedPerturb(p=0.0),
    )
    for seed in range(5):
        y, idx = pipe(x, gen(seed))
        assert idx == 0 and torch.equal(y, x)
    noise = AddNoise(p=0.3)
    changed = sum(not torch.equal(noise(x, gen(s), SR), x) for s in range(200))
    assert 40 < changed < 80


def test_pipeline_is_picklable_for_dataloader_workers() -> None:
    pipe = all_on_pipeline()
    x = speechlike()
    clone = pickle.loads(pickle.dumps(pipe))
    assert torch.equal(pipe(x, gen(9))[0], clone(x, gen(9))[0])


def test_validation_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        AddNoise(noise_dir=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no audio files"):
        AddNoise(noise_dir=str(tmp_path))
    with pytest.raises(ValueError, match="no audio files"):
        Reverberate(rir_dir=str(tmp_path))
    with pytest.raises(ValueError, match="needs noise_dir"):
        AddNoise(categories={"noise": {"snr_db": [0, 5]}})
    with pytest.raises(ValueError, match="p must be in"):
        AddNoise(p=1.5)
    with pytest.raises(ValueError, match="low <= high"):
        AddNoise(snr_db=(10, 0))
    with pytest.raises(ValueError, match="colors"):
        AddNoise(colors=["purple"])
    with pytest.raises(ValueError, match="codecs"):
        TelephoneChannel(codecs=["gsm"])
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    aug = AddNoise(noise_dir=str(tmp_path), p=1.0)
    with pytest.raises(ValueError, match="bad.wav"):
        aug(speechlike(), gen(), SR)


def write_musan_like(root: Path) -> Path:
    """A tiny MUSAN-layout folder of generated files at assorted rates, channels and formats."""
    t = torch.arange(3 * 44100) / 44100
    (root / "noise" / "free-sound").mkdir(parents=True)
    (root / "music" / "fma").mkdir(parents=True)
    (root / "speech" / "librivox").mkdir(parents=True)
    sf.write(
        str(root / "noise" / "free-sound" / "n1.wav"),
        colored_noise(40000, "pink", gen(1)).numpy() * 0.1,
        SR,
    )
    music = torch.stack([torch.sin(2 * math.pi * 330 * t), torch.sin(2 * math.pi * 440 * t)], 1)
    sf.write(str(root / "music" / "fma" / "m1.flac"), 0.3 * music.numpy(), 44100, subtype="PCM_24")
    for k in range(4):  # short files (1 s at 22.05 kHz): looped to the crop length
        sf.write(
            str(root / "speech" / "librivox" / f"s{k}.wav"),
            speechlike(22050, seed=k).numpy(),
            22050,
        )
    (root / "README.txt").write_text("not audio")
    return root


def test_musan_layout_on_generated_files(tmp_path: Path) -> None:
    root = write_musan_like(tmp_path / "musan")
    aug = AddNoise(noise_dir=str(root), p=1.0)
    cats = aug.categories
    assert list(cats) == ["noise", "music", "speech"]
    assert [c["files"] for c in cats.values()] == [1, 1, 4]
    assert cats["speech"]["num"] == (3, 7) and cats["music"]["snr_db"] == (5.0, 15.0)
    x = speechlike(seed=9)
    for seed in range(10):
        y = aug(x, gen(seed), SR)
        assert y.shape == x.shape and torch.isfinite(y).all()
        assert -0.5 < achieved_snr_db(x, y) < 20.5
    for name, snr in [("noise", 3.0), ("music", 8.0), ("speech", 17.0)]:
        one = AddNoise(noise_dir=str(root), categories={name: {"snr_db": [snr, snr]}}, p=1.0)
        for seed in range(2):
            assert abs(achieved_snr_db(x, one(x, gen(seed), SR)) - snr) < 0.5
    # the 44.1 kHz stereo FLAC is mixed to mono and resampled to the pipeline rate
    m = aug._banks[1].get(0, SR)
    assert m.shape[0] == 1 and abs(m.shape[1] - 3 * SR) <= 2
    with pytest.raises(ValueError, match="missing"):
        AddNoise(noise_dir=str(root), categories={"noise": {}, "babble": {"num": [3, 7]}})
    with pytest.raises(ValueError, match="unknown keys"):
        AddNoise(noise_dir=str(root), categories={"noise": {"snr": [0, 5]}})
    # a flat folder: everything is noise at snr_db
    flat = AddNoise(noise_dir=str(root / "speech"), snr_db=(12.0, 12.0), p=1.0)
    assert list(flat.categories) == ["noise"] and flat.categories["noise"]["files"] == 4
    assert abs(achieved_snr_db(x, flat(x, gen(), SR)) - 12.0) < 0.5


def test_noise_cache_budget_does_not_change_results(tmp_path: Path) -> None:
    root = write_musan_like(tmp_path / "musan")
    x = speechlike(SR // 2)
    cached = AddNoise(noise_dir=str(root), p=1.0)
    uncached = AddNoise(noise_dir=str(root), p=1.0, cache_mb=0)  # segment reads / re-decoding
    for seed in range(8):
        assert torch.equal(cached(x, gen(seed), SR), uncached(x, gen(seed), SR))
    assert uncached._banks[0]._cached_bytes == 0 and cached._banks[0]._cached_bytes > 0
    # the cache is not pickled (DataLoader workers started with spawn reload lazily)
    clone = pickle.loads(pickle.dumps(cached))
    assert clone._banks[0]._cached_bytes == 0
    assert torch.equal(clone(x, gen(3), SR), cached(x, gen(3), SR))


# ---------------------------------------------------------------------------- SpecAugment
def test_spec_augment_masks_in_training_only() -> None:
    feats = torch.randn(8, 200, 80) + 5.0  # no zeros before masking
    sa = SpecAugment(freq_masks=2, freq_width=8, time_masks=2, time_width=10, p=1.0)
    sa.train()
    out = sa(feats, generator=gen())
    zero = out == 0
    assert out.shape == feats.shape
    for b in range(8):
        fcols = zero[b].all(dim=0).sum()  # fully masked mel bins
        trows = zero[b].all(dim=1).sum()  # fully masked frames
        assert 1 <= fcols <= 16 and 1 <= trows <= 20
    assert torch.equal(out[~zero], feats[~zero])
    sa.eval()
    assert torch.equal(sa(feats), feats)
    sa0 = SpecAugment(p=0.0).train()
    assert torch.equal(sa0(feats), feats)
    half = SpecAugment(p=0.5).train()(torch.ones(400, 50, 20), generator=gen(1))
    frac = float((half == 0).flatten(1).any(dim=1).float().mean())
    assert 0.4 < frac < 0.6
    with pytest.raises(ValueError, match=r"\[B, T, F\]"):
        SpecAugment().train()(torch.randn(10, 80))


# ---------------------------------------------------------------------------- Hydra configs
def load_group(name: str):
    root = OmegaConf.create({"features": {"sample_rate": SR}})
    root.augment = OmegaConf.load(CONF / f"{name}.yaml")
    return root


def test_config_none_is_identity() -> None:
    cfg = load_group("none")
    pipe = instantiate(cfg.augment.pipeline)
    sa = instantiate(cfg.augment.spec_augment).train()
    assert isinstance(pipe, AugmentPipeline) and pipe.augmentations == [] and pipe.speed is None
    assert pipe.num_label_copies == 1
    x = speechlike()
    y, idx = pipe(x, gen())
    assert idx == 0 and torch.equal(y, x)
    feats = torch.randn(2, 100, 80)
    assert torch.equal(sa(feats), feats)


def test_config_default() -> None:
    cfg = load_group("default")
    pipe = instantiate(cfg.augment.pipeline)
    assert pipe.sample_rate == SR and pipe.speed is None and pipe.num_label_copies == 1
    kinds = [type(a) for a in pipe.augmentations]
    assert kinds == [Reverberate, AddNoise]
    assert pipe.augmentations[0].p == 0.3 and pipe.augmentations[1].p == 0.5
    assert pipe.augmentations[1].noise_dir is None and pipe.augmentations[0].rir_dir is None
    assert isinstance(instantiate(cfg.augment.spec_augment), SpecAugment)
    # the sample rate follows the feature config
    cfg.features.sample_rate = 8000
    assert instantiate(cfg.augment.pipeline).sample_rate == 8000


def test_config_full_builds_all_four_and_each_is_switchable() -> None:
    cfg = load_group("full")
    pipe = instantiate(cfg.augment.pipeline)
    assert isinstance(pipe.speed, SpeedPerturb) and pipe.num_label_copies == 3
    assert [type(a) for a in pipe.augmentations] == [Reverberate, AddNoise, TelephoneChannel]
    x = speechlike()
    y, _ = pipe(x, gen())
    assert y.shape == x.shape and torch.isfinite(y).all()
    # switch steps off the way a Hydra override would
    cfg.augment.pipeline.augmentations.telephone = None
    cfg.augment.pipeline.augmentations.noise.p = 0.0
    cfg.augment.pipeline.speed = None
    pipe = instantiate(cfg.augment.pipeline)
    assert [type(a) for a in pipe.augmentations] == [Reverberate, AddNoise]
    assert pipe.augmentations[1].p == 0.0 and pipe.num_label_copies == 1


# ---------------------------------------------------------------------------- real audio
def need_data(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real-audio data absent: {path} (see ../shared/data/README.md)")
    return path


def real_speech(n: int = 2 * SR, k: int = 0) -> torch.Tensor:
    root = need_data("librispeech", "test-other")
    files = sorted(root.glob("*/*.flac"))
    data, rate = sf.read(str(files[k]), dtype="float32")
    assert rate == SR
    return torch.from_numpy(data[SR // 2 : SR // 2 + n].copy())


RIR_FILES = ["impulse_response_0.wav", "rir48000.wav", "stereo_impulse_response.wav"]


def one_file_dir(tmp_path: Path, src: Path, sub: str = "") -> Path:
    d = tmp_path / (sub or src.stem)
    d.mkdir(parents=True, exist_ok=True)
    (d / src.name).symlink_to(src)
    return d


@pytest.mark.realdata
@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_real_noise_folder_hits_target_snr(snr: float) -> None:
    noise_dir = need_data("noise")
    aug = AddNoise(noise_dir=str(noise_dir), snr_db=(snr, snr), p=1.0)
    assert aug.categories["noise"]["files"] == 6  # LICENSE.txt is not audio
    for k in range(3):
        x = real_speech(k=k)
        y = aug(x, gen(k), SR)
        assert y.shape == x.shape and torch.isfinite(y).all()
        assert abs(achieved_snr_db(x, y) - snr) < 0.5


@pytest.mark.realdata
def test_real_musan_layout_and_resampled_stereo_noise(tmp_path: Path) -> None:
    noise_dir = need_data("noise")
    speech_dir = need_data("librispeech", "test-other")
    root = tmp_path / "musan"
    for f in sorted(noise_dir.glob("*.wav"))[:3]:
        one_file_dir(root, f, "noise/free-sound")
    # music: a 44.1 kHz stereo file made from a real noise file (any rate/channels accepted)
    data, rate = sf.read(str(noise_dir / "running_tap.wav"), dtype="float32", frames=3 * SR)
    stereo = np.stack([data, 0.5 * data], axis=1)
    up = torch.from_numpy(stereo.T.copy())
    import torchaudio.functional as AF

    up = AF.resample(up, rate, 44100).numpy().T
    (root / "music").mkdir(parents=True)
    sf.write(str(root / "music" / "tap44k.wav"), up, 44100, subtype="PCM_24")
    for f in sorted(speech_dir.glob("*/*.flac"))[:8]:
        one_file_dir(root, f, "speech/librivox")
    aug = AddNoise(noise_dir=str(root), p=1.0)
    cats = aug.categories
    assert set(cats) == {"noise", "music", "speech"}
    assert cats["speech"]["num"] == (3, 7) and cats["speech"]["snr_db"] == (13.0, 20.0)
    x = real_speech(k=5)
    for seed in range(12):
        y = aug(x, gen(seed), SR)
        snr = achieved_snr_db(x, y)
        assert y.shape == x.shape and torch.isfinite(y).all() and -0.5 < snr < 20.5
    # the 44.1 kHz stereo file is resampled to the pipeline rate (3 s at 16 kHz) and mono
    music = aug._banks[list(cats).index("music")]
    for rate in (SR, 8000):
        m = music.get(0, rate)
        assert m.shape[0] == 1 and abs(m.shape[1] - 3 * rate) <= 2
    # babble: a speech-only config gives the babble SNR range
    babble = AddNoise(
        noise_dir=str(root), categories={"speech": {"snr_db": [15, 15], "num": [3, 7]}}, p=1.0
    )
    for seed in range(3):
        assert abs(achieved_snr_db(x, babble(x, gen(seed), SR)) - 15.0) < 0.5


@pytest.mark.realdata
@pytest.mark.parametrize("name", RIR_FILES)
def test_real_rir_alignment_and_effect(name: str, tmp_path: Path) -> None:
    src = need_data("rir", name)
    info = sf.info(str(src))
    aug = Reverberate(rir_dir=str(one_file_dir(tmp_path, src)), p=1.0)
    h = aug._bank.get(0, SR)
    # resampled to 16 kHz (no longer than the file), channels kept, unit energy per channel
    assert h.shape[0] == info.channels
    assert h.shape[1] <= info.duration * SR + 2 and h.shape[1] > 0.05 * SR
    assert torch.allclose(
        h.double().square().sum(dim=1), torch.ones(info.channels, dtype=torch.float64)
    )
    # an impulse in the middle comes out as the aligned RIR: direct path at the impulse,
    # (almost) nothing before it
    imp = torch.zeros(2 * SR)
    imp[SR] = 1.0
    channels_seen = set()
    speech = real_speech()
    for seed in range(6):
        drawn = aug.draw_rir(gen(seed), SR)
        channels_seen |= {c for c in range(h.shape[0]) if torch.equal(drawn, h[c])}
        y = aug(imp, gen(seed), SR).abs()
        assert y.shape == imp.shape and torch.isfinite(y).all()
        assert float(y[SR - 16 : SR + 17].max()) >= 0.5 * float(y.max())  # direct path at 0
        assert float(y[: SR - 16].square().sum()) < 0.02 * float(y.square().sum())  # causal
        ys = aug(speech, gen(seed), SR)
        assert ys.shape == speech.shape and torch.isfinite(ys).all()
        assert corrcoef(speech, ys) < 0.95  # audibly changed
    assert channels_seen == set(range(info.channels))


@pytest.mark.realdata
@pytest.mark.parametrize("name", RIR_FILES[:2])
def test_real_rir_xcorr_peak_near_zero(name: str, tmp_path: Path) -> None:
    """White input: xcorr(x, y) traces the aligned RIR; its peak is at the direct path, or at a
    reflection stronger than it within 4 ms (rir48000.wav: 3 ms); a naive convolution would be
    shifted by the onset delay (6 ms / 30 ms)."""
    src = need_data("rir", name)
    aug = Reverberate(rir_dir=str(one_file_dir(tmp_path, src)), p=1.0)
    onset = direct_path_index(aug._bank.get(0, SR)[0], SR)
    assert onset > 80
    for k in range(2):
        x = torch.randn(2 * SR, generator=gen(10 + k))
        y = aug(x, gen(k), SR)
        assert abs(xcorr_peak_lag(x, y)) <= 64


@pytest.mark.realdata
def test_real_speech_full_pipeline_and_telephone() -> None:
    x = real_speech(k=3)
    pipe = AugmentPipeline(
        [
            Reverberate(rir_dir=str(need_data("rir")), p=1.0),
            AddNoise(noise_dir=str(need_data("noise")), p=1.0),
            TelephoneChannel(p=1.0),
        ],
        sample_rate=SR,
        speed=SpeedPerturb(p=1.0),
    )
    for seed in range(4):
        y, idx = pipe(x, gen(seed))
        assert y.shape == x.shape and torch.isfinite(y).all() and idx in (1, 2)
        assert band_energy_fraction(y, 4000, 8000) < 1e-4
    assert band_energy_fraction(x, 4000, 8000) > 1e-3  # the speech had energy there
    # 8 kHz pipeline: real 16 kHz noise files are resampled to the pipeline rate
    x8 = torch.from_numpy(
        sf.read(str(need_data("fsdd", "recordings", "0_george_5.wav")), dtype="float32")[0]
    )
    pipe8 = AugmentPipeline([AddNoise(noise_dir=str(need_data("noise")), p=1.0)], sample_rate=8000)
    y8, _ = pipe8(x8, gen())
    assert y8.shape == x8.shape and torch.isfinite(y8).all()
    assert pipe8.augmentations[0]._banks[0].get(0, 8000).shape[1] == pytest.approx(
        sf.info(str(pipe8.augmentations[0]._banks[0].files[0])).frames / 2, abs=2
    )
