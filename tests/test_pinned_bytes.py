"""The bytes the demo's figures rest on, pinned: the synthetic corpus, the default augmentation
and the training crop. A refactor must leave them as they are; a deliberate change (a new corpus
model, another resampler) updates the pins here and says so, because every corpus hash, trained
model and demo figure moves with them."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from speakerops.data import synthetic as syn
from speakerops.data.crop import random_crop

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf" / "augment"


def digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def test_synthetic_recordings_are_pinned(tmp_path: Path) -> None:
    spk = syn.make_speakers(3, seed=7)
    utts = [syn.synthesize_utterance(spk[1], 11, 0.8, 16000, ch) for ch in syn.CHANNELS]
    utts.append(syn.synthesize_utterance(spk[2], 3, 0.8, 8000))
    df = syn.generate_corpus(
        tmp_path, 3, 2, seed=1, min_duration_s=0.5, max_duration_s=0.8, progress=False
    )
    files = sorted((tmp_path / "wav").rglob("*.wav"))
    assert len(files) == len(df) == 6
    corpus = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    assert (digest(utts), corpus) == PINNED["synthetic"], (digest(utts), corpus)


def augment_digests() -> tuple[str, str]:
    """Digests of six training crops and their default augmentation (fixed seeds)."""
    root = OmegaConf.create({"features": {"sample_rate": 16000}})
    root.augment = OmegaConf.load(CONF / "default.yaml")
    pipe = instantiate(root.augment.pipeline)
    x = torch.sin(torch.arange(24000) * 0.05) * 0.1 + 0.01 * torch.randn(
        24000, generator=torch.Generator().manual_seed(0)
    )
    crops, outs = [], []
    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        crop = random_crop(x[: 9000 + 3000 * seed], 16000, g)
        crops.append(crop.numpy().copy())
        outs.append(pipe(crop.clone(), g)[0].numpy().copy())
    return digest(crops), digest(outs)


def test_default_augmentation_and_crop_are_pinned() -> None:
    """In a fresh interpreter at one torch thread, as every command runs: the convolutions'
    float reductions differ with the thread count and with what earlier tests left in the
    process (library state), so the bytes are those of a clean command-line run."""
    code = "from tests.test_pinned_bytes import augment_digests; print(*augment_digests())"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = tuple(proc.stdout.split()[-2:])
    assert got == PINNED["augment"], got


PINNED: dict[str, tuple[str, str]] = {
    "synthetic": ("10453dde613f796f", "a5a0631e185a67dc"),
    "augment": ("48f551361e3e6889", "9b2ba7bc3120ab21"),
}
