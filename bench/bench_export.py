"""Exported models: onnxruntime vs PyTorch real-time factor at 1 thread, side by side.

For each zoo model (`conf/model/<name>.yaml`, full size, random weights: speed does not depend
on them) the encoder is exported to ONNX (`speakerops.models.export`, front end inside the
graph) and the same 4 s of real speech (LibriSpeech test-other from ../shared/data; a seeded
noise signal when it is absent) is embedded by the PyTorch encoder (front end + backbone, eval,
no grad) and by an onnxruntime session (CPU provider, intra/inter-op threads 1), in
interleaved rounds after warm-up; the median RTF (processing seconds / audio seconds) of each
is printed with their ratio and the max abs difference of the two embeddings. Models that
cannot export (windowed GE2E) are listed with the reason.

    .venv/bin/python bench/bench_export.py [--seconds 4] [--repeats 9] [--models ecapa512 edge]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import soundfile as sf
import torch
from omegaconf import OmegaConf

from speakerops.core.config import compose, conf_options
from speakerops.models.encoder import SpeakerEncoder
from speakerops.models.export import ExportError, export_encoder
from speakerops.models.features import FeatureConfig
from speakerops.models.zoo import build_backbone

FEATURES = {"ecapa_speechbrain": "sb_fbank80", "ge2e": "mel40_power"}  # their own front ends
SPEECH = Path("../shared/data/librispeech/test-other/3005/3005-163389-0005.flac")


def build(name: str) -> SpeakerEncoder:
    overrides = [f"model={name}"] + ([f"features={FEATURES[name]}"] if name in FEATURES else [])
    cfg = compose(overrides)
    torch.manual_seed(0)
    features = FeatureConfig(**OmegaConf.to_container(cfg.features, resolve=True))
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    return SpeakerEncoder(build_backbone(cfg.model), features, model_cfg).eval()


def audio(seconds: float) -> tuple[np.ndarray, str]:
    if SPEECH.is_file():
        wav, rate = sf.read(str(SPEECH), dtype="float32")
        return wav[: int(seconds * rate)], f"LibriSpeech {SPEECH.name}"
    rng = np.random.default_rng(0)
    return (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), "seeded noise"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--models", nargs="*", default=None, help="default: every conf/model option")
    args = ap.parse_args()
    torch.set_num_threads(1)
    wav, source = audio(args.seconds)
    x = torch.from_numpy(wav)[None]
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    runners, skipped, diffs = {}, {}, {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    for name in args.models or conf_options("model"):
        enc = build(name)
        try:
            path = export_encoder(enc, "onnx", tmp / f"{name}.onnx")["path"]
        except ExportError as exc:
            skipped[name] = str(exc)
            continue
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

        def torch_run(enc=enc):
            with torch.no_grad():
                return enc(x).numpy()

        def ort_run(session=session):
            return session.run(None, {"wav": x.numpy()})[0]

        diffs[name] = float(np.abs(torch_run() - ort_run()).max())
        runners[name] = (torch_run, ort_run)
    times: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in runners}
    for _ in range(2):  # warm-up
        for pt, rt in runners.values():
            pt(), rt()
    for _ in range(args.repeats):  # interleaved rounds: load changes hit every model alike
        for name, (pt, rt) in runners.items():
            for run, out in zip((pt, rt), times[name], strict=True):
                t = time.perf_counter()
                run()
                out.append((time.perf_counter() - t) / args.seconds)
    print(f"{args.seconds:g} s of {source}, batch 1, 1 thread, median of {args.repeats} rounds")
    print(f"{'model':<18} {'PyTorch RTF':>12} {'ONNX RTF':>10} {'ONNX/PT':>8} {'max abs diff':>13}")
    for name, (pt, rt) in times.items():
        a, b = statistics.median(pt), statistics.median(rt)
        print(f"{name:<18} {a:>12.4f} {b:>10.4f} {b / a:>8.2f} {diffs[name]:>13.1e}")
    for name, why in skipped.items():
        print(f"{name:<18} not exported: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
