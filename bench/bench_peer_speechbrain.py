"""Peer comparison: speakerops' ECAPA-TDNN recipe beside SpeechBrain's ECAPA-TDNN, one process.

Both systems are trained on the same data for the same wall-clock budget, then both embed
LibriSpeech test-other and are scored on the same trial list with the same metric code:

- data: the `train` split of `data/prepared_librispeech/manifest.csv` (run
  `speakerops prepare experiment=librispeech_small` first); each system gets its own
  `speakerops` CropDataset with the same seed, so both see the same sequence of random 2 s
  crops with the same augmentation (real noise + simulated rooms of the recipe);
- features: speakerops' `Fbank` for both (80 log Mel, 25 ms / 10 ms, per-utterance mean
  normalization; SpeechBrain's VoxCeleb recipe uses its own `Fbank`, 80 log Mel in dB, with
  sentence-level mean `InputNormalization`: the same features up to a scale), and the recipe's SpecAugment for both (same settings; its masks
  come from the global RNG, so the same distribution but not the same draws);
- model: speakerops `ECAPATDNN(channels=C)` vs SpeechBrain
  `ECAPA_TDNN(input_size=80, channels=[C, C, C, C, 3C], lin_neurons=192)` with the same
  attention width and Res2Net scale (SpeechBrain's SE width is 128, as speakerops');
- loss: speakerops `AAMSoftmax(m, s)` vs SpeechBrain `Classifier` (cosine layer) +
  `LogSoftmaxWrapper(AdditiveAngularMargin(m, s))`, m and s from `conf/loss`; the margin warms
  up linearly over the same fraction of the budget for both (speakerops' recipe does so over
  `loss.margin_warmup_epochs`; SpeechBrain's constants are recomputed for each new margin);
- training loop: a plain PyTorch loop for both (SpeechBrain's `Brain` class is not used),
  AdamW with `optim.lr` / `optim.weight_decay`, linear warm-up over `optim.warmup_fraction` of
  the budget then cosine decay to 0 at the end of the budget, both as functions of each
  system's own training seconds, batch size and crop of the recipe;
- budget: `--budget-seconds` of training each, measured the same way (wall time of the
  training loop: loading, augmentation, features, forward, backward, step); the two trainings
  alternate in slices of `--slice-seconds` so that both see the same load on a shared machine;
  throughput = segments processed / training seconds;
- evaluation: full-utterance embeddings of the 100 test-other recordings, cosine scores on the
  trials of `speakerops.data.manifest.make_trials` (the same list as the prepared
  `trials_eval.csv`), `speakerops.eval.metrics.verification_metrics`; plus the EER on the
  calibration split (segments of held-out train-clean-100 readers: same-session, easy).

Without SpeechBrain installed it says so and exits 0 (`pip install --no-deps speechbrain
hyperpyyaml`, see the `[peer]` extra).

A reference row gives the EER of speakerops' model at its random initialization: with 10
test speakers and long recordings, pooled fbank statistics through random weights already
separate speakers somewhat, and early in training EER is worse than that; a budget that does
not beat the reference measures nothing but throughput. At 256 channels on 2 shared cores
600 s each (the default, ~25 min in all) gets speakerops past it; 240 s does not.

    .venv/bin/python bench/bench_peer_speechbrain.py [--budget-seconds 600] [overrides ...]
    e.g. ... --budget-seconds 300 model.channels=128
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn


def _speechbrain_missing() -> str | None:
    try:
        import speechbrain.lobes.models.ECAPA_TDNN  # noqa: F401
        import speechbrain.nnet.losses  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


@dataclass
class System:
    """One trainee: what it trains, how it embeds, and what it has consumed so far."""

    name: str
    backbone: nn.Module
    head: nn.Module
    loss_fn: object  # (embeddings [B, D], labels [B]) -> loss
    embed_fn: object  # features [B, T, F] -> embeddings [B, D]
    set_margin: object  # margin (float) -> None
    loader: object
    optimizer: torch.optim.Optimizer | None = None
    seconds: float = 0.0
    segments: int = 0
    steps: int = 0
    losses: list[float] = field(default_factory=list)
    _batches: object = None
    epoch: int = 0

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.backbone.parameters())

    @property
    def n_head_params(self) -> int:
        return sum(p.numel() for p in self.head.parameters())

    def next_batch(self):
        while True:
            if self._batches is None:
                self.epoch += 1
                self._batches = iter(self.loader())
            try:
                return next(self._batches)
            except StopIteration:
                self._batches = None


def set_sb_margin(aam, margin: float) -> None:
    """SpeechBrain's AdditiveAngularMargin precomputes its constants in __init__; redo them."""
    aam.margin = margin
    aam.cos_m, aam.sin_m = math.cos(margin), math.sin(margin)
    aam.th = math.cos(math.pi - margin)
    aam.mm = math.sin(math.pi - margin) * margin


def build_systems(cfg, n_classes: int, loaders) -> list[System]:
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper

    from speakerops.train.run import build_module

    torch.manual_seed(int(cfg.seed))
    module = build_module(cfg, n_classes)  # the recipe's backbone + AAM head
    ours_head = module.head

    def ours_loss(emb, labels):
        return ours_head(emb, labels)[0]

    def ours_margin(m: float) -> None:
        ours_head.margin = m

    c = int(cfg.model.channels)
    mfa = int(cfg.model.get("mfa_channels") or 3 * c)
    torch.manual_seed(int(cfg.seed))
    sb = ECAPA_TDNN(
        input_size=int(cfg.features.n_mels),
        channels=[c, c, c, c, mfa],
        attention_channels=int(cfg.model.attention_channels),
        res2net_scale=int(cfg.model.res2_scale),
        se_channels=128,
        lin_neurons=int(cfg.model.embedding_dim),
    )
    sb_head = Classifier(input_size=int(cfg.model.embedding_dim), out_neurons=n_classes)
    aam = AdditiveAngularMargin(
        margin=float(cfg.loss.head.margin), scale=float(cfg.loss.head.scale)
    )
    sb_loss_wrapper = LogSoftmaxWrapper(aam)

    def sb_loss(emb, labels):
        return sb_loss_wrapper(sb_head(emb.unsqueeze(1)), labels.unsqueeze(1))

    return [
        System(
            "speakerops",
            module.backbone,
            ours_head,
            ours_loss,
            module.backbone,
            ours_margin,
            loaders[0],
        ),
        System(
            "SpeechBrain",
            sb,
            sb_head,
            sb_loss,
            lambda feats: sb(feats).squeeze(1),
            lambda m: set_sb_margin(aam, m),
            loaders[1],
        ),
    ]


def lr_factor(fraction: float, warmup: float) -> float:
    """Linear warm-up over `warmup` of the budget, then cosine to 0 at its end."""
    if fraction < warmup:
        return (fraction + 1e-3) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (fraction - warmup) / max(1e-9, 1 - warmup))))


def train_slice(
    s: System,
    fbank: nn.Module,
    spec: nn.Module | None,
    budget: float,
    until: float,
    lr: float,
    warmup: float,
    margin: float,
    margin_warmup: float,
) -> None:
    """Train `s` until its training seconds reach `until` (capped at `budget`)."""
    s.backbone.train()
    s.head.train()
    if spec is not None:
        spec.train()
    last = time.perf_counter()
    while s.seconds < min(until, budget):
        frac = s.seconds / budget
        for g in s.optimizer.param_groups:
            g["lr"] = lr * lr_factor(frac, warmup)
        s.set_margin(margin * min(1.0, frac / margin_warmup) if margin_warmup > 0 else margin)
        wav, labels = s.next_batch()
        feats = fbank(wav)
        if spec is not None:
            feats = spec(feats)
        loss = s.loss_fn(s.embed_fn(feats), labels)
        s.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        s.optimizer.step()
        now = time.perf_counter()
        s.seconds += now - last
        last = now
        s.segments += len(labels)
        s.steps += 1
        s.losses.append(float(loss.detach()))


@torch.no_grad()
def embed_rows(s: System, fbank: nn.Module, rows, sample_rate: int) -> dict[str, np.ndarray]:
    from speakerops.data.audio import load_audio
    from speakerops.data.manifest import row_spans

    s.backbone.eval()
    out = {}
    for utt, path, (start, end) in zip(rows["utt_id"], rows["path"], row_spans(rows), strict=True):
        wav, _ = load_audio(path, sample_rate, start=start, end=end)
        out[str(utt)] = s.embed_fn(fbank(torch.from_numpy(wav)[None]))[0].numpy()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget-seconds", type=float, default=600.0, help="training seconds each")
    ap.add_argument("--slice-seconds", type=float, default=20.0, help="alternation slice")
    ap.add_argument("--experiment", default="librispeech_small")
    ap.add_argument("--out", default="artifacts/bench/peer_speechbrain.json")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.channels=128")
    args = ap.parse_args()

    missing = _speechbrain_missing()
    if missing:
        print(
            "bench_peer_speechbrain: SpeechBrain is not installed, nothing to compare "
            f"({missing}).\n  Install it without touching torch: "
            ".venv/bin/pip install --no-deps speechbrain hyperpyyaml  (or the [peer] extra)"
        )
        return 0

    from speakerops.core.config import compose
    from speakerops.data.manifest import make_trials, read_manifest, read_trials
    from speakerops.eval.metrics import eer, verification_metrics
    from speakerops.eval.scoring import cosine_scores
    from speakerops.models.features import Fbank, FeatureConfig
    from speakerops.train.run import build_datamodule

    cfg = compose([f"experiment={args.experiment}", *args.overrides])
    prepared = Path(cfg.data.prepared_dir)
    if not (prepared / "manifest.csv").is_file():
        print(
            f"bench_peer_speechbrain: {prepared}/manifest.csv not found: run "
            f"`speakerops prepare experiment={args.experiment}` first",
            file=sys.stderr,
        )
        return 2
    if cfg.augment.pipeline.get("speed"):
        print("bench_peer_speechbrain: speed perturbation (extra classes) is not supported here")
        return 2
    torch.manual_seed(int(cfg.seed))
    dms = []
    for _ in range(2):  # one data stream each, same seed: the same crops in the same order
        dm = build_datamodule(cfg)
        dm.num_workers = 0  # in-process loading for both, timed inside the training loop
        dm.setup("fit")
        dms.append(dm)
    n_classes = dms[0].num_classes
    systems = build_systems(cfg, n_classes, [dm.train_dataloader for dm in dms])
    fbank = Fbank(FeatureConfig(**cfg.features))
    spec_cfg = cfg.augment.get("spec_augment")
    from hydra.utils import instantiate

    specs = [instantiate(spec_cfg) if spec_cfg else None for _ in systems]
    for s in systems:
        s.optimizer = torch.optim.AdamW(
            list(s.backbone.parameters()) + list(s.head.parameters()),
            lr=float(cfg.optim.lr),
            weight_decay=float(cfg.optim.weight_decay),
        )

    # untimed warm-up: one forward/backward each (first-call allocations, thread pools)
    crop = int(float(cfg.data.loader.crop_seconds) * int(cfg.features.sample_rate))
    warm_wav = 0.1 * torch.randn(8, crop, generator=torch.Generator().manual_seed(0))
    warm_labels = torch.zeros(8, dtype=torch.long)
    for s in systems:
        s.loss_fn(s.embed_fn(fbank(warm_wav)), warm_labels).backward()
        s.optimizer.zero_grad(set_to_none=True)

    manifest = read_manifest(prepared / "manifest.csv")
    rate = int(cfg.features.sample_rate)
    t = cfg.data.trials
    ev_rows = manifest[manifest["split"] == "eval"]
    trials = make_trials(ev_rows, int(t.targets_per_utt), int(t.nontargets_per_utt), int(t.seed))
    labels = trials["label"].to_numpy()
    init = verification_metrics(
        cosine_scores(embed_rows(systems[0], fbank, ev_rows, rate), trials), labels
    )

    budget = float(args.budget_seconds)
    margin = float(cfg.loss.head.margin)
    margin_warmup = min(1.0, float(cfg.loss.margin_warmup_epochs) / float(cfg.trainer.max_epochs))
    load_before = os.getloadavg()
    n_train = len(dms[0].train_set.labels)  # manifest segments (an epoch = one pass)
    print(
        f"training both for {budget:.0f} s each on {n_train} segments of "
        f"{len(dms[0].speakers)} speakers (batch {cfg.data.loader.batch_size}, "
        f"crop {cfg.data.loader.crop_seconds} s, channels {cfg.model.channels}), "
        f"alternating every {args.slice_seconds:.0f} s; load average {load_before[0]:.1f}, "
        f"torch threads {torch.get_num_threads()}",
        flush=True,
    )
    until = 0.0
    while any(s.seconds < budget for s in systems):
        until += args.slice_seconds
        for s, spec in zip(systems, specs, strict=True):
            train_slice(
                s,
                fbank,
                spec,
                budget,
                until,
                float(cfg.optim.lr),
                float(cfg.optim.warmup_fraction),
                margin,
                margin_warmup,
            )
        print(
            "  "
            + "  ".join(
                f"{s.name}: {s.seconds:5.0f} s {s.steps:4d} steps loss {np.mean(s.losses[-5:]):.2f}"
                for s in systems
            ),
            flush=True,
        )
    load_after = os.getloadavg()

    pinned, pinned_sha = read_trials(prepared / "trials_eval.csv")
    same_list = trials[["enroll", "test", "label"]].reset_index(drop=True).equals(pinned)
    cal_trials, _ = read_trials(prepared / "trials_calibration.csv")
    cal_rows = manifest[manifest["split"] == "calibration"]
    results = []
    for s in systems:
        emb = embed_rows(s, fbank, ev_rows, rate)
        m = verification_metrics(cosine_scores(emb, trials), labels)
        cal_emb = embed_rows(s, fbank, cal_rows, rate)
        cal_eer = eer(cosine_scores(cal_emb, cal_trials), cal_trials["label"].to_numpy())
        results.append(
            {
                "system": s.name,
                "params": s.n_params,
                "head_params": s.n_head_params,
                "train_seconds": round(s.seconds, 1),
                "steps": s.steps,
                "segments": s.segments,
                "epochs": round(s.segments / n_train, 2),
                "segments_per_second": s.segments / s.seconds,
                "final_loss": float(np.mean(s.losses[-5:])),
                "eer_test_other": m["eer"],
                "min_dcf_0.01": m["min_dcf_0.01"],
                "min_dcf_0.05": m["min_dcf_0.05"],
                "eer_calibration_same_session": cal_eer,
            }
        )

    ours, sb = results
    hdr = (
        f"{'system':<12} {'params':>9} {'segments/s':>10} {'steps':>6} {'epochs':>6} "
        f"{'EER test-other':>14} {'minDCF0.01':>10} {'minDCF0.05':>10} {'EER cal*':>9}"
    )
    print(
        f"\ntest-other: {ev_rows['speaker'].nunique()} speakers, {len(ev_rows)} utterances, "
        f"{len(trials)} trials ({int(trials['label'].sum())} target), trial list "
        f"{'= prepared trials_eval.csv ' + pinned_sha[:12] if same_list else 'rebuilt (differs from trials_eval.csv)'}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        print(
            f"{r['system']:<12} {r['params']:>9,d} {r['segments_per_second']:>10.2f} "
            f"{r['steps']:>6d} {r['epochs']:>6.1f} {100 * r['eer_test_other']:>13.2f}% "
            f"{r['min_dcf_0.01']:>10.3f} {r['min_dcf_0.05']:>10.3f} "
            f"{100 * r['eer_calibration_same_session']:>8.2f}%"
        )

    print(
        f"{'(so at init)':<12} {ours['params']:>9,d} {'':>10} {0:>6d} {0:>6.1f} "
        f"{100 * init['eer']:>13.2f}% {init['min_dcf_0.01']:>10.3f} {init['min_dcf_0.05']:>10.3f}"
    )

    def ratio(k: str) -> float:
        return ours[k] / sb[k] if sb[k] else float("nan")

    print(
        f"{'ratio so/SB':<12} {ours['params'] / sb['params']:>9.2f} "
        f"{ratio('segments_per_second'):>10.2f} {'':>6} {'':>6} "
        f"{ratio('eer_test_other'):>14.2f} {ratio('min_dcf_0.01'):>10.2f} "
        f"{ratio('min_dcf_0.05'):>10.2f} {ratio('eer_calibration_same_session'):>9.2f}"
    )
    print(
        f"budget {budget:.0f} s of training each (same crops, augmentation, features, loss, "
        f"optimizer); load average {load_before[0]:.1f} -> {load_after[0]:.1f} on "
        f"{os.cpu_count()} CPUs. *calibration split: segments of one recording per reader "
        "(same-session), easier than real use. Figures from one seed and 10 test speakers: "
        "differences of a few EER points are within noise."
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "budget_seconds": budget,
                "overrides": args.overrides,
                "experiment": args.experiment,
                "eval_trials_sha256": pinned_sha if same_list else None,
                "load_average": [load_before[0], load_after[0]],
                "speakerops_at_init": init,
                "results": results,
            },
            indent=2,
        )
    )
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
