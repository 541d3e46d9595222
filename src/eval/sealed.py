"""Evaluation data at rest: the AS-norm cohort and the eval embeddings encrypted, ids only as
keyed pseudonyms (issue #10: biometric data never in plaintext at rest).

* Ids: a speaker id is stored as ``HMAC-SHA256(pseudonym key, speaker)``, an utterance id as
  ``HMAC-SHA256(pseudonym key, "utt\\0" + utt_id)`` (:func:`pseudonymise_ids`; the same
  domains as the drift reference and the production log, so one utterance has one pseudonym
  everywhere). The key is the keyring's (:meth:`speakerops.core.keys.Keyring.pseudonym_key`).
* The AS-norm cohort (training speakers' mean embeddings): AES-256-GCM under the keyring's
  ``cohort`` data key, with the sha256 of the encoder weights it was computed with bound as
  associated data (:func:`weights_binding`), so a cohort copied into another model does not
  decrypt. In a packaged model it is the ``scoring`` extra ``{"method": "asnorm", "top_n",
  "cohort_size", "cohort_speakers" (pseudonyms), "cohort_enc" (the blob)}``
  (:func:`seal_scoring`); scoring with it needs the store's keyring and master key
  (:func:`open_cohort`), embedding with the model does not.
* The evaluate stage's ``embeddings.enc``: the eval + calibration utterance ids and embeddings
  (an npz) under the ``evaluation`` data key (:func:`write_eval_embeddings`,
  :func:`load_eval_embeddings`); ``cohort.enc`` + ``scoring.json`` (:func:`write_scoring`,
  :func:`load_sealed_scoring`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from speakerops.core.keys import KeyMaterialError, Keyring, pseudonym
from speakerops.models.encoder_file import weights_sha256

COHORT_PURPOSE = "cohort"
EVAL_PURPOSE = "evaluation"
_COHORT_AAD = b"speakerops-cohort\x00"
_EVAL_AAD = b"speakerops-eval-embeddings"
SCORING_FILE, COHORT_FILE, EMBEDDINGS_FILE = "scoring.json", "cohort.enc", "embeddings.enc"
# id columns, and the domain their pseudonym is taken in (utterance ids as in the production log)
ID_DOMAINS = {"speaker": "", "utt_id": "utt\x00", "enroll": "utt\x00", "test": "utt\x00"}


def pseudonymise_ids(frame: pd.DataFrame, key: bytes) -> pd.DataFrame:
    """The id columns of `frame` (:data:`ID_DOMAINS`) replaced by keyed pseudonyms (nulls stay
    null)."""
    out = frame.copy()
    for col, domain in ID_DOMAINS.items():
        if col in out.columns:
            out[col] = [None if pd.isna(v) else pseudonym(domain + str(v), key) for v in out[col]]
    return out


def weights_binding(encoder: Any) -> str:
    """What a cohort is bound to: the sha256 of the encoder's backbone weights."""
    return weights_sha256(encoder.backbone.state_dict())


def seal_scoring(scoring: Mapping[str, Any], keyring: Keyring, binding: str) -> dict[str, Any]:
    """The packaged form of :meth:`ScoreNormalization.to_dict`: the cohort encrypted, its
    speakers as pseudonyms (cosine scoring has nothing to seal)."""
    if scoring.get("method") != "asnorm" or "cohort_enc" in scoring:
        return dict(scoring)
    cohort = np.asarray(scoring["cohort"], dtype=np.float32)
    key = keyring.pseudonym_key()
    return {
        "method": "asnorm",
        "top_n": int(scoring["top_n"]),
        "cohort_size": int(cohort.shape[0]),
        "cohort_speakers": [pseudonym(str(s), key) for s in scoring.get("cohort_speakers", [])],
        "cohort_enc": keyring.encrypt_array(
            COHORT_PURPOSE, cohort, aad=_COHORT_AAD + binding.encode()
        ),
    }


def is_sealed(scoring: Mapping[str, Any] | None) -> bool:
    return isinstance(scoring, Mapping) and "cohort_enc" in scoring


def open_cohort(
    scoring: Mapping[str, Any], keyring: Keyring | None, binding: str | None, what: str = "model"
) -> np.ndarray:
    """The decrypted cohort of a sealed ``scoring`` dict; a missing keyring, a wrong master key
    or a cohort of other weights is a :class:`KeyMaterialError` saying what to do."""
    if keyring is None or binding is None:
        raise KeyMaterialError(
            f"{what}: its AS-norm cohort is encrypted (keyring purpose {COHORT_PURPOSE!r}); "
            "scoring needs the store's keyring and its master key ($SPEAKEROPS_DATA_KEY, "
            "$SPEAKEROPS_DATA_KEY_FILE or keys.master_key_file): pass keyring= (embedding with "
            "the model needs no key)"
        )
    try:
        cohort = keyring.decrypt_array(
            bytes(scoring["cohort_enc"]),
            aad=_COHORT_AAD + binding.encode(),
            what=f"{what}: AS-norm cohort",
        )
    except KeyMaterialError as exc:
        raise KeyMaterialError(
            f"{exc} (keyring {keyring.path}, master key id {keyring.master_id}; a cohort "
            "copied from another model does not decrypt either)"
        ) from None
    if cohort.ndim != 2 or cohort.shape[0] != int(scoring.get("cohort_size", cohort.shape[0])):
        raise ValueError(f"{what}: AS-norm cohort of shape {cohort.shape} does not match")
    return cohort


# --------------------------------------------------------------------------- stage files


def write_scoring(out_dir: Path, scoring: Mapping[str, Any], keyring: Keyring, binding: str):
    """``scoring.json`` (settings, pseudonymous cohort speakers) + ``cohort.enc`` (the blob)."""
    sealed = seal_scoring(scoring, keyring, binding)
    blob = sealed.pop("cohort_enc", None)
    if blob is not None:
        (out_dir / COHORT_FILE).write_bytes(blob)
        sealed["cohort_file"] = COHORT_FILE
    else:
        (out_dir / COHORT_FILE).unlink(missing_ok=True)
    (out_dir / SCORING_FILE).write_text(json.dumps(sealed, indent=2))


def load_sealed_scoring(eval_dir: str | Path) -> dict[str, Any]:
    """The evaluate stage's scoring settings with the cohort still encrypted (cosine when the
    stage wrote none)."""
    eval_dir = Path(eval_dir)
    path = eval_dir / SCORING_FILE
    if not path.is_file():
        return {"method": "cosine"}
    d = json.loads(path.read_text())
    if d.get("method") == "asnorm":
        if "cohort_file" not in d:
            raise ValueError(
                f"{path}: an AS-norm cohort stored in plaintext (written before encryption at "
                "rest); run `speakerops evaluate` again"
            )
        d["cohort_enc"] = (eval_dir / str(d.pop("cohort_file"))).read_bytes()
    return d


def write_eval_embeddings(
    out_dir: Path, utt_ids: Sequence[str], embeddings: np.ndarray, keyring: Keyring
) -> Path:
    """``embeddings.enc``: the utterance ids and float32 embeddings, encrypted together."""
    buf = io.BytesIO()
    np.savez(buf, utt_id=np.array([str(u) for u in utt_ids]), embedding=embeddings)
    path = out_dir / EMBEDDINGS_FILE
    path.write_bytes(keyring.encrypt(EVAL_PURPOSE, buf.getvalue(), aad=_EVAL_AAD))
    return path


def load_eval_embeddings(eval_dir: str | Path, *, keyring: Keyring) -> tuple[list[str], np.ndarray]:
    """(utterance ids, embeddings [N, D]) of the evaluate stage's ``embeddings.enc``."""
    path = Path(eval_dir) / EMBEDDINGS_FILE
    if not path.is_file():
        old = path.with_suffix(".npz")
        hint = f" ({old.name} is the plaintext format of before: evaluate again)" * old.is_file()
        raise FileNotFoundError(f"{path}: the evaluate stage's embeddings are missing{hint}")
    data = keyring.decrypt(path.read_bytes(), aad=_EVAL_AAD, what=str(path))
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return z["utt_id"].tolist(), z["embedding"].astype(np.float32, copy=False)
