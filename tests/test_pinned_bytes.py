"""What the demo's figures rest on, pinned: the synthetic corpus, the default augmentation and
the training crop. A refactor must leave them as they are; a deliberate change (a new corpus
model, another resampler) updates the pins here and says so, because every corpus hash, trained
model and demo figure moves with them.

What is exact on every machine is pinned as bytes: the crop windows (pure indexing), the random
draws (the generator's state after each augmented crop), the corpus's file names and lengths.
The float signals are pinned as fingerprints within a tolerance: their last bits depend on the
CPU's kernels (numpy's float64 exp/sin take AVX-512 code only where the CPU has it; torch picks
its own SIMD level), so byte pins of them held on the machine that set them and failed on the
next. The tolerance is 1e-4 of full scale, a thousand times under what any real change moves
(a different seed, gain, filter or noise draw moves them by 1e-2 or more)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from speakerops.data import synthetic as syn
from speakerops.data.crop import random_crop

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf" / "augment"
ATOL = 1e-4  # of full scale (signals in [-1, 1]); one int16 step is 3.1e-5


def digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def fingerprint(a: np.ndarray) -> list[float]:
    """Twelve numbers that move with any real change of a signal: mean, RMS, peak, four
    projections on fixed ±1 sequences (scaled by 1/sqrt(n)) and the samples at five fixed
    fractions of its length."""
    x = np.asarray(a, dtype=np.float64).ravel()
    n = x.size
    signs = np.where(np.random.default_rng(12345).random((4, n)) < 0.5, -1.0, 1.0)
    picks = x[[int(f * (n - 1)) for f in (0.1, 0.3, 0.5, 0.7, 0.9)]]
    stats = [x.mean(), np.sqrt(np.mean(x * x)), np.abs(x).max()]
    return [round(float(v), 6) for v in [*stats, *(signs @ x / np.sqrt(n)), *picks]]


def assert_fingerprints(arrays, pinned: list[list[float]], what: str) -> None:
    got = [fingerprint(a) for a in arrays]
    assert len(got) == len(pinned), (what, len(got))
    for i, (g, p) in enumerate(zip(got, pinned, strict=True)):
        assert np.allclose(g, p, rtol=0, atol=ATOL), (what, i, g)


def signal(n: int) -> torch.Tensor:
    """A test waveform made with exact arithmetic only (a triangle wave plus an integer
    congruential hiss), so its bytes are the same on every CPU."""
    k = np.arange(n, dtype=np.int64)
    tri = np.abs((k % 200) - 100) / 1000.0 - 0.05
    hiss = ((k * 7919 + 13) % 1009) / 1009.0 - 0.5
    return torch.from_numpy((tri + 0.02 * hiss).astype(np.float32))


def test_synthetic_recordings_are_pinned(tmp_path: Path) -> None:
    spk = syn.make_speakers(3, seed=7)
    utts = [syn.synthesize_utterance(spk[1], 11, 0.8, 16000, ch) for ch in syn.CHANNELS]
    utts.append(syn.synthesize_utterance(spk[2], 3, 0.8, 8000))
    df = syn.generate_corpus(
        tmp_path, 3, 2, seed=1, min_duration_s=0.5, max_duration_s=0.8, progress=False
    )
    files = sorted((tmp_path / "wav").rglob("*.wav"))
    assert len(files) == len(df) == 6
    wavs = [sf.read(f, dtype="float32")[0] for f in files]
    layout = [
        (f.relative_to(tmp_path).as_posix(), w.size) for f, w in zip(files, wavs, strict=True)
    ]
    assert [(u.dtype.name, u.shape) for u in utts] == PINNED["synthetic_shapes"]
    assert layout == PINNED["corpus_layout"], layout
    assert_fingerprints(utts, PINNED["synthetic"], "synthesize_utterance")
    assert_fingerprints(wavs, PINNED["corpus"], "generate_corpus")


def augment_outputs() -> tuple[str, list[str], list[np.ndarray]]:
    """Six training crops of :func:`signal` and their default augmentation (fixed seeds): the
    crops' digest, the generator's state after each crop's augmentation, the outputs."""
    root = OmegaConf.create({"features": {"sample_rate": 16000}})
    root.augment = OmegaConf.load(CONF / "default.yaml")
    pipe = instantiate(root.augment.pipeline)
    x = signal(24000)
    crops, states, outs = [], [], []
    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        crop = random_crop(x[: 9000 + 3000 * seed], 16000, g)
        crops.append(crop.numpy().copy())
        outs.append(pipe(crop.clone(), g)[0].numpy().copy())
        states.append(digest([g.get_state().numpy()]))
    return digest(crops), states, outs


def test_default_augmentation_and_crop_are_pinned(tmp_path: Path) -> None:
    """In a fresh interpreter at one torch thread, as every command runs: the convolutions'
    float reductions differ with the thread count and with what earlier tests left in the
    process (library state), so the signals are those of a clean command-line run."""
    out = tmp_path / "aug.npz"
    code = (
        "import sys, numpy as np; from tests.test_pinned_bytes import augment_outputs; "
        "c, s, o = augment_outputs(); print(c, *s); np.savez(sys.argv[1], *o)"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    crops, *states = proc.stdout.split()[-7:]
    assert crops == PINNED["crops"], crops
    assert states == PINNED["augment_draws"], states
    with np.load(out) as z:
        outs = [z[f"arr_{i}"] for i in range(6)]
    assert_fingerprints(outs, PINNED["augment"], "default augmentation")


# fmt: off
PINNED: dict = {
    'synthetic_shapes': [
        ('float32', (12800,)),
        ('float32', (12800,)),
        ('float32', (12800,)),
        ('float32', (12800,)),
        ('float32', (12800,)),
        ('float32', (6400,)),
    ],
    'corpus_layout': [
        ('wav/syn0000/syn0000-000.wav', 12160),
        ('wav/syn0000/syn0000-001.wav', 8960),
        ('wav/syn0001/syn0001-000.wav', 10720),
        ('wav/syn0001/syn0001-001.wav', 8960),
        ('wav/syn0002/syn0002-000.wav', 12640),
        ('wav/syn0002/syn0002-001.wav', 10240),
    ],
    'synthetic': [
        [9e-06, 0.034427, 0.306964, -0.017022, 0.008989, -0.019275, 0.005476, -0.000125, 0.120817, -0.015938, -1.4e-05, 5.4e-05],
        [2e-06, 0.034468, 0.306964, -0.034088, 0.005604, -0.01932, 0.005718, -0.000134, 0.134942, -0.013681, -0.000235, -0.000562],
        [3e-06, 0.034381, 0.306964, -0.023693, 0.016764, 0.004382, 0.007986, -0.000638, 0.115785, -0.014842, 0.003182, 0.001923],
        [1.8e-05, 0.0406, 0.306964, -0.004206, 0.037426, -0.016834, 0.004778, -0.002554, 0.104613, -0.039143, 0.005378, -0.000117],
        [1e-06, 0.041676, 0.348469, -0.036441, 0.004219, -0.039125, 0.016692, -0.000403, 0.076071, -0.023883, 0.000495, 0.001251],
        [1.1e-05, 0.077645, 0.556757, -0.11212, 0.007643, 0.06135, 0.02656, 0.000187, -0.021176, -0.077292, 0.012501, -0.109238],
    ],
    'corpus': [
        [-1e-05, 0.098929, 0.504944, -0.026137, 0.084614, 0.031202, 0.216994, -3.1e-05, -0.059631, 0.152435, 0.001709, 0.004425],
        [6e-06, 0.161371, 0.730164, 0.115266, -0.147461, -0.367875, 0.065133, 0.003571, 0.003876, 0.532257, 0.022064, -0.004333],
        [3.3e-05, 0.030254, 0.275482, -0.032122, 0.029463, 0.001241, -0.013841, 0.021545, -0.009491, 0.002716, -9.2e-05, -0.008545],
        [-4.3e-05, 0.063888, 0.589813, -0.068274, -0.06685, 0.027061, -0.05789, -0.004486, -0.007721, 0.002106, -0.031036, -0.003784],
        [4e-06, 0.097628, 0.717773, -0.128027, -0.032254, -0.033177, -0.078066, -0.00061, -0.10202, 0.063263, -0.002625, 0.161621],
        [-1.3e-05, 0.105746, 0.568542, -0.02969, -0.151192, -0.014635, 0.034513, 0.000488, 0.0, -0.103546, -0.08493, 0.000854],
    ],
    'crops': 'ec73f3c1564ce39b',
    'augment_draws': [
        '91b0f997bd07f3e5',
        '414613f7320d40da',
        'c47896f4951cccf1',
        'f2e540b71266ce03',
        'fdb30e5609ecf7de',
        '2cbbed3ec3936456',
    ],
    'augment': [
        [-1e-05, 0.030367, 0.077289, 0.003777, -0.02269, -0.006213, -0.03846, -0.005698, -0.007522, -0.023672, -0.00733, -0.013244],
        [0.000446, 0.034173, 0.114938, -0.02038, -0.023474, 0.002235, 0.034517, -0.048132, 0.004016, 0.03946, 0.032797, -0.012252],
        [-1e-05, 0.029444, 0.06, -0.01395, -0.013283, 0.031139, -0.026107, -0.053609, -0.058267, -0.042925, -0.056998, -0.041656],
        [0.000737, 0.037966, 0.140744, -0.010281, -0.013593, 0.032453, -0.054036, -0.045598, -0.037312, -0.035329, -0.015621, -0.047269],
        [-1e-05, 0.033167, 0.090888, 0.005256, -0.024929, -0.048956, 0.037643, 0.002531, 0.032247, 0.046559, 0.028772, 0.011269],
        [-0.000666, 0.02987, 0.066061, -0.009451, -0.008757, -0.034966, 0.005177, 0.011178, 0.011494, 0.007714, 0.005519, 0.003584],
    ],
}
# fmt: on
