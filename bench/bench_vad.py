"""Benchmark: the product's VAD (``data/vad.py``: silero's 16 kHz sequence export through
onnxruntime) beside the path it replaced (the wheel's TorchScript model run as batched 1 s
streams with 1 s warm-up), side by side in one process, one thread.

On LibriSpeech utterances cut to 3 s and 10 s it prints both costs, their ratio, and each
path's largest difference from running silero window by window (the exact result).

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


def _window_by_window(onnx: object, wav: np.ndarray) -> np.ndarray:
    onnx.reset_states()
    out = []
    for i in range(0, wav.size, 512):
        chunk = np.zeros(512, np.float32)
        chunk[: wav[i : i + 512].size] = wav[i : i + 512]
        out.append(float(onnx(torch.from_numpy(chunk), 16000)))
    return np.asarray(out)


def _timed(fn, repeats: int) -> tuple[float, np.ndarray]:
    out = fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - t0) / repeats, out


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
    jit = vad.silero_vad.load_silero_vad(onnx=False)
    onnx = vad.silero_vad.load_silero_vad(onnx=True)
    print(f"{'s':>3} {'files':>5} {'replaced ms':>11} {'product ms':>10} {'ratio':>6} "
          f"{'replaced max|dp|':>16} {'product max|dp|':>15}")  # fmt: skip
    for seconds in (3, 10):
        t_old = t_new = d_old = d_new = 0.0
        n = 0
        for f in files:
            wav, rate = sf.read(f, dtype="float32")
            if rate != 16000 or wav.size < seconds * rate:
                continue
            wav = wav[: seconds * rate]
            exact = _window_by_window(onnx, wav)
            a, p_old = _timed(lambda w=wav: vad.stream_probabilities(jit, w, 16000), args.repeats)
            b, p_new = _timed(lambda w=wav: vad.speech_probabilities(w, 16000), args.repeats)
            t_old, t_new, n = t_old + a, t_new + b, n + 1
            d_old = max(d_old, float(np.abs(p_old - exact).max()))
            d_new = max(d_new, float(np.abs(p_new - exact).max()))
        if n:
            print(
                f"{seconds:>3} {n:>5} {1000 * t_old / n:>11.1f} {1000 * t_new / n:>10.1f} "
                f"{t_old / t_new:>6.1f} {d_old:>16.1e} {d_new:>15.1e}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
