"""The rows of the approximate identification index (:mod:`.index`): AS-norm as an inner product.

The approximate index ranks by the normalized score itself, not by cosine. With
w = 1/σ_e (floored as asnorm floors σ), 2 s' = s·w − μ_e·w + s/σ_t − μ_t/σ_t, and
s·w − μ_e·w + s/σ_t = <[w·t, t, −μ_e·w], [q, q/σ_t, 1]>: an inner product in 2D+1
dimensions, the last term a constant of the query. A linear calibration keeps that
order; a quality-aware one is applied in the exact re-scoring of the candidates.
Those rows differ in length (w does), and inverted lists cluster by direction, so each
row x is scaled by a bound M and completed to unit length with sqrt(1 − |x/M|²) (the
usual reduction of inner-product search to cosine search; the query gets a 0 there).
Without AS-norm the rows are the unit templates themselves.
"""

from __future__ import annotations

import numpy as np


def row_lengths(asnorm: bool, sd: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """|x| of the rows below without making them: t is a unit vector, so
    |[w·t, t, −μ_e·w]|² = 1 + w² (1 + μ_e²)."""
    if not asnorm:
        return np.ones(len(sd))
    w = 1.0 / np.maximum(sd, 1e-6)
    return np.sqrt(1.0 + w**2 * (1.0 + mu**2))


def ann_rows(asnorm: bool, vecs: np.ndarray, sd: np.ndarray, mu: np.ndarray, bound: float):
    """The index rows of unit templates `vecs` with AS-norm statistics `mu`, `sd`."""
    if not asnorm:
        return np.ascontiguousarray(vecs)
    w = 1.0 / np.maximum(sd, 1e-6)
    x = np.hstack([vecs * w[:, None], vecs, (-mu * w)[:, None]]) / bound
    fill = np.sqrt(np.maximum(0.0, 1.0 - (row_lengths(asnorm, sd, mu) / bound) ** 2))
    return np.ascontiguousarray(np.hstack([x, fill[:, None]]), dtype=np.float32)


def ann_query(asnorm: bool, q: np.ndarray, sd_t: float) -> np.ndarray:
    """The query row of a unit probe `q` with its AS-norm σ_t."""
    if not asnorm:
        return q[None]
    y = np.concatenate([q, q / max(float(sd_t), 1e-6), [1.0, 0.0]])
    return np.ascontiguousarray(y[None], dtype=np.float32)
