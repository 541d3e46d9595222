"""The `register` stage: package the trained encoder, register a version, alias `challenger`.

The encoder is `train.out_dir/encoder.safetensors`: trained by `speakerops train` (the version
hangs on its training run, `train.json`) or imported by `speakerops models import` (a run of
its own, `import-<source>`, tagged with the source).

The packaged encoder gets, inside its `extras`, what scoring needs downstream: the score
normalization (`scoring`: cosine, or AS-norm with its top-N and the cohort of
training-speaker means, encrypted and bound to the weights: `speakerops.eval.sealed`), the calibration fitted by `evaluate` (`calibration`), the shipped
operating point with its LLR threshold (`operating_point`, from the policy) and the eval
metrics;
the version carries lineage tags (git commit, manifest and trial-list hashes, composed
parameters) and the drift reference (eval + calibration embeddings) as run artifacts.
Writes `register.out_dir/registered.json`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
from omegaconf import DictConfig, OmegaConf

from speakerops.core.config import flatten
from speakerops.core.jsonio import sha256_file
from speakerops.core.keys import Keyring, keyring_from_cfg
from speakerops.core.lineage import git_commit, params_digest
from speakerops.core.mlflow import client, ensure_experiment, fluent_store
from speakerops.core.names import CHALLENGER, metric_keys
from speakerops.core.paths import tracking_uri
from speakerops.core.policy import bayes_threshold, operating_point
from speakerops.core.uris import registered_model_uri
from speakerops.eval.calibration import calibration_from_dict
from speakerops.eval.evaluate import load_score_normalization
from speakerops.eval.sealed import load_sealed_scoring, weights_binding
from speakerops.models.encoder import FILENAME, SpeakerEncoder
from speakerops.models.importers import source_tags
from speakerops.registry.package import ENCODER_SHA256_TAG, log_encoder_model
from speakerops.registry.reference import REFERENCE_ARTIFACT_PATH, build_reference_from_eval


def register(cfg: DictConfig) -> dict:
    """Register the evaluated encoder; returns what is written to `registered.json`."""
    out = Path(cfg.register.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_dir, eval_dir = Path(cfg.train.out_dir), Path(cfg.evaluate.out_dir)
    prepared = Path(cfg.data.prepared_dir)
    metrics = json.loads((eval_dir / "metrics.json").read_text())

    encoder = SpeakerEncoder.load(train_dir / FILENAME)
    run_id = _source_run(cfg, train_dir, encoder)
    calibration = json.loads((eval_dir / "calibration.json").read_text())
    calibration_from_dict(calibration)  # refuse to package a malformed calibration
    keyring = keyring_from_cfg(cfg)
    # the stage's cohort must decrypt for these weights; it is packaged still encrypted
    scoring = load_score_normalization(eval_dir, keyring, weights_binding(encoder))
    op = operating_point(cfg.register.get("policy"))
    encoder.extras["calibration"] = calibration
    encoder.extras["scoring"] = load_sealed_scoring(eval_dir)
    encoder.extras["operating_point"] = {
        **op,
        "llr_threshold": bayes_threshold(op["p_target"], op["c_miss"], op["c_fa"]),
    }
    encoder.extras["eval_metrics"] = metrics
    packaged = encoder.save(out / FILENAME)

    registry_dir = cfg.paths.registry_dir
    ensure_experiment(cfg.mlflow.experiment, registry_dir)
    params = OmegaConf.to_container(cfg, resolve=True)
    tags = {
        "git_commit": git_commit(),
        "manifest_sha256": sha256_file(prepared / "manifest.csv"),
        "trials_sha256": metrics["trials_sha256"],
        "calibration_trials_sha256": metrics["calibration_trials_sha256"],
        "params_sha256": params_digest(params),
        "train_run_id": run_id,
        "sample_rate": str(encoder.sample_rate),
        "model_arch": encoder.model_cfg["arch"],
        ENCODER_SHA256_TAG: sha256_file(packaged),
        "score_normalization": scoring.describe(),
        "calibration_kind": str(calibration.get("kind")),
        **source_tags(encoder.extras),  # an imported encoder: source, its file's sha256, licence
    }
    params_json = json.dumps(flatten(cfg), sort_keys=True)
    if len(params_json) <= _tag_value_limit():
        tags["params"] = params_json
    store = client(registry_dir)
    with fluent_store(tracking_uri(registry_dir)):
        with mlflow.start_run(run_id=run_id):
            model_uri = log_encoder_model(packaged)
            mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "lineage/params.yaml")
            _log_reference(eval_dir, prepared, keyring)
        version = mlflow.register_model(model_uri, cfg.register.model_name, tags=tags)
    store.set_registered_model_alias(cfg.register.model_name, CHALLENGER, version.version)
    for key in metric_keys(cfg.evaluate.p_targets):
        if key in metrics:
            store.set_model_version_tag(
                cfg.register.model_name, version.version, f"metric.{key}", repr(metrics[key])
            )
    result = {
        "model_name": cfg.register.model_name,
        "version": str(version.version),
        "model_uri": registered_model_uri(cfg.register.model_name, version.version),
        "run_id": run_id,
        "aliases": sorted(
            store.get_model_version(cfg.register.model_name, version.version).aliases
        ),
        **tags,
    }
    (out / "registered.json").write_text(
        json.dumps({k: v for k, v in result.items() if k != "params"}, indent=2)
    )
    return result


def _source_run(cfg: DictConfig, train_dir: Path, encoder: SpeakerEncoder) -> str:
    """The MLflow run the version hangs on: the training run (`train.json`), or, for an encoder
    imported by `speakerops models import` and never trained here, a new run named after its
    source and tagged with it (source, its file's sha256, licence)."""
    summary = train_dir / "train.json"
    if summary.is_file():
        return str(json.loads(summary.read_text())["run_id"])
    tags = source_tags(encoder.extras)
    if not tags:
        raise FileNotFoundError(
            f"{summary}: no training summary beside {train_dir / FILENAME}; run "
            "`speakerops train` first, or import a pretrained encoder there "
            f"(`speakerops models import source=... output={train_dir / FILENAME}`)"
        )
    exp_id = ensure_experiment(cfg.mlflow.experiment, cfg.paths.registry_dir)
    run = client(cfg.paths.registry_dir).create_run(
        exp_id, run_name=f"import-{tags['source']}", tags=tags
    )
    return str(run.info.run_id)


def _tag_value_limit() -> int:
    """Longest model-version tag value the installed MLflow accepts (100 000 in MLflow 3;
    5000 in older stores)."""
    try:
        from mlflow.utils.validation import MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH
    except ImportError:  # pragma: no cover - older MLflow
        return 5000
    return int(MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH)


def _log_reference(eval_dir: Path, prepared: Path, keyring: Keyring) -> None:
    """Store the drift reference (embeddings, their metadata, score distributions) on the run."""
    with tempfile.TemporaryDirectory() as tmp:
        ref_dir = build_reference_from_eval(
            eval_dir, prepared, Path(tmp) / "reference", keyring=keyring
        )
        mlflow.log_artifacts(str(ref_dir), REFERENCE_ARTIFACT_PATH)
