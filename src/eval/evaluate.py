"""The `evaluate` stage: embeddings -> cosine scores -> calibration -> metrics, plots, MLflow.

Calibration is fitted on the calibration split's trials and applied to the eval trials.
Outputs in `evaluate.out_dir`: `metrics.json` (DVC metrics), `scores_eval.csv`,
`calibration.json`, `embeddings.npz` (eval + calibration utterances, for the drift
reference), `det.png`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from speakerops.data.manifest import make_trials, read_manifest, read_trials
from speakerops.eval.calibration import LinearCalibration
from speakerops.eval.embed import EmbeddingBatch, embed_files
from speakerops.eval.metrics import verification_metrics
from speakerops.eval.plots import det_plot
from speakerops.eval.scoring import cosine_scores
from speakerops.models.encoder import SpeakerEncoder


def embed_split(
    encoder: SpeakerEncoder, manifest: pd.DataFrame, utt_ids: set[str], desc: str, progress: bool
) -> EmbeddingBatch:
    rows = manifest[manifest["utt_id"].isin(utt_ids)]
    batch = embed_files(encoder, rows["path"].tolist(), rows["utt_id"].tolist(), progress, desc)
    if batch.failures:
        raise ValueError(
            f"{len(batch.failures)} prepared files failed to load, e.g. {batch.failures[0]}"
        )
    return batch


def score_trials(
    encoder: SpeakerEncoder, manifest: pd.DataFrame, trials: pd.DataFrame, desc: str, progress: bool
) -> tuple[np.ndarray, EmbeddingBatch]:
    batch = embed_split(
        encoder, manifest, set(trials["enroll"]) | set(trials["test"]), desc, progress
    )
    return cosine_scores(batch.as_dict(), trials), batch


def evaluate(cfg: DictConfig, progress: bool = True) -> dict:
    """Run the stage; returns the metrics written to `metrics.json`."""
    out = Path(cfg.evaluate.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prepared = Path(cfg.data.prepared_dir)
    encoder = SpeakerEncoder.load(Path(cfg.train.out_dir) / "encoder.pt")
    manifest = read_manifest(prepared / "manifest.csv")
    eval_trials, eval_sha = read_trials(prepared / "trials_eval.csv")
    cal_trials, cal_sha = read_trials(prepared / "trials_calibration.csv")

    cal_scores, cal_batch = score_trials(
        encoder, manifest, cal_trials, "embedding calibration split", progress
    )
    eval_scores, eval_batch = score_trials(
        encoder, manifest, eval_trials, "embedding eval split", progress
    )
    calibration = LinearCalibration().fit(cal_scores, cal_trials["label"].to_numpy())
    llrs = calibration.transform(eval_scores)
    labels = eval_trials["label"].to_numpy()
    metrics = verification_metrics(
        eval_scores, labels, llrs, p_targets=tuple(cfg.evaluate.p_targets)
    )
    metrics = {k: float(v) for k, v in metrics.items()}
    summary = {
        **metrics,
        "n_trials": int(len(eval_trials)),
        "n_target": int(labels.sum()),
        "trials_sha256": eval_sha,
        "calibration_trials_sha256": cal_sha,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    (out / "calibration.json").write_text(json.dumps(calibration.to_dict(), indent=2))
    eval_trials.assign(score=eval_scores, llr=llrs).to_csv(out / "scores_eval.csv", index=False)
    np.savez(
        out / "embeddings.npz",
        utt_id=np.array(cal_batch.utt_ids + eval_batch.utt_ids),
        embedding=np.concatenate([cal_batch.embeddings, eval_batch.embeddings]),
    )
    det_plot({"eval": (eval_scores, labels)}, out / "det.png", "DET: held-out eval speakers")
    _log_to_mlflow(cfg, summary, out)
    return summary


def _log_to_mlflow(cfg: DictConfig, summary: dict, out: Path) -> None:
    """Metrics (prefixed `eval_`) and figures onto the training run."""
    train_json = Path(cfg.train.out_dir) / "train.json"
    if not train_json.is_file():
        return
    from mlflow.tracking import MlflowClient

    from speakerops.registry import tracking

    run_id = json.loads(train_json.read_text())["run_id"]
    client = MlflowClient(tracking.tracking_uri(cfg.paths.registry_dir))
    for key, value in summary.items():
        if isinstance(value, float):
            client.log_metric(run_id, f"eval_{key}", value)
    client.set_tag(run_id, "eval_trials_sha256", summary["trials_sha256"])
    for name in ("metrics.json", "calibration.json", "det.png"):
        client.log_artifact(run_id, str(out / name), "eval")


def evaluate_corpus(
    encoder: SpeakerEncoder,
    corpus: str,
    root: str | Path,
    trials_per_utt: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """EER/minDCF of `encoder` on every speaker of an external corpus (e.g. LibriSpeech test-other)."""
    from omegaconf import OmegaConf

    from speakerops.data.prepare import build_manifest

    with tempfile.TemporaryDirectory() as tmp:
        data = OmegaConf.create(
            {
                "corpus": corpus,
                "root": str(root),
                "min_duration": 0.5,
                "calibration_fraction": 0.0,
                "eval_fraction": 1.0,
                "split_seed": seed,
                "workers": 2,
                "prepared_dir": tmp,
            }
        )
        manifest, quarantine = build_manifest(data, progress)
    trials = make_trials(manifest, trials_per_utt, trials_per_utt, seed)
    scores, _ = score_trials(encoder, manifest, trials, f"embedding {corpus}", progress)
    metrics = verification_metrics(scores, trials["label"].to_numpy())
    return {
        **{k: float(v) for k, v in metrics.items()},
        "n_speakers": int(manifest["speaker"].nunique()),
        "n_utterances": int(len(manifest)),
        "n_trials": int(len(trials)),
        "n_quarantined": int(len(quarantine)),
    }


def run_baseline(cfg: DictConfig) -> dict:
    """The mean-MFCC cosine baseline on the same eval trial list -> `baseline/metrics.json`."""
    from speakerops.eval.baseline import mean_mfcc_embeddings

    prepared = Path(cfg.data.prepared_dir)
    out = Path(cfg.paths.artifacts_dir) / "baseline"
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(prepared / "manifest.csv")
    trials, sha = read_trials(prepared / "trials_eval.csv")
    rows = manifest[manifest["utt_id"].isin(set(trials["enroll"]) | set(trials["test"]))]
    emb = mean_mfcc_embeddings(rows["path"].tolist(), int(cfg.features.sample_rate))
    scores = cosine_scores(dict(zip(rows["utt_id"], emb, strict=True)), trials)
    metrics = verification_metrics(
        scores, trials["label"].to_numpy(), p_targets=tuple(cfg.evaluate.p_targets)
    )
    summary = {
        "system": "mean-MFCC (20 coefficients, no CMN) + cosine",
        **{k: float(v) for k, v in metrics.items()},
        "trials_sha256": sha,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary
