"""Spoofing-aware metrics against brute force: CM EER, min t-DCF (ASVspoof 2019), SASV-EER,
min a-DCF (ASVspoof 5), with the published cost models of conf/spoof/default.yaml."""

from __future__ import annotations

import math

import numpy as np
import pytest

from speakerops.core.config import compose
from speakerops.eval import spoof_metrics as SM

from .test_metrics import bf_eer

COST = compose().spoof.metrics


def _sasv(seed: int, tied: bool = False):
    """ASV and CM scores of SASV trials: targets high on ASV, spoofs high on ASV but low on CM."""
    rng = np.random.default_rng(seed)
    kinds = np.array(["target"] * 60 + ["nontarget"] * 120 + ["spoof"] * 80)
    asv = np.concatenate([rng.normal(2, 1, 60), rng.normal(-1, 1, 120), rng.normal(1.2, 1, 80)])
    cm = np.concatenate([rng.normal(1, 1, 180), rng.normal(-1.5, 1, 80)])
    if tied:
        asv, cm = np.round(asv, 1), np.round(cm, 1)
    return asv, cm, kinds


CASES = [(seed, tied) for seed in range(3) for tied in (False, True)]


def bf_rates(s, y, t):
    s, y = list(map(float, s)), list(map(bool, y))
    miss = sum(1 for a, b in zip(s, y, strict=True) if b and a < t) / sum(y)
    fa = sum(1 for a, b in zip(s, y, strict=True) if not b and a >= t) / (len(y) - sum(y))
    return miss, fa


def bf_t_dcf(cm, bona, asv, kinds, c):
    """ASVspoof 2019 t-DCF v1, written out: ASV at its closest-crossing EER threshold, then
    every CM threshold (each score, +inf and -inf) by explicit counting."""
    bona_mask = kinds != "spoof"
    thr_asv = SM.eer_threshold(asv[bona_mask], (kinds == "target")[bona_mask])[1]
    tar, non, spf = (asv[kinds == k] for k in ("target", "nontarget", "spoof"))
    pmiss_asv = sum(1 for v in tar if v < thr_asv) / len(tar)
    pfa_asv = sum(1 for v in non if v >= thr_asv) / len(non)
    pmiss_spoof = sum(1 for v in spf if v < thr_asv) / len(spf)
    ptar = (1 - c.p_spoof) * c.p_target_bonafide
    pnon = (1 - c.p_spoof) * (1 - c.p_target_bonafide)
    c1 = ptar * (c.c_miss_cm - c.c_miss_asv * pmiss_asv) - pnon * c.c_fa_asv * pfa_asv
    c2 = c.c_fa_cm * c.p_spoof * (1 - pmiss_spoof)
    best = math.inf
    for t in sorted(set(map(float, cm))) + [math.inf, -math.inf]:
        miss, fa = bf_rates(cm, bona, t)
        best = min(best, (c1 * miss + c2 * fa) / min(c1, c2))
    return best


def bf_a_dcf(s, kinds, c):
    best = math.inf
    tar, non, spf = ([float(v) for v in s[kinds == k]] for k in ("target", "nontarget", "spoof"))
    for t in sorted(set(map(float, s))) + [math.inf, -math.inf]:
        miss = sum(v < t for v in tar) / len(tar)
        fa_non = sum(v >= t for v in non) / len(non)
        fa_spf = sum(v >= t for v in spf) / len(spf)
        cost = c.c_miss * c.p_target * miss + c.c_fa_asv * c.p_nontarget * fa_non
        cost += c.c_fa_cm * c.p_spoof * fa_spf
        best = min(
            best,
            cost / min(c.c_miss * c.p_target, c.c_fa_asv * c.p_nontarget + c.c_fa_cm * c.p_spoof),
        )
    return best


def test_published_cost_models() -> None:
    assert dict(COST.t_dcf) == {"p_spoof": 0.05, "p_target_bonafide": 0.99, "c_miss_asv": 1.0,
                                "c_fa_asv": 10.0, "c_miss_cm": 1.0, "c_fa_cm": 10.0}  # fmt: skip
    assert dict(COST.a_dcf) == {"p_target": 0.9, "p_nontarget": 0.05, "p_spoof": 0.05,
                                "c_miss": 1.0, "c_fa_asv": 10.0, "c_fa_cm": 20.0}  # fmt: skip


@pytest.mark.parametrize(("seed", "tied"), CASES)
def test_metrics_match_brute_force(seed: int, tied: bool) -> None:
    asv, cm, kinds = _sasv(seed, tied)
    bona = (kinds != "spoof").astype(int)
    assert SM.cm_eer(cm, bona) == pytest.approx(bf_eer(cm, bona), abs=1e-9)
    point = SM.asv_operating_point(asv, kinds)
    got = SM.min_t_dcf(cm, bona, point, COST.t_dcf)
    assert got == pytest.approx(bf_t_dcf(cm, bona, asv, kinds, COST.t_dcf), abs=1e-9)
    assert 0.0 <= got <= 1.0
    tar = kinds == "target"
    e = SM.sasv_eers(asv, kinds)
    assert e["sasv_eer"] == pytest.approx(bf_eer(asv, tar), abs=1e-9)
    sv = kinds != "spoof"
    assert e["sv_eer"] == pytest.approx(bf_eer(asv[sv], tar[sv]), abs=1e-9)
    sp = kinds != "nontarget"
    assert e["spf_eer"] == pytest.approx(bf_eer(asv[sp], tar[sp]), abs=1e-9)
    assert e["spf_eer"] > e["sv_eer"]  # the spoofs fool the ASV system alone
    assert SM.min_a_dcf(asv, kinds, COST.a_dcf) == pytest.approx(
        bf_a_dcf(asv, kinds, COST.a_dcf), abs=1e-9
    )


def test_a_perfect_countermeasure_fixes_the_pair() -> None:
    asv, cm, kinds = _sasv(7)
    cm = np.where(kinds == "spoof", -10.0, 10.0)  # perfect CM
    bona = (kinds != "spoof").astype(int)
    assert SM.cm_eer(cm, bona) == 0.0
    point = SM.asv_operating_point(asv, kinds)
    # a perfect CM leaves the ASV's own errors: t-DCF = 0 at the separating threshold
    assert SM.min_t_dcf(cm, bona, point, COST.t_dcf) == 0.0
    gated = np.where(cm > 0, asv, -np.inf)  # cascade: spoofs rejected before the ASV
    alone, pair = SM.sasv_eers(asv, kinds), SM.sasv_eers(gated, kinds)
    assert pair["sasv_eer"] < alone["sasv_eer"] and pair["spf_eer"] == 0.0
    assert SM.min_a_dcf(gated, kinds, COST.a_dcf) < SM.min_a_dcf(asv, kinds, COST.a_dcf)


def test_bad_sasv_input_is_named() -> None:
    with pytest.raises(ValueError, match="no spoof trial"):
        SM.sasv_eers([1.0, 0.0], ["target", "nontarget"])
    with pytest.raises(ValueError, match="expected target, nontarget, spoof"):
        SM.min_a_dcf([1.0, 0.0, 2.0], ["target", "nontarget", "replay"], COST.a_dcf)
    asv, cm, kinds = _sasv(1)
    with pytest.raises(ValueError, match="t-DCF weights"):  # an ASV that misses every target
        SM.min_t_dcf(
            cm, kinds != "spoof", {"p_miss": 1.0, "p_fa": 0.0, "p_miss_spoof": 1.0}, COST.t_dcf
        )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cm_threshold_rules_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = np.round(np.concatenate([rng.normal(1, 1, 57), rng.normal(-1, 1, 43)]), 1)  # ties
    y = np.r_[np.ones(57), np.zeros(43)]
    for rate in (0.01, 0.05, 0.2):
        t = SM.cm_threshold(s, y, {"rule": "bonafide_rejection", "rate": rate})
        # brute force: the largest candidate threshold rejecting at most a fraction `rate`
        ok = [c for c in np.unique(s) if (s[y == 1] < c).mean() <= rate]
        assert t == max(ok)
        assert (s[y == 1] < t).mean() <= rate
    # a bona fide only list (the deployment's): the same threshold from its bona fide scores
    bona_only = SM.cm_threshold(
        s[y == 1], np.ones(57), {"rule": "bonafide_rejection", "rate": 0.05}
    )
    assert bona_only == SM.cm_threshold(s, y, {"rule": "bonafide_rejection", "rate": 0.05})
    with pytest.raises(ValueError, match="one or more bona fide"):
        SM.cm_threshold(s[y == 0], np.zeros(43), {"rule": "bonafide_rejection", "rate": 0.05})
    t = SM.cm_threshold(s, y, {"rule": "eer"})
    gaps = {c: abs((s[y == 1] < c).mean() - (s[y == 0] >= c).mean()) for c in np.unique(s)}
    assert gaps[t] == pytest.approx(min(gaps.values()))
    with pytest.raises(ValueError, match="unknown rule"):
        SM.cm_threshold(s, y, {"rule": "median"})
