"""Trial scoring: cosine similarity between enrollment and test embeddings."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length: x / |x|."""
    x = np.asarray(x, dtype=np.float64)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)


def cosine_scores(embeddings: Mapping[str, np.ndarray], trials: pd.DataFrame) -> np.ndarray:
    """s = <e, t> / (|e| |t|) for each trial row (`enroll`, `test` name embeddings)."""
    missing = (set(trials["enroll"]) | set(trials["test"])) - set(embeddings)
    if missing:
        raise KeyError(
            f"{len(missing)} trial utterances have no embedding, e.g. {sorted(missing)[:3]}"
        )
    ids = list(embeddings)
    pos = {u: i for i, u in enumerate(ids)}
    mat = l2_normalize(np.stack([embeddings[u] for u in ids]))
    e = trials["enroll"].map(pos).to_numpy()
    t = trials["test"].map(pos).to_numpy()
    return np.einsum("ij,ij->i", mat[e], mat[t])
