"""Score calibration: raw scores -> log-likelihood ratios (natural log).

Both calibrators are fitted like BOSARIS ``train_llr_fusion``: a prior-weighted logistic
regression whose objective (the weighted cross-entropy, "Cwlr") is

    C(f) = P_eff · mean_tar log(1 + e^−(f + o)) + (1 − P_eff) · mean_non log(1 + e^(f + o))
           + reg · ||w_std||²,        o = logit(P_eff) = log(P_eff / (1 − P_eff))

where f is the calibrated output. Each class is weighted to the effective prior P_eff
whatever the class counts of the training list, and the offset o is not part of f, so f is an
LLR (posterior log-odds at prior P are then f + logit(P)). ``reg`` is a tiny ridge on the
weights of the standardized inputs (bias excluded) that keeps the fit finite on separable
data; the default 1e-6 changes nothing measurable otherwise. Optimized with scipy's L-BFGS
from zero (deterministic).

* :class:`LinearCalibration`:  llr = a·s + b
* :class:`QualityCalibration`: llr = a·s + b + c·q, q a per-trial quality measure, e.g.
  :func:`log_min_duration` = log of the shorter of the enrollment / test durations.

Parameters travel inside a packaged model as ``to_dict()`` (plain floats, a ``kind`` field);
:func:`calibration_from_dict` rebuilds either kind.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize

from .metrics import bayes_threshold as _bayes_threshold
from .trials import validate_trials

__all__ = [
    "LinearCalibration",
    "QualityCalibration",
    "calibration_from_dict",
    "log_min_duration",
]


# --------------------------------------------------------------------------- helpers


def _as_1d(x: ArrayLike, name: str, n: int | None = None) -> NDArray[np.float64]:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if n is not None and a.size != n:
        raise ValueError(f"{name} has {a.size} values but scores have {n}")
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} contains non-finite value {a[i]!r} at index {i}")
    return a


def _check_p_eff(p_eff: float) -> float:
    p = float(p_eff)
    if not 0.0 < p < 1.0:
        raise ValueError(f"p_eff must be in (0, 1), got {p_eff!r}")
    return p


def log_min_duration(enroll_s: ArrayLike, test_s: ArrayLike) -> NDArray[np.float64]:
    """Quality measure q = log(min(enroll duration, test duration)) in log-seconds."""
    e = _as_1d(enroll_s, "enroll_s")
    t = _as_1d(test_s, "test_s", e.size)
    m = np.minimum(e, t)
    if (m <= 0).any():
        i = int(np.flatnonzero(m <= 0)[0])
        raise ValueError(f"durations must be > 0 s, got {m[i]!r} at index {i}")
    return np.log(m)


def _fit_weighted_logreg(
    X: NDArray[np.float64], y: NDArray[np.bool_], p_eff: float, reg: float
) -> tuple[NDArray[np.float64], float]:
    """Minimize the prior-weighted cross-entropy; returns (weights, bias) in input units."""
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    if (sd == 0).any():
        k = int(np.flatnonzero(sd == 0)[0])
        raise ValueError(f"calibration input column {k} is constant: its weight is unidentifiable")
    Z = (X - mu) / sd
    n_tar = int(y.sum())
    n_non = y.size - n_tar
    # per-trial weights: P_eff/N_tar for targets, (1-P_eff)/N_non for non-targets
    wt = np.where(y, p_eff / n_tar, (1.0 - p_eff) / n_non)
    sign = np.where(y, -1.0, 1.0)  # loss = wt·softplus(sign·(f + o))
    offset = math.log(p_eff / (1.0 - p_eff))
    d = Z.shape[1]

    # Elementwise numpy only (no BLAS matmul): tiny d, and multithreaded BLAS on a busy
    # machine made each evaluation ~20x slower.
    cols = [np.ascontiguousarray(Z[:, k]) for k in range(d)]

    def objective(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        w, b = theta[:d], float(theta[d])
        f = np.full(y.size, b + offset)
        for k in range(d):
            f += w[k] * cols[k]
        z = sign * f
        loss = float((wt * np.logaddexp(0.0, z)).sum()) + reg * float((w * w).sum())
        # d softplus(z)/dz = sigmoid(z) = exp(-softplus(-z)), computed stably
        g = wt * sign * np.exp(-np.logaddexp(0.0, -z))
        grad = np.empty(d + 1)
        for k in range(d):
            grad[k] = float((cols[k] * g).sum()) + 2.0 * reg * w[k]
        grad[d] = g.sum()
        return loss, grad

    res = minimize(
        objective,
        np.zeros(d + 1),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 10_000, "ftol": 1e-15, "gtol": 1e-10},
    )
    if not np.all(np.isfinite(res.x)):
        raise RuntimeError(f"calibration fit diverged: {res.message}")
    w_std, b_std = res.x[:d], float(res.x[d])
    w = w_std / sd
    b = b_std - float((w * mu).sum())
    return w, b


def _require(d: Mapping[str, Any], keys: tuple[str, ...], kind: str) -> dict[str, float]:
    if not isinstance(d, Mapping):
        raise ValueError(f"calibration dict must be a mapping, got {type(d).__name__}")
    if d.get("kind") != kind:
        raise ValueError(f"calibration dict has kind {d.get('kind')!r}, expected {kind!r}")
    missing = [k for k in keys if k not in d]
    if missing:
        raise ValueError(f"{kind} calibration dict is missing {missing}: got keys {sorted(d)}")
    out = {}
    for k in keys:
        try:
            v = float(d[k])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"calibration field {k!r} must be a number, got {d[k]!r}") from exc
        if not math.isfinite(v):
            raise ValueError(f"calibration field {k!r} must be finite, got {v!r}")
        out[k] = v
    return out


# --------------------------------------------------------------------------- calibrators


@dataclass
class LinearCalibration:
    """llr = a·s + b, fitted by prior-weighted logistic regression (see module docstring).

    ``p_eff``: effective prior the two classes are reweighted to (0.5 = balanced; the stage
    takes `evaluate.calibration.p_eff`).
    """

    p_eff: float
    reg: float = 1e-6
    a: float = math.nan
    b: float = math.nan

    kind: ClassVar[str] = "linear"

    @property
    def fitted(self) -> bool:
        return math.isfinite(self.a) and math.isfinite(self.b)

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or from_dict()")

    def fit(self, scores: ArrayLike, labels: ArrayLike) -> LinearCalibration:
        """Fit a, b on a calibration trial list; returns self."""
        s, y = validate_trials(scores, labels)
        _as_1d(s, "scores")  # finite
        w, b = _fit_weighted_logreg(s[:, None], y, _check_p_eff(self.p_eff), float(self.reg))
        self.a, self.b = float(w[0]), b
        return self

    def transform(self, scores: ArrayLike) -> NDArray[np.float64]:
        """LLRs: a·s + b."""
        self._check_fitted()
        return self.a * _as_1d(scores, "scores") + self.b

    def bayes_threshold(self, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
        """LLR threshold θ = log(C_fa·(1−P) / (C_miss·P)) (accept if llr >= θ)."""
        return _bayes_threshold(p_target, c_miss, c_fa)

    def score_threshold(self, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
        """Raw-score threshold equivalent to the Bayes decision: s* = (θ − b) / a.

        For a > 0, ``s >= s*`` iff ``a·s + b >= θ``. Raises ``ValueError`` if a <= 0.
        """
        self._check_fitted()
        if self.a <= 0:
            raise ValueError(f"score_threshold needs a positive slope, got a={self.a!r}")
        return (self.bayes_threshold(p_target, c_miss, c_fa) - self.b) / self.a

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "linear", "a", "b", "p_eff"}``, plain floats (JSON-serializable)."""
        self._check_fitted()
        return {
            "kind": self.kind,
            "a": float(self.a),
            "b": float(self.b),
            "p_eff": float(self.p_eff),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LinearCalibration:
        v = _require(d, ("a", "b"), cls.kind)
        return cls(
            p_eff=_check_p_eff(_require(d, ("p_eff",), cls.kind)["p_eff"]), a=v["a"], b=v["b"]
        )


@dataclass
class QualityCalibration:
    """llr = a·s + b + c·q with q a per-trial quality measure (e.g. :func:`log_min_duration`).

    Fitted like :class:`LinearCalibration` with q as a second input. ``quality_name`` names
    the measure so that a packaged model says which q it expects.
    """

    p_eff: float
    reg: float = 1e-6
    quality_name: str = "log_min_duration"
    a: float = math.nan
    b: float = math.nan
    c: float = math.nan

    kind: ClassVar[str] = "quality"

    @property
    def fitted(self) -> bool:
        return all(math.isfinite(v) for v in (self.a, self.b, self.c))

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or from_dict()")

    def fit(self, scores: ArrayLike, labels: ArrayLike, quality: ArrayLike) -> QualityCalibration:
        """Fit a, b, c on a calibration trial list with one quality value per trial."""
        s, y = validate_trials(scores, labels)
        _as_1d(s, "scores")
        q = _as_1d(quality, "quality", s.size)
        w, b = _fit_weighted_logreg(
            np.column_stack((s, q)), y, _check_p_eff(self.p_eff), float(self.reg)
        )
        self.a, self.c, self.b = float(w[0]), float(w[1]), b
        return self

    def transform(self, scores: ArrayLike, quality: ArrayLike) -> NDArray[np.float64]:
        """LLRs: a·s + b + c·q (``quality`` per trial, or one scalar for all)."""
        self._check_fitted()
        s = _as_1d(scores, "scores")
        q = np.full(s.size, float(quality)) if np.ndim(quality) == 0 else quality
        return self.a * s + self.b + self.c * _as_1d(q, "quality", s.size)

    def bayes_threshold(self, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
        """LLR threshold θ = log(C_fa·(1−P) / (C_miss·P)) (accept if llr >= θ)."""
        return _bayes_threshold(p_target, c_miss, c_fa)

    def score_threshold(
        self, p_target: float, quality: ArrayLike, c_miss: float = 1.0, c_fa: float = 1.0
    ) -> float | NDArray[np.float64]:
        """Raw-score threshold for the given quality: s*(q) = (θ − b − c·q) / a (a > 0)."""
        self._check_fitted()
        if self.a <= 0:
            raise ValueError(f"score_threshold needs a positive slope, got a={self.a!r}")
        theta = self.bayes_threshold(p_target, c_miss, c_fa)
        if np.ndim(quality) == 0:
            return (theta - self.b - self.c * float(quality)) / self.a
        return (theta - self.b - self.c * _as_1d(quality, "quality")) / self.a

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "quality", "a", "b", "c", "p_eff", "quality_name"}`` (JSON-serializable)."""
        self._check_fitted()
        return {
            "kind": self.kind,
            "a": float(self.a),
            "b": float(self.b),
            "c": float(self.c),
            "p_eff": float(self.p_eff),
            "quality_name": str(self.quality_name),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QualityCalibration:
        v = _require(d, ("a", "b", "c"), cls.kind)
        return cls(
            p_eff=_check_p_eff(_require(d, ("p_eff",), cls.kind)["p_eff"]),
            quality_name=str(d.get("quality_name", "log_min_duration")),
            a=v["a"],
            b=v["b"],
            c=v["c"],
        )


_KINDS: dict[str, type[LinearCalibration] | type[QualityCalibration]] = {
    LinearCalibration.kind: LinearCalibration,
    QualityCalibration.kind: QualityCalibration,
}


def calibration_from_dict(d: Mapping[str, Any]) -> LinearCalibration | QualityCalibration:
    """Rebuild a calibrator from ``to_dict()`` output, dispatching on ``d["kind"]``."""
    if not isinstance(d, Mapping) or "kind" not in d:
        raise ValueError(f"calibration dict needs a 'kind' field, got {d!r}")
    kind = d["kind"]
    if kind not in _KINDS:
        raise ValueError(f"unknown calibration kind {kind!r}; known: {sorted(_KINDS)}")
    return _KINDS[kind].from_dict(d)
