"""The `evaluate` stage: read the prepared data and the trained encoder, write the figures.

embeddings -> scores (cosine, or AS-norm against a cohort of training-speaker means) ->
calibration fitted on the calibration split's trials (linear, or quality-aware with a
duration term) and applied to the eval trials -> the assessment
(:func:`speakerops.eval.assess.assess`: metrics with speaker-bootstrap intervals, per-group
bias at the shipped threshold) -> plots -> MLflow. Every setting comes from the composed
config (`evaluate:`) and the policy's operating point.

Outputs in `evaluate.out_dir`: `metrics.json` (DVC metrics; flat), `evaluation.json` (every
figure with its interval, the per-group tables), `scores_eval.csv` (trial utterances as keyed
pseudonyms), `calibration.json`, `scoring.json` (normalization settings) with `cohort.enc`
(the AS-norm cohort, encrypted and bound to the encoder's weights), `embeddings.enc` (eval +
calibration utterances, encrypted: the drift reference), `det.png`, `calibration.png`,
`bias.png`. Biometric data at rest: :mod:`speakerops.eval.sealed` (the keyring of
`keys.keyring` / `paths.registry_dir`).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from speakerops.core.jsonio import dumps
from speakerops.core.keys import Keyring, keyring_from_cfg
from speakerops.core.mlflow import client as store_client
from speakerops.core.policy import operating_point
from speakerops.data.manifest import make_trials, read_manifest, read_trials
from speakerops.data.prepare import build_manifest
from speakerops.data.quality import QualitySettings
from speakerops.eval.assess import AssessSettings, assess
from speakerops.eval.baseline import mean_mfcc_embeddings
from speakerops.eval.calibration import LinearCalibration, QualityCalibration, log_min_duration
from speakerops.eval.cohort import select_cohort_speakers, speaker_means
from speakerops.eval.embed import EmbeddingBatch, embed_rows
from speakerops.eval.metrics import verification_metrics
from speakerops.eval.plots import bias_plot, calibration_plot, det_plot
from speakerops.eval.scoring import (
    ScoreNormalization,
    Scorer,
    cosine_scores,
    system_scores,
)
from speakerops.eval.sealed import (
    load_sealed_scoring,
    pseudonymise_ids,
    weights_binding,
    write_eval_embeddings,
    write_scoring,
)
from speakerops.eval.trials import TrialSet, load_trial_set
from speakerops.models.encoder import FILENAME, SpeakerEncoder

__all__ = [
    "embed_cohort",
    "embed_split",
    "evaluate",
    "evaluate_corpus",
    "load_score_normalization",
    "run_baseline",
    "score_trials",
]


# --------------------------------------------------------------------------- embedding


def embed_split(
    encoder: SpeakerEncoder,
    manifest: pd.DataFrame,
    utt_ids: set[str],
    desc: str,
    progress: bool,
    quality: QualitySettings | None = None,
    refused: list[tuple[str, str]] | None = None,
) -> EmbeddingBatch:
    """Embeddings of the manifest's ``utt_ids`` (each row's segment when the corpus is
    segmented); a file that fails to load is an error naming it (prepare already quarantined
    the bad ones).

    With ``quality`` each utterance passes the input checks first: a refused utterance is an
    error too (nothing is scored on audio too short or too poor), unless ``refused`` is a
    list, which then receives (utt_id, reason) and the utterance is embedded anyway
    (``quality.evaluation: report``)."""
    rows = manifest[manifest["utt_id"].isin(utt_ids)]
    batch = embed_rows(encoder, rows, progress, desc, quality)
    if batch.failures and refused is not None:
        retry = rows[rows["utt_id"].astype(str).isin(batch.failed_utt_ids)]
        again = embed_rows(encoder, retry, False, desc)
        if not again.failures:
            refused.extend(
                (u, r) for u, (_, r) in zip(batch.failed_utt_ids, batch.failures, strict=True)
            )
            merged = {
                u: (p, e, d, r)
                for b in (batch, again)
                for u, p, e, d, r in zip(
                    b.utt_ids, b.paths, b.embeddings, b.durations, b.sample_rates, strict=True
                )
            }
            order = [u for u in rows["utt_id"].astype(str) if u in merged]
            batch = EmbeddingBatch(
                utt_ids=order,
                paths=[merged[u][0] for u in order],
                embeddings=np.stack([merged[u][1] for u in order]).astype(np.float32),
                durations=[merged[u][2] for u in order],
                sample_rates=[merged[u][3] for u in order],
            )
    if batch.failures:
        shown = "; ".join(reason for _, reason in batch.failures[:3])
        raise ValueError(
            f"{desc}: {len(batch.failures)} of {len(rows)} trial utterances failed to load or "
            f"were refused by the input checks, so none is scored: {shown}"
        )
    return batch


def score_trials(
    encoder: SpeakerEncoder, manifest: pd.DataFrame, trials: pd.DataFrame, desc: str, progress: bool
) -> tuple[np.ndarray, EmbeddingBatch]:
    """Cosine scores of a trial list (embedding each utterance once)."""
    batch = embed_split(
        encoder, manifest, set(trials["enroll"]) | set(trials["test"]), desc, progress
    )
    return cosine_scores(batch.as_dict(), trials), batch


def embed_cohort(
    encoder: SpeakerEncoder,
    manifest: pd.DataFrame,
    utts_per_speaker: int,
    max_speakers: int,
    seed: int,
    progress: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """The AS-norm cohort of the training split: the unit-norm mean embedding of each
    training speaker (its first ``utts_per_speaker`` utterances by id; at most
    ``max_speakers`` seeded speakers, :func:`speakerops.eval.cohort.select_cohort_speakers`)."""
    train = manifest[manifest["split"] == "train"]
    n_train = train["speaker"].nunique()
    if n_train < 2:
        raise ValueError(
            f"AS-norm needs a cohort of training speakers: the manifest's train split has "
            f"{n_train}; use evaluate.scoring.method=cosine"
        )
    speakers = select_cohort_speakers(
        train["speaker"].astype(str).to_numpy(), int(max_speakers), np.random.default_rng(seed)
    )
    rows = (
        train[train["speaker"].astype(str).isin(speakers)]
        .sort_values(["speaker", "utt_id"])
        .groupby("speaker", sort=True)
        .head(int(utts_per_speaker))
    )
    batch = embed_split(encoder, rows, set(rows["utt_id"]), "embedding AS-norm cohort", progress)
    spk_of = dict(zip(rows["utt_id"], rows["speaker"].astype(str), strict=True))
    return speaker_means(batch.embeddings, [spk_of[u] for u in batch.utt_ids])


# --------------------------------------------------------------------------- the stage


def _normalization(
    cfg: DictConfig, encoder: SpeakerEncoder, manifest: pd.DataFrame, progress: bool
) -> ScoreNormalization:
    sc = cfg.evaluate.scoring
    if sc.method == "asnorm":
        cohort, cohort_spk = embed_cohort(
            encoder,
            manifest,
            sc.cohort_utts_per_speaker,
            sc.cohort_max_speakers,
            cfg.seed,
            progress,
        )
        return ScoreNormalization("asnorm", int(sc.top_n), cohort, cohort_spk)
    return ScoreNormalization(str(sc.method))


def _calibrate(
    kind: str, scores: np.ndarray, trials: TrialSet, p_eff: float
) -> LinearCalibration | QualityCalibration:
    y = trials.labels
    if kind == "linear":
        return LinearCalibration(p_eff=p_eff).fit(scores, y)
    if kind == "quality":
        t = trials.table
        q = log_min_duration(t["enroll_duration"].to_numpy(float), t["duration"].to_numpy(float))
        return QualityCalibration(p_eff=p_eff).fit(scores, y, q)
    raise ValueError(f"evaluate.calibration.kind={kind!r}: expected linear or quality")


def evaluate(cfg: DictConfig, progress: bool = True) -> dict:
    """Run the stage; returns the metrics written to `metrics.json`."""
    ev = cfg.evaluate
    out = Path(ev.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prepared = Path(cfg.data.prepared_dir)
    settings = AssessSettings.from_config(ev, operating_point(cfg.register.get("policy")))
    encoder = SpeakerEncoder.load(Path(cfg.train.out_dir) / FILENAME)
    keyring = keyring_from_cfg(cfg)  # a missing master key stops here, before any work
    manifest = read_manifest(prepared / "manifest.csv")
    eval_set = load_trial_set(prepared, "eval", manifest)
    cal_set = load_trial_set(prepared, "calibration", manifest)

    norm = _normalization(cfg, encoder, manifest, progress)
    quality = QualitySettings.from_config(cfg.quality)
    mode = str(cfg.quality.get("evaluation", "refuse"))
    if mode not in ("refuse", "report"):
        raise ValueError(f"quality.evaluation={mode!r}: expected refuse or report")
    refused: list[tuple[str, str]] | None = [] if mode == "report" else None
    cal_batch = embed_split(
        encoder,
        manifest,
        cal_set.utterances,
        "embedding calibration split",
        progress,
        quality,
        refused,
    )
    eval_batch = embed_split(
        encoder, manifest, eval_set.utterances, "embedding eval split", progress, quality, refused
    )
    cal_scores = norm.score(cal_batch.as_dict(), cal_set.table)
    eval_scores = norm.score(eval_batch.as_dict(), eval_set.table)
    calibration = _calibrate(
        str(ev.calibration.kind), cal_scores, cal_set, float(ev.calibration.p_eff)
    )
    _, llrs = system_scores(Scorer(norm, calibration), eval_batch.as_dict(), eval_set)
    labels = eval_set.labels
    metrics = verification_metrics(eval_scores, labels, llrs, p_targets=settings.p_targets)
    metrics = {k: float(v) for k, v in metrics.items()}

    results, _ = assess(eval_set, {"model": (eval_scores, llrs)}, settings)
    model = results["model"]
    extra = {
        k: v["value"]
        for k, v in model.figures.items()
        if k not in metrics and (k in ("fmr", "fnmr") or k.startswith("bias."))
    }
    summary = {
        **metrics,
        **{k: float(v) for k, v in extra.items()},
        "n_trials": int(len(eval_set.table)),
        "n_target": int(labels.sum()),
        "trials_sha256": eval_set.sha256,
        "calibration_trials_sha256": cal_set.sha256,
        "score_normalization": norm.describe(),
        "calibration_kind": calibration.kind,
        "llr_threshold": settings.threshold,
    }
    (out / "metrics.json").write_text(dumps(summary))
    (out / "evaluation.json").write_text(
        dumps(
            {
                "trials_sha256": eval_set.sha256,
                "calibration_trials_sha256": cal_set.sha256,
                "scoring": norm.describe(),
                "calibration": calibration.to_dict(),
                "settings": settings.describe(),
                "figures": model.figures,
                "bias": model.bias,
                "input_quality": {
                    "mode": mode,
                    "min_speech_s": quality.min_speech_s,
                    "n_checked": len(cal_set.utterances | eval_set.utterances),
                    # reasons without the file or utterance id (both may name a speaker)
                    "refused_but_scored": sorted(r.split(": ", 1)[-1] for _, r in refused or []),
                },
            }
        )
    )
    (out / "calibration.json").write_text(json.dumps(calibration.to_dict(), indent=2))
    write_scoring(out, norm.to_dict(), keyring, weights_binding(encoder))
    scores = eval_set.table[["enroll", "test", "label"]].assign(score=eval_scores, llr=llrs)
    pseudonymise_ids(scores, keyring.pseudonym_key()).to_csv(out / "scores_eval.csv", index=False)
    write_eval_embeddings(
        out,
        cal_batch.utt_ids + eval_batch.utt_ids,
        np.concatenate([cal_batch.embeddings, eval_batch.embeddings]),
        keyring,
    )
    theta = settings.threshold
    det_plot(
        {"eval": (eval_scores, labels)},
        out / "det.png",
        "DET: held-out eval speakers",
        operating_points={"eval": (llrs, theta)},
    )
    calibration_plot({"eval": (llrs, labels)}, out / "calibration.png", settings.operating_point)
    bias_plot({"eval": model.bias}, out / "bias.png", theta)
    _log_to_mlflow(cfg, summary, out)
    return summary


def load_score_normalization(
    eval_dir: str | Path, keyring: Keyring, binding: str
) -> ScoreNormalization:
    """The normalization the evaluate stage used (`scoring.json` + `cohort.enc`, decrypted;
    ``binding``: :func:`~speakerops.eval.sealed.weights_binding` of the evaluated encoder)."""
    return ScoreNormalization.from_dict(load_sealed_scoring(eval_dir), keyring, binding)


def _log_to_mlflow(cfg: DictConfig, summary: dict, out: Path) -> None:
    """Metrics (prefixed `eval_`) and figures onto the training run."""
    train_json = Path(cfg.train.out_dir) / "train.json"
    if not train_json.is_file():
        return
    run_id = json.loads(train_json.read_text())["run_id"]
    client = store_client(cfg.paths.registry_dir)
    for key, value in summary.items():
        if isinstance(value, float) and math.isfinite(value):
            client.log_metric(run_id, f"eval_{key}", value)
    client.set_tag(run_id, "eval_trials_sha256", summary["trials_sha256"])
    for name in (
        "metrics.json",
        "evaluation.json",
        "calibration.json",
        "det.png",
        "calibration.png",
        "bias.png",
    ):
        client.log_artifact(run_id, str(out / name), "eval")


# --------------------------------------------------------------------------- other systems


def evaluate_corpus(
    encoder: SpeakerEncoder,
    corpus: str,
    root: str | Path,
    trials_per_utt: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """EER/minDCF of `encoder` on every speaker of an external corpus (e.g. LibriSpeech test-other)."""
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
