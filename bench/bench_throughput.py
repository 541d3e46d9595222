"""Training throughput (segments/s) and embedding real-time factor of the default model.

Each figure is printed beside a reference measured in the same process:
- training: the full Lightning step (augmentation in the DataLoader, fbank, SpecAugment,
  ECAPA, AAM-softmax, optimizer) vs a bare PyTorch loop over the same model on pre-cropped,
  un-augmented tensors (the cost floor of the model itself);
- embedding: `embed_files` (file decode, resample, fbank, model) vs the model on waveforms
  already in memory.
Real-time factor = processing seconds / audio seconds (lower is faster).

    .venv/bin/python bench/bench_throughput.py [--speakers 40] [--batches 20] [overrides ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from speakerops.train.run import Throughput


class WarmThroughput(Throughput):
    """`Throughput` that starts counting after the first `warmup` batches (worker start-up,
    allocator and thread-pool warm-up are not steady-state training)."""

    def __init__(self, warmup: int) -> None:
        super().__init__()
        self.warmup = warmup

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if trainer.global_step <= self.warmup:
            self.segments, self.seconds = 0, 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speakers", type=int, default=40)
    ap.add_argument("--utts", type=int, default=6)
    ap.add_argument("--batches", type=int, default=20, help="training batches to time")
    ap.add_argument("--warmup", type=int, default=3, help="untimed batches / files first")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.loader.num_workers=1")
    args = ap.parse_args()

    import pytorch_lightning as pl

    from speakerops.core.config import compose
    from speakerops.data.prepare import prepare
    from speakerops.eval.embed import embed_files
    from speakerops.models.encoder import SpeakerEncoder
    from speakerops.models.features import FeatureConfig
    from speakerops.train.run import build_datamodule, build_module

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose(
            [
                f"data.synthetic.n_speakers={args.speakers}",
                f"data.synthetic.utts_per_speaker={args.utts}",
                f"data.synthetic_dir={tmp}/syn",
                f"data.prepared_dir={tmp}/prep",
                *args.overrides,
            ]
        )
        prepare(cfg.data, progress=False)
        dm = build_datamodule(cfg)
        dm.setup("fit")
        module = build_module(cfg, dm.num_classes)
        meter = WarmThroughput(args.warmup)
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_steps=args.warmup + args.batches,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[meter],
        )
        trainer.fit(module, datamodule=dm)
        ours = meter.segments_per_second

        # reference: bare loop, same model and batch size, no augmentation / data loading
        ref_module = build_module(cfg, dm.num_classes)
        opt = torch.optim.AdamW(ref_module.parameters(), lr=1e-3)
        bs = int(cfg.data.loader.batch_size)
        crop = int(cfg.data.loader.crop_seconds * cfg.features.sample_rate)
        wav = torch.randn(bs, crop) * 0.1
        labels = torch.randint(0, dm.num_classes, (bs,))
        ref_module.train()
        for step in range(args.warmup + args.batches):
            if step == args.warmup:
                start = time.perf_counter()
            loss, _ = ref_module.head(ref_module(wav), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        ref = args.batches * bs / (time.perf_counter() - start)

        encoder = SpeakerEncoder(
            module.backbone,
            FeatureConfig(**cfg.features),
            OmegaConf.to_container(cfg.model, resolve=True),
        ).eval()
        manifest = __import__("pandas").read_csv(Path(tmp) / "prep" / "manifest.csv")
        paths = manifest["path"].tolist()[:60]
        audio_s = float(manifest["duration"].iloc[:60].sum())
        embed_files(encoder, paths[: args.warmup], progress=False)  # warm-up, untimed
        start = time.perf_counter()
        embed_files(encoder, paths, progress=False)
        rtf_ours = (time.perf_counter() - start) / audio_s
        from speakerops.data.audio import load_audio

        waves = [torch.from_numpy(load_audio(p, 16000)[0])[None] for p in paths]
        with torch.no_grad():
            for w in waves[: args.warmup]:
                encoder(w)
        start = time.perf_counter()
        with torch.no_grad():
            for w in waves:
                encoder(w)
        rtf_ref = (time.perf_counter() - start) / audio_s

    n_params = sum(p.numel() for p in module.backbone.parameters())
    print(
        f"default model: {cfg.model.arch} channels={cfg.model.channels} ({n_params / 1e6:.2f} M parameters), torch threads={torch.get_num_threads()}"
    )
    print(f"{'measure':34s} {'speakerops':>12s} {'reference':>12s} {'ratio':>7s}")
    print(
        f"{'training segments/s (2 s crops)':34s} {ours:12.1f} {ref:12.1f} {ours / ref:7.2f}   reference: bare PyTorch loop, no augmentation/loading"
    )
    print(
        f"{'embedding real-time factor':34s} {rtf_ours:12.4f} {rtf_ref:12.4f} {rtf_ours / rtf_ref:7.2f}   reference: model on in-memory waveforms"
    )
    print(
        f"embedding speed: {1 / rtf_ours:.0f}x real time ({audio_s:.0f} s of audio, {len(paths)} files)"
    )


if __name__ == "__main__":
    np.random.seed(0)
    main()
