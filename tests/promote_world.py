"""A tiny, real promotion world for tests: speech corpus, prepared data, models, MLflow store.

- Corpus: studio-channel synthetic speakers (`speakerops.data.synthetic`, public API) in the
  folder-per-speaker layout with `speakers.csv` metadata, prepared by the real `prepare`.
- Models: real `SpeakerEncoder`s (ECAPA-TDNN). ``random_encoder``: untrained weights;
  ``lda_encoder``: the same architecture whose pooling BatchNorm and embedding layer are
  fitted in closed form on the training split (LDA on the pooled statistics: between- vs
  within-speaker scatter), a genuinely better model trained in about a second.
- Registration goes through the real stages: `evaluate(cfg)` (AS-norm cohort, calibration
  fitted on the calibration split, metrics, plots, MLflow) then `register(cfg)`.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from omegaconf import OmegaConf

from .conftest import REPO

SR = 16000


def write_corpus(
    root: Path,
    n_speakers: int,
    utts: int,
    seed: int = 0,
    degrade: dict | None = None,
    only_speakers: set[str] | None = None,
) -> Path:
    """`root/<speaker>/<utt>.wav` + `root/speakers.csv`; every recording through the studio
    channel, ``degrade`` (the generator's hook) applied to the speakers it names. With
    ``only_speakers`` only their files are (re)written."""
    from speakerops.data.synthetic import make_speakers, synthesize_utterance

    root.mkdir(parents=True, exist_ok=True)
    speakers = make_speakers(n_speakers, seed)
    rows = []
    for si, spk in enumerate(speakers):
        meta = spk.metadata()
        rows.append({**meta, "channel": "studio"})
        if only_speakers is not None and meta["speaker"] not in only_speakers:
            continue
        rng = np.random.default_rng([seed, si])
        for k in range(utts):
            dur = round(float(rng.uniform(1.5, 2.0)), 2)
            wav = synthesize_utterance(
                spk, 10_000 * si + k, dur, SR, channel="studio", degrade=degrade
            )
            path = root / meta["speaker"] / f"{meta['speaker']}-{k:02d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), wav, SR, subtype="PCM_16")
    pd.DataFrame(rows).to_csv(root / "speakers.csv", index=False)
    return root


def make_cfg(project: Path, prepared: Path, corpus: Path, **overrides):
    """The composed config of the repo's conf/, pointed at this project."""
    from speakerops.core.config import compose

    items = [
        "data=folder",
        f"data.root={corpus}",
        f"data.prepared_dir={prepared}",
        "data.calibration_fraction=0.2",
        "data.eval_fraction=0.3",
        "data.workers=1",
        "data.trials.targets_per_utt=3",
        "data.trials.nontargets_per_utt=12",
        f"paths.registry_dir={project / 'registry'}",
        f"paths.artifacts_dir={project / 'artifacts'}",
        "evaluate.scoring.top_n=20",
        "evaluate.bootstrap.n=120",
        "evaluate.bias.min_trials=40",
        "evaluate.bias.min_targets=15",
        "evaluate.bias.min_nontargets=15",
        f"register.policy={project / 'policy.yaml'}",
    ]
    items += [f"{k}={v}" for k, v in overrides.items()]
    return compose(items)


def random_encoder(channels: int = 32, emb: int = 32, seed: int = 0):
    import torch
    from hydra.utils import instantiate

    from speakerops.models.encoder import SpeakerEncoder
    from speakerops.models.features import FeatureConfig

    cfg = {
        "_target_": "speakerops.models.ecapa.ECAPATDNN",
        "n_mels": 80,
        "channels": channels,
        "embedding_dim": emb,
        "attention_channels": 16,
        "res2_scale": 4,
    }
    torch.manual_seed(seed)
    return SpeakerEncoder(instantiate(cfg), FeatureConfig(), cfg).eval()


def lda_encoder(manifest: pd.DataFrame, channels: int = 64, emb: int = 32, seed: int = 0):
    """ECAPA with random convolutions whose pooling BN statistics and embedding layer are
    fitted on the training split: W = top-`emb` generalized eigenvectors of (S_b, S_w)."""
    import torch
    from scipy.linalg import eigh

    from speakerops.data.audio import load_audio

    enc = random_encoder(channels, emb, seed)
    bb = enc.backbone
    train = manifest[manifest["split"] == "train"].sort_values("utt_id")
    pooled = []
    with torch.no_grad():
        for path in train["path"]:
            feats = enc.fbank(torch.from_numpy(load_audio(path, SR)[0])[None])
            x = bb.stem(feats.transpose(1, 2))
            outs = []
            for block in bb.blocks:
                x = block(x)
                outs.append(x)
            pooled.append(bb.pool(bb.mfa(torch.cat(outs, dim=1)))[0].numpy())
    X = np.stack(pooled).astype(np.float64)
    mu, var = X.mean(0), X.var(0) + 1e-5
    Z = (X - mu) / np.sqrt(var)
    spk = train["speaker"].to_numpy()
    sw = np.zeros((Z.shape[1], Z.shape[1]))
    sb = np.zeros_like(sw)
    for s in np.unique(spk):
        z = Z[spk == s]
        m = z.mean(0)
        sw += (z - m).T @ (z - m)
        sb += len(z) * np.outer(m, m)
    sw = sw / len(Z) + 1e-3 * np.trace(sw / len(Z)) / len(sw) * np.eye(len(sw))
    _, vecs = eigh(sb / len(Z), sw)
    W = vecs[:, ::-1][:, :emb].T.copy()
    with torch.no_grad():
        bb.pool_bn.running_mean.copy_(torch.from_numpy(mu).float())
        bb.pool_bn.running_var.copy_(torch.from_numpy(var - 1e-5).float())
        bb.embedding.weight.copy_(torch.from_numpy(W).float())
        bb.embedding.bias.zero_()
    return enc.eval()


def register_model(cfg, encoder, tag: str, overconfidence: float = 1.0) -> dict:
    """Evaluate + register an encoder through the real stages; returns registered.json.

    ``overconfidence`` multiplies the fitted calibration (a and b) before packaging: the very
    same scores and the same decisions at θ = 0, but LLRs k times too confident."""
    from speakerops.core.mlflow import client, ensure_experiment
    from speakerops.eval.evaluate import evaluate
    from speakerops.registry.register import register

    base = Path(cfg.paths.artifacts_dir) / tag
    cfg = OmegaConf.merge(
        cfg,
        {
            "train": {"out_dir": str(base / "train")},
            "evaluate": {"out_dir": str(base / "eval")},
            "register": {"out_dir": str(base / "register")},
        },
    )
    Path(cfg.train.out_dir).mkdir(parents=True, exist_ok=True)
    encoder.save(Path(cfg.train.out_dir) / "encoder.safetensors")
    exp_id = ensure_experiment(cfg.mlflow.experiment, cfg.paths.registry_dir)
    run = client(cfg.paths.registry_dir).create_run(exp_id, run_name=tag)
    (Path(cfg.train.out_dir) / "train.json").write_text(json.dumps({"run_id": run.info.run_id}))
    evaluate(cfg, progress=False)
    if overconfidence != 1.0:
        path = Path(cfg.evaluate.out_dir) / "calibration.json"
        cal = json.loads(path.read_text())
        cal["a"] *= overconfidence
        cal["b"] *= overconfidence
        path.write_text(json.dumps(cal))
    return register(cfg)


def cli(*argv: str) -> tuple[int, str, str]:
    """`speakerops <argv>` in process: (exit code, stdout, stderr)."""
    from speakerops.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


UNTRAINED_POLICY = """
operating_point: {p_target: 0.5}
require_champion: false
absolute:
  eer: {max: 0.5}
relative:
  eer: {margin: 1.0}
"""  # a gate that untrained or imported-on-synthetic models pass: the story, not the figures

LAX_POLICY = """
operating_point: {p_target: 0.5}
require_champion: false
absolute:
  eer: {max: 0.45}
relative:
  eer: {margin: 0.5}
"""


def two_model_world(
    root: Path, extra: dict[str, str] | None = None, n_speakers: int = 40, utts: int = 3
) -> tuple[Path, dict[str, dict]]:
    """Speakers prepared, two LDA-fitted encoders registered as v1 and v2 under
    :data:`LAX_POLICY` (both pass it); returns the composed params.yaml and registered.json's."""
    import torch

    from speakerops.data.manifest import read_manifest
    from speakerops.data.prepare import prepare

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        (root / "policy.yaml").write_text(LAX_POLICY)
        corpus = write_corpus(root / "corpus", n_speakers, utts)
        cfg = make_cfg(root, root / "prepared", corpus, **(extra or {}))
        prepare(cfg.data, progress=False)
        manifest = read_manifest(root / "prepared" / "manifest.csv")
        reg = {
            f"v{i + 1}": register_model(cfg, lda_encoder(manifest, seed=i), f"v{i + 1}")
            for i in range(2)
        }
    finally:
        torch.set_num_threads(threads)
    params = root / "params.yaml"
    OmegaConf.save(cfg, params, resolve=True)
    return params, reg


def write_policy(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def copy_corpus(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


__all__ = ["REPO"]
