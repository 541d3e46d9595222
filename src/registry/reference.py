"""The drift baseline stored with each registered model version: its format and how it is
built from the evaluate stage's outputs at registration (:func:`build_reference_from_eval`).
Resolving a champion's reference through the registry is :mod:`speakerops.drift.reference`.

A reference folder (logged as the MLflow artifact path ``reference`` of the model
version's run) holds:

- ``embeddings.enc``: the float32 ``[N, D]`` embeddings of the eval + calibration utterances,
  AES-256-GCM under the keyring's ``reference`` data key (:mod:`speakerops.core.keys`);
- ``metadata.parquet``: one row per embedding, with the production-log columns the drift
  check compares — ``duration_s``, ``sample_rate``, ``snr_db``, ``channel`` (may be null) —
  plus ``cm_score`` when the model is registered with its countermeasure (the CM's score of
  each recording: the reference of the drift check's ``cm_score`` column), ``speaker`` (used to build the score cohort and to take one utterance per speaker
  for the embedding test; recommended) and optionally ``set`` (``eval``/``calibration``).
  Speaker and utterance ids (``speaker``, ``utt_id`` and the trial columns ``enroll`` /
  ``test`` of the scores) are stored only as keyed pseudonyms;
- ``scores.parquet``: the labelled trial scores of those sets (at least a numeric
  ``score`` column; e.g. ``set``, ``label``, ``score``) kept for the record and the ticket;
  production has no labels, so the score drift check uses label-free scores computed from
  the embeddings on both sides (:mod:`speakerops.drift.checks`);
- ``reference.json``: format, sizes, creation time and the SHA-256 of each file (checked on load).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from speakerops.core.jsonio import sha256_file
from speakerops.core.keys import Keyring
from speakerops.data.audio import AudioError, load_audio
from speakerops.data.manifest import read_manifest, row_spans
from speakerops.data.quality import estimate_snr_db
from speakerops.eval.sealed import load_eval_embeddings, pseudonymise_ids
from speakerops.models.cm_decision import CountermeasureDecision

__all__ = [
    "Reference",
    "build_reference_from_eval",
    "load_reference",
    "with_cm_scores",
    "pseudonymise_ids",
    "save_reference",
]

REFERENCE_FORMAT = "speakerops-drift-reference"
REFERENCE_FORMAT_VERSION = 2
REFERENCE_ARTIFACT_PATH = "reference"
REFERENCE_PURPOSE = "reference"
_AAD = b"speakerops-drift-reference"
_FILES = ("embeddings.enc", "metadata.parquet", "scores.parquet")


@dataclass
class Reference:
    """A loaded reference sample; ``model_name``/``model_version`` are set when it was
    resolved through the registry (or given in the reference's own ``reference.json``)."""

    embeddings: np.ndarray
    metadata: pd.DataFrame
    scores: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    model_name: str | None = None
    model_version: str | None = None
    run_id: str | None = None

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])


def save_reference(
    out_dir: str | Path,
    embeddings: np.ndarray,
    metadata: pd.DataFrame,
    scores: pd.DataFrame,
    *,
    keyring: Keyring,
    model_name: str | None = None,
    model_version: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a reference folder (see the module doc) and return its path.

    ``model_name``/``model_version`` are optional: at registration the version is usually
    not known yet, and :func:`speakerops.drift.reference.load_champion_reference` takes it from the registry.
    """
    key = keyring.pseudonym_key()
    return _write_reference(
        out_dir,
        embeddings,
        _pseudonymous(metadata, key),
        _pseudonymous(scores, key),
        keyring=keyring,
        model_name=model_name,
        model_version=model_version,
        extra=extra,
    )


def _pseudonymous(frame: Any, key: bytes) -> Any:
    """`frame`'s ids as pseudonyms (anything else is left for the checks to refuse)."""
    if isinstance(frame, pd.DataFrame):
        return pseudonymise_ids(frame.reset_index(drop=True), key)
    return frame


def _write_reference(
    out_dir: str | Path,
    embeddings: np.ndarray,
    metadata: pd.DataFrame,
    scores: pd.DataFrame,
    *,
    keyring: Keyring,
    model_name: str | None = None,
    model_version: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """:func:`save_reference` of ids that are pseudonyms already."""
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or emb.shape[0] < 2 or emb.shape[1] < 1:
        raise ValueError(f"reference embeddings must be [N>=2, D], got shape {emb.shape}")
    if not np.issubdtype(emb.dtype, np.number) or not np.isfinite(emb).all():
        raise ValueError("reference embeddings must be finite numbers")
    if not isinstance(metadata, pd.DataFrame) or len(metadata) != emb.shape[0]:
        raise ValueError(
            f"reference metadata must be a DataFrame with one row per embedding "
            f"({emb.shape[0]}), got {len(metadata) if isinstance(metadata, pd.DataFrame) else type(metadata)}"
        )
    if not isinstance(scores, pd.DataFrame) or "score" not in scores.columns:
        raise ValueError("reference scores must be a DataFrame with a numeric 'score' column")
    if not pd.api.types.is_numeric_dtype(scores["score"]):
        raise ValueError("reference scores: column 'score' must be numeric")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blob = keyring.encrypt_array(REFERENCE_PURPOSE, emb.astype(np.float32), aad=_AAD)
    (out / "embeddings.enc").write_bytes(blob)
    metadata = metadata.reset_index(drop=True)
    metadata.to_parquet(out / "metadata.parquet", index=False)
    scores.reset_index(drop=True).to_parquet(out / "scores.parquet", index=False)
    info = {
        "format": REFERENCE_FORMAT,
        "format_version": REFERENCE_FORMAT_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "n": int(emb.shape[0]),
        "dim": int(emb.shape[1]),
        "metadata_columns": [str(c) for c in metadata.columns],
        "n_speakers": int(metadata["speaker"].nunique()) if "speaker" in metadata else None,
        "model_name": model_name,
        "model_version": None if model_version is None else str(model_version),
        "files": {name: sha256_file(out / name) for name in _FILES},
        **(extra or {}),
    }
    (out / "reference.json").write_text(json.dumps(info, indent=2) + "\n")
    return out


def load_reference(path: str | Path, *, keyring: Keyring) -> Reference:
    """Load, verify (file hashes, shapes) and decrypt a reference folder."""
    path = Path(path)
    info_file = path / "reference.json"
    if not info_file.is_file():
        raise FileNotFoundError(f"{path} is not a drift reference: {info_file.name} is missing")
    info = json.loads(info_file.read_text())
    if info.get("format") != REFERENCE_FORMAT:
        raise ValueError(
            f"{info_file}: format is {info.get('format')!r}, expected {REFERENCE_FORMAT!r}"
        )
    for name in _FILES:
        f = path / name
        if not f.is_file():
            raise FileNotFoundError(f"drift reference {path}: {name} is missing")
        want = info.get("files", {}).get(name)
        if want and sha256_file(f) != want:
            raise ValueError(
                f"drift reference {path}: {name} does not match its SHA-256 in reference.json"
            )
    if info.get("format_version") != REFERENCE_FORMAT_VERSION:
        raise ValueError(
            f"{info_file}: reference format {info.get('format_version')} (plaintext "
            f"embeddings); this speakerops reads format {REFERENCE_FORMAT_VERSION} (encrypted): "
            "register the model again to rebuild its reference"
        )
    emb = keyring.decrypt_array(
        (path / "embeddings.enc").read_bytes(), aad=_AAD, what=f"drift reference {path}"
    )
    metadata = pd.read_parquet(path / "metadata.parquet")
    scores = pd.read_parquet(path / "scores.parquet")
    if len(metadata) != emb.shape[0]:
        raise ValueError(
            f"drift reference {path}: {len(metadata)} metadata rows for {emb.shape[0]} embeddings"
        )
    return Reference(
        embeddings=emb.astype(np.float32, copy=False),
        metadata=metadata,
        scores=scores,
        info=info,
        path=path,
        model_name=info.get("model_name"),
        model_version=None if info.get("model_version") is None else str(info["model_version"]),
    )


def build_reference_from_eval(
    eval_dir: str | Path,
    prepared_dir: str | Path,
    out_dir: str | Path,
    *,
    keyring: Keyring,
    countermeasure: CountermeasureDecision | None = None,
    cm_sha256: str | None = None,
) -> Path:
    """The reference of a freshly evaluated model, from the evaluate stage's outputs.

    Embeddings of the eval + calibration utterances (``embeddings.enc``, decrypted), their
    manifest metadata (duration, native sample rate, channel, speaker, split as ``set``), a
    blind SNR estimate of each recording, and the labelled eval trial scores
    (``scores_eval.csv``, whose trial ids are pseudonyms already). With the pair's
    ``countermeasure`` (and ``cm_sha256``, its file's sha256, recorded in the reference's info),
    each recording's CM score too (``cm_score``; NaN where the CM cannot
    score it, counted in ``reference.json`` as ``cm_unscored``).
    """
    cm_sha256 = None if countermeasure is None else _required_sha(cm_sha256)  # before any work
    eval_dir, prepared_dir = Path(eval_dir), Path(prepared_dir)
    utt_ids, emb = load_eval_embeddings(eval_dir, keyring=keyring)
    manifest = (
        read_manifest(prepared_dir / "manifest.csv").set_index("utt_id").loc[utt_ids].reset_index()
    )
    snr = [
        estimate_snr_db(load_audio(p, None, start=a, end=b)[0], int(r))
        for p, (a, b), r in zip(
            manifest["path"], row_spans(manifest), manifest["sample_rate"], strict=True
        )
    ]
    metadata = pd.DataFrame(
        {
            "utt_id": manifest["utt_id"],
            "duration_s": manifest["duration"].astype(float),
            "sample_rate": manifest["sample_rate"].astype(int),
            "snr_db": snr,
            "channel": manifest["channel"].astype(str),
            "speaker": manifest["speaker"].astype(str),
            "set": manifest["split"].astype(str),
        }
    )
    extra = None
    if countermeasure is not None:
        metadata["cm_score"] = [
            _cm_score(countermeasure, p, a, b) for p, (a, b) in zip(manifest["path"], row_spans(manifest), strict=True)
        ]  # fmt: skip
        extra = {"cm_unscored": int(metadata["cm_score"].isna().sum()),
                 "cm_operating_point": countermeasure.operating_point,
                 "cm_sha256": cm_sha256}  # fmt: skip
    scores = pd.read_csv(eval_dir / "scores_eval.csv").assign(set="eval")
    key = keyring.pseudonym_key()
    return _write_reference(
        out_dir, emb, pseudonymise_ids(metadata, key), scores, keyring=keyring, extra=extra
    )


def _required_sha(cm_sha256: str | None) -> str:
    """The CM file's sha256, which the reference records beside its CM scores: the drift check
    compares the production log's ``cm_score`` only with scores of the same countermeasure."""
    if not cm_sha256:
        raise ValueError("a reference with CM scores needs cm_sha256, the countermeasure file's sha256")  # fmt: skip
    return cm_sha256


def _cm_score(cm: CountermeasureDecision, path: str, start: Any, end: Any) -> float:
    try:
        return cm.score(load_audio(path, cm.sample_rate, start=start, end=end)[0])
    except (AudioError, ValueError):
        return float("nan")


def with_cm_scores(
    ref: Reference, prepared_dir: str | Path, out_dir: str | Path, *, keyring: Keyring,
    countermeasure: CountermeasureDecision, cm_sha256: str,
) -> Path:  # fmt: skip
    """`ref` written again with each recording's CM score (``cm_score``, as
    :func:`build_reference_from_eval` with a countermeasure): the reference of a speaker version
    when its countermeasure is paired with it. Its recordings are found in the prepared
    manifest by their pseudonyms; one missing is a clear error (the manifest is not the one the
    speaker version was evaluated on)."""
    manifest = read_manifest(Path(prepared_dir) / "manifest.csv")
    key = keyring.pseudonym_key()
    rows = dict(zip(pseudonymise_ids(manifest[["utt_id"]], key)["utt_id"], range(len(manifest)), strict=True))  # fmt: skip
    missing = [u for u in ref.metadata["utt_id"] if u not in rows]
    if missing:
        raise ValueError(
            f"{Path(prepared_dir) / 'manifest.csv'}: {len(missing)} of the {len(ref)} reference "
            "recordings are not in it, so the countermeasure cannot score them: run `speakerops "
            "prepare` as for the speaker version's evaluation (or register it again)"
        )
    picked = manifest.iloc[[rows[u] for u in ref.metadata["utt_id"]]].reset_index(drop=True)
    metadata = ref.metadata.copy()
    metadata["cm_score"] = [
        _cm_score(countermeasure, p, a, b) for p, (a, b) in zip(picked["path"], row_spans(picked), strict=True)
    ]  # fmt: skip
    extra = {k: v for k, v in ref.info.items() if k not in {"format", "format_version", "created_at", "n", "dim",
             "metadata_columns", "n_speakers", "model_name", "model_version", "files"}}  # fmt: skip
    extra.update(cm_unscored=int(metadata["cm_score"].isna().sum()),
                 cm_operating_point=countermeasure.operating_point, cm_sha256=_required_sha(cm_sha256))  # fmt: skip
    return _write_reference(out_dir, ref.embeddings, metadata, ref.scores, keyring=keyring,
                            model_name=ref.model_name, model_version=ref.model_version, extra=extra)  # fmt: skip
