"""Model zoo: parameters, FLOPs and embedding real-time factor of every `conf/model/` option.

For each model, built from its conf file exactly as training builds it
(`compose(["model=<name>"])` + `speakerops.models.zoo.build_backbone`):
- parameters of the backbone;
- FLOPs of the backbone on the fbank features of 2 s of audio (197 frames), counted with
  `torch.utils.flop_counter.FlopCounterMode` (matmul/conv/bmm only, 1 multiply-add = 2 FLOPs;
  papers that quote thop "FLOPs" usually count multiply-adds: compare them with the GMAC column);
- real-time factor of embedding one utterance (`--seconds` of audio, batch 1, fbank + backbone,
  eval mode, no grad) = processing seconds / audio seconds, with torch threads = 1 and = all
  cores. After warm-up the models are timed in interleaved rounds (each round times every
  model once), so load changes on the machine hit all of them alike; the median over the rounds
  is reported, beside its ratio to ECAPA-TDNN C=512 (`model=ecapa512`) timed in the same rounds
  of the same process (the reference).

    .venv/bin/python bench/bench_models.py [--seconds 4] [--repeats 9] [--models edge resnet34]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

ZOO = ["ecapa_small", "ecapa512", "ecapa1024", "resnet34", "xvector", "campplus", "edge"]
REFERENCE = "ecapa512"


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def build(name: str):
    """(SpeakerEncoder in eval mode, composed config) for `conf/model/<name>.yaml`."""
    from speakerops.core.config import compose
    from speakerops.models.encoder import SpeakerEncoder
    from speakerops.models.features import FeatureConfig
    from speakerops.models.zoo import build_backbone

    cfg = compose([f"model={name}"])
    torch.manual_seed(0)
    encoder = SpeakerEncoder(build_backbone(cfg.model), FeatureConfig(**cfg.features))
    return encoder.eval(), cfg


def count_flops(encoder, seconds: float = 2.0) -> int:
    """FLOPs of the backbone on the features of `seconds` of audio."""
    wav = torch.randn(1, int(seconds * encoder.sample_rate)) * 0.1
    feats = encoder.fbank(wav)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encoder.backbone(feats)
    return int(counter.get_total_flops())


def time_rounds(encoders: dict, wav: torch.Tensor, threads: int, warmup: int, repeats: int):
    """Median seconds per embedding of `wav` for each model, timed in interleaved rounds."""
    torch.set_num_threads(threads)
    times: dict[str, list[float]] = {name: [] for name in encoders}
    with torch.inference_mode():
        for _ in range(warmup):
            for enc in encoders.values():
                enc(wav)
        for _ in range(repeats):
            for name, enc in encoders.items():
                start = time.perf_counter()
                enc(wav)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=ZOO, help=f"conf/model names (default: {ZOO})")
    ap.add_argument("--seconds", type=float, default=4.0, help="utterance length for the RTF")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    names = list(dict.fromkeys([REFERENCE, *args.models]))  # the reference always runs

    encoders, rows = {}, {}
    for name in names:
        encoder, cfg = build(name)
        encoders[name] = encoder
        rows[name] = {
            "class": type(encoder.backbone).__name__,
            "params": sum(p.numel() for p in encoder.backbone.parameters()),
            "flops": count_flops(encoder),
            "dim": encoder.embedding_dim,
        }

    cores = os.cpu_count() or 1
    wav = torch.randn(1, int(args.seconds * 16000)) * 0.1
    load_before = os.getloadavg()
    thread_settings = sorted({1, cores})
    spread = {}
    for threads in thread_settings:
        medians, raw = time_rounds(encoders, wav, threads, args.warmup, args.repeats)
        for name in names:
            rows[name][f"rtf{threads}"] = medians[name] / args.seconds
            rows[name][f"ratio{threads}"] = medians[name] / medians[REFERENCE]
            spread[(name, threads)] = max(raw[name]) / min(raw[name])
    load_after = os.getloadavg()

    print(
        f"CPU: {cpu_name()}, {cores} cores; torch {torch.__version__}; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(
        f"RTF: {args.seconds:g} s utterance, batch 1, fbank + backbone, median of "
        f"{args.repeats} interleaved rounds after {args.warmup} warm-up; "
        f"'x ref' = time / time of {REFERENCE} in the same rounds (lower is faster)"
    )
    print("FLOPs: backbone on 2 s of audio (197 frames), FlopCounterMode; GMAC = GFLOPs / 2\n")
    head = "| model (conf) | class | emb | params (M) | GFLOPs (2 s) | GMAC (2 s) |"
    rule = "|---|---|---:|---:|---:|---:|"
    for threads in thread_settings:
        head += f" RTF {threads} thr | x ref |"
        rule += "---:|---:|"
    print(head)
    print(rule)
    for name in names:
        r = rows[name]
        line = (
            f"| `{name}` | {r['class']} | {r['dim']} | {r['params'] / 1e6:.2f} | "
            f"{r['flops'] / 1e9:.2f} | {r['flops'] / 2e9:.2f} |"
        )
        for threads in thread_settings:
            line += f" {r[f'rtf{threads}']:.4f} | {r[f'ratio{threads}']:.2f} |"
        print(line)
    worst = max(spread.values())
    print(f"\nslowest/fastest round of any model: {worst:.2f}x (load noise indicator)")
    if max(load_before[0], load_after[0]) > cores - 1 and cores > 1:
        print(
            f"warning: load average above {cores - 1} on {cores} cores: other processes hold "
            f"cores, so the {cores}-thread timings measure contention (OpenMP threads waiting for "
            "each other), not the model; rerun on a quiet machine for them"
        )


if __name__ == "__main__":
    main()
