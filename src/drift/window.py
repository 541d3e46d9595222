"""Vetting and preparing a production window against a reference: one model version (the
reference's), finite embeddings of the reference's size, and both sides as frames with the
speaker group the one-per-speaker step uses. Anything else is a :class:`DriftRefusal`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from speakerops.drift.log import emb_column_names, embedding_columns
from speakerops.drift.results import DriftRefusal
from speakerops.registry.reference import Reference

GROUP_COLUMN = "_speaker_group"


def window_versions(df: pd.DataFrame) -> pd.DataFrame:
    """Rows per (model_name, model_version) in a window, most frequent first."""
    cols = [c for c in ("model_name", "model_version") if c in df.columns]
    if not cols:
        return pd.DataFrame(columns=["model_name", "model_version", "rows"])
    counts = df.groupby(cols, dropna=False).size().rename("rows").reset_index()
    return counts.sort_values("rows", ascending=False).reset_index(drop=True)


def check_versions(current: pd.DataFrame, reference: Reference) -> tuple[str | None, str | None]:
    """(model name, version) of the window; refuses a mix of versions or another model."""
    versions = window_versions(current)
    if len(versions) > 1:
        listing = ", ".join(
            f"{r.get('model_name', '?')} v{r['model_version']} ({r['rows']} rows)"
            for r in versions.to_dict("records")
        )
        raise DriftRefusal(
            f"the window mixes embeddings of {len(versions)} model versions: {listing}. "
            "Embeddings of different models live in different spaces and are never compared "
            "together; narrow the window (drift.window.start/end) or keep one version "
            "(drift.window.model_version=champion or =<version>)."
        )
    name = str(versions["model_name"].iloc[0]) if "model_name" in versions else None
    version = str(versions["model_version"].iloc[0]) if "model_version" in versions else None
    if (
        reference.model_version is not None
        and version is not None
        and version != reference.model_version
    ):
        raise DriftRefusal(
            f"the window's embeddings come from {name} v{version} but the reference belongs to "
            f"{reference.model_name or name} v{reference.model_version}: embeddings of different "
            "model versions are never compared. Check the window against that version's own "
            "reference, or wait for traffic of the reference's version."
        )
    if reference.model_name is not None and name is not None and name != reference.model_name:
        raise DriftRefusal(
            f"the window's embeddings come from model {name!r} but the reference belongs to "
            f"{reference.model_name!r}: refusing to compare different models."
        )
    return name, version


def prepare_window(
    current: pd.DataFrame, reference: Reference, d
) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """(window frame, reference frame, embedding columns, warnings): the window's embedding
    columns renamed to the reference's, both sides with the speaker group column; refuses
    non-finite embeddings and a dimension other than the reference's."""
    warnings: list[str] = []
    cols = embedding_columns(current)
    if not cols:
        raise DriftRefusal("the window has no embedding columns (emb_000 …)")
    cur_x = current[cols].to_numpy(dtype=np.float32)
    if not np.isfinite(cur_x).all():
        bad = int((~np.isfinite(cur_x).all(axis=1)).sum())
        raise DriftRefusal(
            f"{bad} window row(s) have missing/non-finite embedding values (parts of different "
            "embedding sizes in one window?)"
        )
    if len(cols) != reference.dim:
        raise DriftRefusal(
            f"window embeddings have {len(cols)} dimensions, the reference {reference.dim}: "
            "they come from different models"
        )
    ref_cols = emb_column_names(reference.dim)
    if cols != ref_cols:
        cur_x_df = pd.DataFrame(cur_x, columns=ref_cols, index=current.index)
        current = pd.concat([current.drop(columns=cols), cur_x_df], axis=1)
        cols = ref_cols
    meta = reference.metadata.reset_index(drop=True)
    ref = pd.concat([meta, pd.DataFrame(reference.embeddings, columns=cols)], axis=1)
    ref = ref.loc[:, ~ref.columns.duplicated()]
    cur = current.reset_index(drop=True).copy()
    if "speaker" in ref.columns:
        ref[GROUP_COLUMN] = ref["speaker"].astype(object)
    else:
        ref[GROUP_COLUMN] = None
        warnings.append(
            "reference metadata has no 'speaker' column: the embedding test cannot keep one "
            "utterance per speaker and the score cohort uses reference utterances"
        )
    if "speaker_key" in cur.columns:
        cur[GROUP_COLUMN] = cur["speaker_key"].astype(object)
        missing = float(cur["speaker_key"].isna().mean())
    else:
        cur[GROUP_COLUMN] = None
        missing = 1.0
    if d.embedding.one_per_speaker and missing > 0:
        warnings.append(
            f"{missing:.0%} of window rows have no speaker key: repeated speakers among them can "
            "make the embedding classifier see speaker identity as drift"
        )
    return cur, ref, cols, warnings
