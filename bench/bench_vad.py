"""Benchmark: the product's VAD on silero's ONNX model (what ``data/vad.py`` runs) beside the
wheel's TorchScript copy of the same weights (the reference), side by side in one process.

Times ``speech_probabilities`` (the batched-stream pass every request, ``embed`` and
evaluation make) on LibriSpeech utterances cut to 3 s and 10 s, one thread, and prints both
costs, their ratio and the largest probability difference.

    .venv/bin/python bench/bench_vad.py [--files 5] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from speakerops.data import vad

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _time(model: object, wav: np.ndarray, rate: int, repeats: int) -> tuple[float, np.ndarray]:
    vad._local.model = model
    probs = vad.speech_probabilities(wav, rate)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        probs = vad.speech_probabilities(wav, rate)
    return (time.perf_counter() - t0) / repeats, probs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    files = sorted(SHARED.glob("**/*.flac"))[: args.files]
    if not files:
        print(f"no LibriSpeech .flac under {SHARED}: nothing to measure")
        return 1
    onnx = vad.silero_vad.load_silero_vad(onnx=True)
    jit = vad.silero_vad.load_silero_vad(onnx=False)
    print(
        f"{'seconds':>7} {'files':>5} {'torchscript ms':>14} {'onnx ms':>8} {'ratio':>6} {'max |dp|':>9}"
    )
    for seconds in (3, 10):
        t_jit = t_onnx = diff = 0.0
        n = 0
        for f in files:
            wav, rate = sf.read(f, dtype="float32")
            if wav.size < seconds * rate:
                continue
            wav = wav[: seconds * rate]
            a, pa = _time(jit, wav, rate, args.repeats)
            b, pb = _time(onnx, wav, rate, args.repeats)
            t_jit, t_onnx, n = t_jit + a, t_onnx + b, n + 1
            diff = max(diff, float(np.abs(pa - pb).max()))
        if n:
            print(
                f"{seconds:>7} {n:>5} {1000 * t_jit / n:>14.1f} {1000 * t_onnx / n:>8.1f} "
                f"{t_jit / t_onnx:>6.1f} {diff:>9.1e}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
