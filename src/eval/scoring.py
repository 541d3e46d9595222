"""Trial scoring: cosine similarity, AS-norm, and the packaged scorer (scores -> LLRs).

* Cosine: s = <e, t> / (|e| |t|).
* AS-norm (adaptive symmetric score normalization, Matějka et al. 2017) against a cohort of
  training-speaker mean embeddings:

      s' = ½ [ (s − μ_e) / σ_e + (s − μ_t) / σ_t ]

  where μ_e, σ_e are the mean and standard deviation (ddof = 0) of the top-N cosine scores
  between the enrollment embedding and the cohort (the N most similar cohort speakers), and
  μ_t, σ_t the same for the test embedding. N = ``top_n`` (capped at the cohort size).

The scoring settings (method, top-N, the cohort itself, encrypted: :mod:`speakerops.eval.sealed`)
and the calibration travel inside the packaged model (``SpeakerEncoder.extras["scoring"]`` and
``["calibration"]``); :class:`Scorer` rebuilds them (an AS-norm model with the store's keyring),
so a user of a registered model gets LLRs and the threshold for a stated operating point::

    encoder = load_encoder("models:/speaker-encoder@champion")
    scorer = Scorer.from_encoder(encoder, keyring=keyring_from_cfg(compose()))
    quality = QualitySettings.from_config(compose().quality)  # conf `quality`
    verify_audio(encoder, scorer, (wav_a, 16000), (wav_b, 8000), quality)
    # at the packaged operating point, e.g. P_target 0.01:
    # {'score': ..., 'llr': ..., 'threshold': 4.595..., 'accept': False, 'p_target': 0.01,
    #  'enroll_speech_s': ..., 'test_speech_s': ...}

:func:`verify_audio` is the scoring entry point for audio: both sides pass the input checks
(net speech after VAD, clipping, DC offset; :mod:`speakerops.data.quality`) before anything is
embedded, and a refusal raises :class:`~speakerops.data.quality.QualityError` naming the side,
the check, the value and the limit: no decision is made on audio too short or too poor. With
a ``countermeasure`` (:class:`~speakerops.models.countermeasure.Countermeasure` carrying its
operating point) the result also holds ``countermeasure: {score, threshold, spoof_suspected}``
of the test side, and spoof-suspected audio is never accepted (the cascade the service runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from speakerops.core.keys import Keyring
from speakerops.data.audio import validate_waveform
from speakerops.data.quality import QualitySettings, check_quality
from speakerops.eval.calibration import (
    LinearCalibration,
    QualityCalibration,
    calibration_from_dict,
    log_min_duration,
)
from speakerops.eval.metrics import bayes_threshold
from speakerops.eval.sealed import is_sealed, open_cohort, weights_binding
from speakerops.eval.trials import TrialSet

__all__ = [
    "METHODS",
    "ScoreNormalization",
    "Scorer",
    "asnorm",
    "asnorm_scores",
    "cohort_stats",
    "cosine_scores",
    "l2_normalize",
    "system_scores",
    "verify_audio",
]

METHODS = ("cosine", "asnorm")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length: x / |x|."""
    x = np.asarray(x, dtype=np.float64)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)


def _trial_index(
    embeddings: Mapping[str, np.ndarray], trials: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit-norm matrix of the utterances used, enroll row per trial, test row per trial)."""
    missing = (set(trials["enroll"]) | set(trials["test"])) - set(embeddings)
    if missing:
        raise KeyError(
            f"{len(missing)} trial utterances have no embedding, e.g. {sorted(missing)[:3]}"
        )
    ids = list(embeddings)
    pos = {u: i for i, u in enumerate(ids)}
    mat = l2_normalize(np.stack([embeddings[u] for u in ids]))
    return mat, trials["enroll"].map(pos).to_numpy(), trials["test"].map(pos).to_numpy()


def cosine_scores(embeddings: Mapping[str, np.ndarray], trials: pd.DataFrame) -> np.ndarray:
    """s = <e, t> / (|e| |t|) for each trial row (`enroll`, `test` name embeddings)."""
    mat, e, t = _trial_index(embeddings, trials)
    return np.einsum("ij,ij->i", mat[e], mat[t])


def cohort_stats(x: np.ndarray, cohort: np.ndarray, top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``x``: mean and standard deviation (ddof 0) of its ``top_n`` largest cosine
    scores against the cohort. ``top_n`` is capped at the cohort size."""
    c = l2_normalize(cohort)
    if c.ndim != 2 or c.shape[0] < 2:
        raise ValueError(f"AS-norm cohort needs at least 2 entries, got shape {c.shape}")
    n = int(top_n)
    if n < 2:
        raise ValueError(f"AS-norm top_n must be >= 2, got {top_n!r}")
    n = min(n, c.shape[0])
    sims = l2_normalize(x) @ c.T
    top = np.partition(sims, sims.shape[1] - n, axis=1)[:, sims.shape[1] - n :]
    return top.mean(axis=1), top.std(axis=1)


def asnorm(
    raw: np.ndarray, mu_e: np.ndarray, sd_e: np.ndarray, mu_t: np.ndarray, sd_t: np.ndarray
) -> np.ndarray:
    """s' = ½ [(s − μ_e)/σ_e + (s − μ_t)/σ_t] (σ floored at 1e-6)."""
    sd_e = np.maximum(sd_e, 1e-6)
    sd_t = np.maximum(sd_t, 1e-6)
    return 0.5 * ((raw - mu_e) / sd_e + (raw - mu_t) / sd_t)


def asnorm_scores(
    embeddings: Mapping[str, np.ndarray], trials: pd.DataFrame, cohort: np.ndarray, top_n: int
) -> np.ndarray:
    """AS-norm scores of the trials (cohort statistics computed once per utterance)."""
    mat, e, t = _trial_index(embeddings, trials)
    mu, sd = cohort_stats(mat, cohort, top_n)
    raw = np.einsum("ij,ij->i", mat[e], mat[t])
    return asnorm(raw, mu[e], sd[e], mu[t], sd[t])


@dataclass
class ScoreNormalization:
    """How raw cosine scores are normalized: ``cosine`` (none) or ``asnorm`` with a cohort."""

    method: str = "cosine"
    top_n: int | None = None  # AS-norm only: evaluate.scoring.top_n, or the packaged value
    cohort: np.ndarray | None = None
    cohort_speakers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"score normalization {self.method!r}: expected one of {METHODS}")
        if self.method == "asnorm":
            if self.cohort is None or np.asarray(self.cohort).ndim != 2:
                raise ValueError("AS-norm needs a cohort: a [C, D] array of speaker embeddings")
            self.cohort = np.asarray(self.cohort, dtype=np.float32)
            if self.cohort.shape[0] < 2:
                raise ValueError(f"AS-norm cohort has {self.cohort.shape[0]} entries: need >= 2")
            if self.top_n is None or int(self.top_n) < 2:
                raise ValueError(f"AS-norm top_n must be >= 2, got {self.top_n!r}")

    @property
    def effective_top_n(self) -> int | None:
        """N actually used (top_n capped at the cohort size); None for cosine."""
        if self.method != "asnorm":
            return None
        return min(int(self.top_n), int(self.cohort.shape[0]))

    def score(self, embeddings: Mapping[str, np.ndarray], trials: pd.DataFrame) -> np.ndarray:
        """Scores of the trial rows (`enroll`, `test` name keys of ``embeddings``)."""
        if self.method == "asnorm":
            return asnorm_scores(embeddings, trials, self.cohort, self.top_n)
        return cosine_scores(embeddings, trials)

    def score_pairs(self, enroll: np.ndarray, test: np.ndarray) -> np.ndarray:
        """Scores of row-aligned embedding pairs ``enroll[i]`` vs ``test[i]`` ([N, D] or [D])."""
        e = l2_normalize(np.atleast_2d(enroll))
        t = l2_normalize(np.atleast_2d(test))
        if e.shape != t.shape:
            raise ValueError(f"enroll and test embeddings differ in shape: {e.shape} vs {t.shape}")
        raw = np.einsum("ij,ij->i", e, t)
        if self.method == "asnorm":
            mu_e, sd_e = cohort_stats(e, self.cohort, self.top_n)
            mu_t, sd_t = cohort_stats(t, self.cohort, self.top_n)
            return asnorm(raw, mu_e, sd_e, mu_t, sd_t)
        return raw

    def to_dict(self) -> dict[str, Any]:
        """What travels in the packaged model (the cohort as a float32 array)."""
        out: dict[str, Any] = {"method": self.method}
        if self.method == "asnorm":
            out.update(
                top_n=int(self.top_n),
                cohort=np.asarray(self.cohort, dtype=np.float32),
                cohort_speakers=[str(s) for s in self.cohort_speakers],
            )
        return out

    def describe(self) -> str:
        if self.method == "asnorm":
            return (
                f"AS-norm (top-{self.effective_top_n} of {self.cohort.shape[0]} "
                "training-speaker cohort means)"
            )
        return "cosine"

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any] | None, keyring: Keyring | None = None, binding: str | None = None
    ) -> ScoreNormalization:
        """Rebuild from :meth:`to_dict`, or from its sealed form (the cohort decrypted with
        ``keyring``, bound to the weights ``binding``); None (packaged before AS-norm) is cosine."""
        if d is None:
            return cls("cosine")
        if not isinstance(d, Mapping) or "method" not in d:
            raise ValueError(f"scoring settings need a 'method' field, got {d!r}")
        if d["method"] == "asnorm":
            sealed = is_sealed(d)
            cohort = open_cohort(d, keyring, binding) if sealed else np.asarray(d.get("cohort"))
            return cls("asnorm", d.get("top_n"), cohort, list(d.get("cohort_speakers", [])))
        return cls(str(d["method"]))


@dataclass
class Scorer:
    """Packaged scoring: normalization + calibration (scores -> LLRs) + Bayes thresholds at
    the packaged operating point (or one given per call)."""

    normalization: ScoreNormalization
    calibration: LinearCalibration | QualityCalibration | None = None
    operating_point: Mapping[str, float] | None = None

    @classmethod
    def from_encoder(cls, encoder: Any, keyring: Keyring | None = None) -> Scorer:
        """From a ``SpeakerEncoder``'s ``extras`` (``scoring``, ``calibration``,
        ``operating_point``); an encrypted AS-norm cohort needs the store's ``keyring``."""
        extras = getattr(encoder, "extras", {}) or {}
        sealed = is_sealed(extras.get("scoring"))
        return cls.from_extras(extras, keyring, weights_binding(encoder) if sealed else None)

    @classmethod
    def from_extras(
        cls, extras: Mapping[str, Any], keyring: Keyring | None = None, binding: str | None = None
    ) -> Scorer:
        cal = extras.get("calibration")
        op = extras.get("operating_point")
        return cls(
            ScoreNormalization.from_dict(extras.get("scoring"), keyring, binding),
            calibration_from_dict(cal) if cal is not None else None,
            dict(op) if op is not None else None,
        )

    @property
    def needs_durations(self) -> bool:
        return isinstance(self.calibration, QualityCalibration)

    def score(self, embeddings: Mapping[str, np.ndarray], trials: pd.DataFrame) -> np.ndarray:
        return self.normalization.score(embeddings, trials)

    def to_llr(
        self,
        scores: np.ndarray,
        enroll_durations: np.ndarray | None = None,
        test_durations: np.ndarray | None = None,
    ) -> np.ndarray:
        """LLRs of (normalized) scores with the packaged calibration; a quality calibration
        needs both sides' durations in seconds (q = log min duration)."""
        if self.calibration is None:
            raise ValueError("this model carries no calibration: it gives scores, not LLRs")
        if isinstance(self.calibration, QualityCalibration):
            if enroll_durations is None or test_durations is None:
                raise ValueError(
                    "this model's calibration is quality-aware: pass the enrollment and test "
                    "durations (seconds)"
                )
            q = log_min_duration(
                np.atleast_1d(enroll_durations).astype(float),
                np.atleast_1d(test_durations).astype(float),
            )
            return self.calibration.transform(np.atleast_1d(scores), q)
        return self.calibration.transform(np.atleast_1d(scores))

    @staticmethod
    def threshold(p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
        """The LLR threshold of the Bayes decision at an operating point:
        θ = log(C_fa·(1−P) / (C_miss·P)); accept iff llr >= θ."""
        return bayes_threshold(p_target, c_miss, c_fa)

    def verify(
        self,
        enroll: np.ndarray,
        test: np.ndarray,
        p_target: float | None = None,
        durations: tuple[float, float] | None = None,
        c_miss: float = 1.0,
        c_fa: float = 1.0,
    ) -> dict[str, Any]:
        """Score one pair of embeddings: the normalized score, its LLR, the Bayes threshold at
        ``p_target`` (by default the packaged operating point, with its costs) and the
        decision (accept iff llr >= threshold)."""
        s = self.normalization.score_pairs(enroll, test)
        d_e, d_t = durations if durations is not None else (None, None)
        llr = float(self.to_llr(s, d_e, d_t)[0])
        if p_target is None:
            if self.operating_point is None:
                raise ValueError("this model carries no operating point: pass p_target")
            op = self.operating_point
            p_target, c_miss, c_fa = op["p_target"], op.get("c_miss", 1.0), op.get("c_fa", 1.0)
        theta = self.threshold(p_target, c_miss, c_fa)
        return {
            "score": float(s[0]),
            "llr": llr,
            "threshold": theta,
            "accept": bool(llr >= theta),
            "p_target": float(p_target),
        }


def system_scores(
    scorer: Scorer, embeddings: Mapping[str, np.ndarray], trials: TrialSet
) -> tuple[np.ndarray, np.ndarray | None]:
    """(normalized scores, LLRs or None without calibration) of a trial set with a scorer."""
    scores = scorer.score(embeddings, trials.table)
    if scorer.calibration is None:
        return scores, None
    t = trials.table
    if scorer.needs_durations:
        return scores, scorer.to_llr(
            scores, t["enroll_duration"].to_numpy(float), t["duration"].to_numpy(float)
        )
    return scores, scorer.to_llr(scores)


def verify_audio(
    encoder: Any,
    scorer: Scorer,
    enroll: tuple[np.ndarray, int],
    test: tuple[np.ndarray, int],
    quality: QualitySettings,
    p_target: float | None = None,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
    countermeasure: Any = None,
) -> dict[str, Any]:
    """Check, embed and score one (enrollment, test) pair of ``(waveform, sample_rate)`` at
    ``p_target`` (default: the packaged operating point); raises
    :class:`~speakerops.data.quality.QualityError` naming the side when either is refused."""
    speech = [
        check_quality(np.asarray(wav, np.float32), int(rate), quality, side).speech_s
        for side, (wav, rate) in (("enroll", enroll), ("test", test))
    ]
    e = encoder.embed(enroll[0], int(enroll[1]), "enroll")
    t = encoder.embed(test[0], int(test[1]), "test")
    for side, emb in (("enroll", e), ("test", t)):
        if not np.all(np.isfinite(emb)):
            raise ValueError(f"{side}: the encoder gave a non-finite embedding; nothing scored")
    durations = (len(enroll[0]) / int(enroll[1]), len(test[0]) / int(test[1]))
    out = scorer.verify(e, t, p_target, durations, c_miss, c_fa)
    if countermeasure is not None:
        rate = countermeasure.sample_rate
        cm = countermeasure.assess(validate_waveform(test[0], int(test[1]), "test", rate)[0])
        out = {**out, "countermeasure": cm, "accept": out["accept"] and not cm["spoof_suspected"]}
    return {**out, "enroll_speech_s": speech[0], "test_speech_s": speech[1]}
