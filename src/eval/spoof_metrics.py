"""Spoofing-aware metrics (countermeasure, and speaker model + countermeasure): the one place
their definitions live, beside the verification metrics of :mod:`speakerops.eval.metrics`
(whose DET points and EER they reuse: ties pooled, accept iff score >= threshold).

Conventions: CM scores are higher for bona fide speech; ``bonafide`` is the CM label (1 = bona
fide, 0 = spoof). SASV trials have a ``kind`` each: ``target`` (bona fide, same speaker),
``nontarget`` (bona fide, other speaker), ``spoof`` (a spoof of the claimed speaker). The cost
parameters are the published ones, stated once in ``conf/spoof/default.yaml`` (``metrics``).

* **CM EER** (ASVspoof): the ROCCH-EER of :func:`speakerops.eval.metrics.eer` with bona fide
  as the positive class: P_miss^cm(s) = #{bona fide < s} / N_bona, P_fa^cm(s) = #{spoof >= s} / N_spoof.
* **min t-DCF** (ASVspoof 2019 evaluation plan, Kinnunen et al. 2018; the t-DCF v1 code): the ASV
  system is fixed at its EER threshold on bona fide targets vs non-targets, giving P_miss^asv,
  P_fa^asv and P_miss,spoof^asv (spoofs it rejects). With P_tar = (1 − π_spoof)·ρ,
  P_non = (1 − π_spoof)·(1 − ρ)::

      C1 = P_tar·(C_miss^cm − C_miss^asv·P_miss^asv) − P_non·C_fa^asv·P_fa^asv
      C2 = C_fa^cm·π_spoof·(1 − P_miss,spoof^asv)
      t-DCF(s) = C1·P_miss^cm(s) + C2·P_fa^cm(s),   min t-DCF = min_s t-DCF(s) / min(C1, C2)

  over every CM threshold incl. accept-all and reject-all (so min t-DCF ≤ 1). Published:
  π_spoof = 0.05, ρ = 0.99, C_miss^asv = 1, C_fa^asv = 10, C_miss^cm = 1, C_fa^cm = 10.
* **SASV-EER** (SASV 2022): the EER of the joint score with targets positive and non-targets
  *and* spoofs negative; beside it SV-EER (targets vs non-targets) and SPF-EER (targets vs spoofs).
* **min a-DCF** (ASVspoof 5, Shim et al. 2024)::

      a-DCF(t) = C_miss·π_tar·P_miss(t) + C_fa,asv·π_non·P_fa,non(t) + C_fa,cm·π_spf·P_fa,spf(t)
      min a-DCF = min_t a-DCF(t) / min(C_miss·π_tar, C_fa,asv·π_non + C_fa,cm·π_spf)

  (P_miss over targets, P_fa,non over non-targets, P_fa,spf over spoofs; accept iff s >= t, every
  distinct score and +inf). Published: π_tar = 0.9, π_non = π_spf = 0.05, C_miss = 1,
  C_fa,asv = 10, C_fa,cm = 20.
* **CM operating threshold** (``registry/policy.yaml`` ``countermeasure.operating_point``; audio
  is spoof-suspected iff its CM score < t): rule ``eer``, the single DET threshold closest to
  P_miss^cm = P_fa^cm (:func:`speakerops.eval.metrics.eer_threshold`); rule
  ``bonafide_rejection`` with rate r, t = the ⌊r·N_bona⌋-th smallest bona fide score (0-based),
  so at most a fraction r of the bona fide scores lies below t.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from speakerops.eval.metrics import det_curve, eer, eer_threshold
from speakerops.eval.trials import validate_trials

__all__ = [
    "KINDS",
    "asv_operating_point",
    "cm_eer",
    "cm_threshold",
    "min_a_dcf",
    "min_t_dcf",
    "sasv_eers",
]

KINDS = ("target", "nontarget", "spoof")


def _kind_masks(
    scores: ArrayLike, kinds: ArrayLike
) -> tuple[NDArray[np.float64], dict[str, NDArray]]:
    s = np.asarray(scores, dtype=np.float64)
    k = np.asarray(kinds).astype(str)
    if s.ndim != 1 or s.shape != k.shape:
        raise ValueError(f"scores {s.shape} and kinds {k.shape} must be 1-D of equal length")
    if np.isnan(s).any():
        raise ValueError(f"scores contain {int(np.isnan(s).sum())} NaN value(s)")
    unknown = sorted(set(k) - set(KINDS))
    if unknown:
        raise ValueError(f"kinds {unknown[:3]}: expected {', '.join(KINDS)}")
    masks = {name: k == name for name in KINDS}
    missing = [name for name, m in masks.items() if not m.any()]
    if missing:
        raise ValueError(f"SASV trials have no {', '.join(missing)} trial")
    return s, masks


def cm_eer(cm_scores: ArrayLike, bonafide: ArrayLike) -> float:
    """CM EER: bona fide (1) vs spoof (0), higher CM score = bona fide (module doc)."""
    return eer(cm_scores, bonafide)


def cm_threshold(cm_scores: ArrayLike, bonafide: ArrayLike, rule: Mapping[str, object]) -> float:
    """The CM score threshold of an operating-point rule (module doc): ``{"rule": "eer"}`` or
    ``{"rule": "bonafide_rejection", "rate": r}``; spoof-suspected iff score < threshold."""
    if rule.get("rule") == "eer":
        s, y = validate_trials(cm_scores, bonafide)
        return float(eer_threshold(s, y)[1])
    if rule.get("rule") == "bonafide_rejection":  # bona fide scores only (a deployment's list)
        s, y = np.asarray(cm_scores, dtype=np.float64), np.asarray(bonafide).astype(bool)
        if s.shape != y.shape or not np.isfinite(s).all() or not y.any():
            raise ValueError(
                f"countermeasure operating point {dict(rule)!r}: needs finite scores of one or "
                f"more bona fide items (got {int(y.sum())} bona fide of {s.size})"
            )
        bona = np.sort(s[y])
        return float(bona[int(np.floor(float(rule["rate"]) * len(bona)))])  # type: ignore[arg-type]
    raise ValueError(f"countermeasure operating point {dict(rule)!r}: unknown rule")


def asv_operating_point(asv_scores: ArrayLike, kinds: ArrayLike) -> dict[str, float]:
    """The ASV system at its EER threshold on bona fide targets vs non-targets: threshold,
    P_miss^asv, P_fa^asv and P_miss,spoof^asv (the share of spoofs scored below it)."""
    s, m = _kind_masks(asv_scores, kinds)
    bona = m["target"] | m["nontarget"]
    _, thr = eer_threshold(s[bona], m["target"][bona])
    return {
        "threshold": thr,
        "p_miss": float(np.mean(s[m["target"]] < thr)),
        "p_fa": float(np.mean(s[m["nontarget"]] >= thr)),
        "p_miss_spoof": float(np.mean(s[m["spoof"]] < thr)),
    }


def min_t_dcf(
    cm_scores: ArrayLike, bonafide: ArrayLike, asv: Mapping[str, float], cost: Mapping[str, float]
) -> float:
    """Normalized min t-DCF (ASVspoof 2019, module doc) of CM scores for an ASV system at the
    operating point ``asv`` (:func:`asv_operating_point`) under ``cost`` (keys p_spoof,
    p_target_bonafide, c_miss_asv, c_fa_asv, c_miss_cm, c_fa_cm)."""
    s, y = validate_trials(cm_scores, bonafide, name="cm_scores")
    p_spoof = float(cost["p_spoof"])
    p_tar = (1.0 - p_spoof) * float(cost["p_target_bonafide"])
    p_non = (1.0 - p_spoof) * (1.0 - float(cost["p_target_bonafide"]))
    c1 = p_tar * (float(cost["c_miss_cm"]) - float(cost["c_miss_asv"]) * asv["p_miss"])
    c1 -= p_non * float(cost["c_fa_asv"]) * asv["p_fa"]
    c2 = float(cost["c_fa_cm"]) * p_spoof * (1.0 - asv["p_miss_spoof"])
    if c1 <= 0 or c2 <= 0:
        raise ValueError(
            f"t-DCF weights C1={c1:.4g}, C2={c2:.4g} must be positive: the ASV operating point "
            f"(P_miss={asv['p_miss']:.3f}, P_fa={asv['p_fa']:.3f}, "
            f"P_miss,spoof={asv['p_miss_spoof']:.3f}) leaves no cost for the CM to reduce"
        )
    p_fa_cm, p_miss_cm, _ = det_curve(s, y)
    return float(np.min(c1 * p_miss_cm + c2 * p_fa_cm) / min(c1, c2))


def sasv_eers(scores: ArrayLike, kinds: ArrayLike) -> dict[str, float]:
    """SASV-EER (targets vs non-targets + spoofs), SV-EER and SPF-EER of joint scores."""
    s, m = _kind_masks(scores, kinds)
    tar = m["target"]
    return {
        "sasv_eer": eer(s, tar),
        "sv_eer": eer(s[tar | m["nontarget"]], tar[tar | m["nontarget"]]),
        "spf_eer": eer(s[tar | m["spoof"]], tar[tar | m["spoof"]]),
    }


def min_a_dcf(scores: ArrayLike, kinds: ArrayLike, cost: Mapping[str, float]) -> float:
    """Normalized min a-DCF (ASVspoof 5, module doc) of joint scores under ``cost`` (keys
    p_target, p_nontarget, p_spoof, c_miss, c_fa_asv, c_fa_cm)."""
    s, m = _kind_masks(scores, kinds)
    thr = np.append(np.unique(s), np.inf)
    rate_below = {
        k: np.searchsorted(np.sort(s[mk]), thr, side="left") / mk.sum() for k, mk in m.items()
    }
    w_miss = float(cost["c_miss"]) * float(cost["p_target"])
    w_non = float(cost["c_fa_asv"]) * float(cost["p_nontarget"])
    w_spf = float(cost["c_fa_cm"]) * float(cost["p_spoof"])
    dcf = w_miss * rate_below["target"] + w_non * (1.0 - rate_below["nontarget"])
    dcf += w_spf * (1.0 - rate_below["spoof"])
    return float(dcf.min() / min(w_miss, w_non + w_spf))
