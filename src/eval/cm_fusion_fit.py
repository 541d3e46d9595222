"""`speakerops spoof fuse`: fit the fusion of several countermeasures on a split that holds
no eval attack (:mod:`speakerops.models.cm_fusion` for the two rules).

Reads `spoof.out_dir/cm_<split>.csv` and `cm_eval.csv` (each checked against its sha256);
refuses when the fit's list holds an attack of the eval list (the fusion must never see the
unseen attacks). The split is ``spoof.fuse.split``, or (null) the policy's countermeasure
operating point's (``calibration``, or ``deployment``: the eval speakers' own bona fide audio,
`spoof.deployment_per_speaker`), so the members are fit where the fused threshold is set.

* ``spoof.fuse.rule: sum`` scores every item of the list with every member and fits
  ``sklearn.linear_model.LogisticRegression`` (``spoof.fuse.C``, class-balanced) on the items all
  members could score (it needs spoofed items: not the bona-fide-only deployment list);
* ``any`` scores the list's bona fide items and standardises each member by their median and
  1.4826 × median absolute deviation (the standard deviation where that is 0, else 1); with
  ``spoof.fuse.standardise: cdf`` it also keeps each member's sorted bona fide scores, and the
  fused score is the lowest of the members' log empirical CDFs (the rejection budget split
  between the members; MAD units alone give it to the one with the longest low tail).

Before either fit, each member is scored on `cm_calibration.csv` (the seen attacks) and refused,
naming it, when its CM EER there is above ``spoof.fuse.max_member_eer`` (null: no check): a
member that failed to train would take its share of the rejection budget and catch nothing
(measured: docs/spoofing-measurements.md). The EERs go to the fit's record.

The fused countermeasure goes to ``spoof.fuse.out_dir`` with its members copied beside it.
`spoof evaluate cm=<that file>` then chooses its operating threshold on the policy's split, as
for a single CM.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from sklearn.linear_model import LogisticRegression

from speakerops.core.policy import cm_operating_point
from speakerops.data.manifest import read_manifest
from speakerops.data.spoof.protocol import BONAFIDE, read_cm_protocol
from speakerops.eval.spoof_eval import cm_scores
from speakerops.eval.spoof_metrics import cm_eer
from speakerops.models.cm_fusion import FILENAME, RULES, FusedCountermeasure, check_standardise
from speakerops.models.countermeasure import Countermeasure


def fit_weights(scores: np.ndarray, labels: np.ndarray, c: float) -> tuple[list[float], float]:
    """Logistic-regression weights and bias of ``[N, n_members]`` logits vs labels (1 = bona fide)."""
    y = np.asarray(labels).astype(int)
    if len(set(y)) != 2:
        raise ValueError("spoof fuse: the calibration items need both bona fide and spoofed ones")
    lr = LogisticRegression(C=float(c), class_weight="balanced", max_iter=1000)
    lr.fit(np.asarray(scores, dtype=float), y)
    return [float(w) for w in lr.coef_[0]], float(lr.intercept_[0])


def robust_scale(scores: np.ndarray) -> tuple[list[float], list[float]]:
    """Per column of ``[N, n_members]`` bona fide scores: median and 1.4826 × MAD (the standard
    deviation where that is 0, else 1): the ``any`` rule's ``loc`` and ``1 / weights``."""
    x = np.asarray(scores, dtype=float)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"spoof fuse rule=any: needs two or more bona fide items, got {len(x)}")
    loc = np.median(x, axis=0)
    scale = 1.4826 * np.median(np.abs(x - loc), axis=0)
    std = x.std(axis=0)
    scale = np.where(scale > 0, scale, np.where(std > 0, std, 1.0))
    return [float(v) for v in loc], [float(v) for v in scale]


def member_eers(
    check: pd.DataFrame | None,
    per_member: Sequence[dict[str, float]],
    member_paths: Sequence[str | Path],
    limit: float | None,
    list_path: Path,
) -> list[float] | None:
    """Each member's CM EER on the seen attacks of `cm_calibration.csv` (``check``, scored in
    ``per_member``); ValueError naming the first above ``limit`` (None when it is null)."""
    if limit is None or check is None:
        return None
    eers = []
    for scores, path in zip(per_member, member_paths, strict=True):
        rows = check[check["utt_id"].isin(scores)]
        eer = cm_eer([scores[u] for u in rows["utt_id"]], rows["label"].to_numpy())
        if eer > float(limit):
            raise ValueError(
                f"spoof fuse: member {path} has CM EER {eer:.3f} on the seen attacks of "
                f"{list_path}, above spoof.fuse.max_member_eer={limit}: it learnt little and "
                "would take a share of the rejection budget; retrain it (more epochs, another "
                "seed) or leave it out of members="
            )
        eers.append(float(eer))
    return eers


def fuse(
    cfg: DictConfig, member_paths: Sequence[str | Path], out: str | Path | None = None
) -> dict:
    """Fit and write the fused CM (module doc); returns its summary."""
    if len(member_paths) < 2:
        raise ValueError(f"spoof fuse: members={list(member_paths)}: give two or more countermeasure files")  # fmt: skip
    rule = str(cfg.spoof.fuse.rule)
    if rule not in RULES:
        raise ValueError(f"spoof.fuse.rule={rule!r}: expected one of {list(RULES)}")
    standardise = str(cfg.spoof.fuse.standardise)
    check_standardise(rule, standardise, "spoof.fuse.")  # before any member scores a file
    split = cfg.spoof.fuse.split or cm_operating_point(cfg.register.policy).get("split", "calibration")  # fmt: skip
    spoof_dir = Path(cfg.spoof.out_dir)
    lst = spoof_dir / f"cm_{split}.csv"
    if not lst.is_file():
        raise FileNotFoundError(
            f"{lst}: not found (spoof fuse fits on split {split!r}); run `speakerops spoof "
            "prepare` (spoof.deployment_per_speaker > 0 for the deployment list)"
        )
    cal, cal_sha = read_cm_protocol(lst)
    ev, _ = read_cm_protocol(spoof_dir / "cm_eval.csv")
    seen = sorted(set(cal["attack"]) - {BONAFIDE})
    leaked = sorted(set(seen) & (set(ev["attack"]) - {BONAFIDE}))
    if leaked:
        raise ValueError(
            f"{lst} holds eval attacks {leaked}: the fusion would see "
            "the unseen attacks; re-run `speakerops spoof prepare` (attack-disjoint splits)"
        )
    if rule == "sum" and not seen:
        raise ValueError(
            f"spoof fuse: {lst} holds no spoofed items, and spoof.fuse.rule=sum fits a "
            "logistic regression of bona fide vs spoofed: use spoof.fuse.rule=any, or "
            "spoof.fuse.split=calibration"
        )
    if rule == "any":
        cal = cal[cal["label"].astype(bool)]
    limit = cfg.spoof.fuse.max_member_eer
    check_path = spoof_dir / "cm_calibration.csv"
    check = None if limit is None else read_cm_protocol(check_path)[0]
    needed = set(cal["utt_id"]) | (set() if check is None else set(check["utt_id"]))
    manifest = read_manifest(spoof_dir / "manifest.csv").set_index("utt_id")
    paths = manifest.loc[sorted(needed), "path"].to_dict()
    members = [Countermeasure.load(p) for p in member_paths]
    per_member, failures = [], []
    for m in members:  # each item scored once per member, for the check and the fit alike
        s, f = cm_scores(m, paths)
        per_member.append(s)
        failures += f
    eers = member_eers(check, per_member, member_paths, limit, check_path)
    ok = [u for u in cal["utt_id"] if all(u in s for s in per_member)]
    cal = cal.set_index("utt_id").loc[ok]
    x = np.array([[s[u] for s in per_member] for u in ok])
    fit = {"rule": rule, "split": split, f"cm_{split}_sha256": cal_sha, "attacks": seen,
           "n_bonafide": int(cal["label"].sum()), "n_spoof": int((~cal["label"].astype(bool)).sum()),
           "members": [str(p) for p in member_paths], "member_eer_seen": eers}  # fmt: skip
    loc = ref = None
    if rule == "any":
        if len(x) < 2:
            raise ValueError(
                f"spoof fuse: {lst}: {len(x)} bona fide item(s) every member could score; rule "
                "any needs two or more (raise spoof.deployment_per_speaker or speakers, or fit "
                "on spoof.fuse.split=calibration)"
            )
        loc, scale = robust_scale(x)
        weights, bias = [1.0 / v for v in scale], 0.0
        fit["scale"], fit["standardise"] = scale, standardise
        if standardise == "cdf":
            ref = [sorted(float(v) for v in col) for col in x.T]
    else:
        weights, bias = fit_weights(x, cal["label"].to_numpy(), cfg.spoof.fuse.C)
        fit["C"] = float(cfg.spoof.fuse.C)
    fused = FusedCountermeasure(
        members,
        weights,
        bias,
        [Path(p) for p in member_paths],
        {"fit": fit},
        rule,
        loc,
        standardise,
        ref,
    )
    out = Path(out or Path(cfg.spoof.fuse.out_dir) / FILENAME)
    fused.save(out)
    return {"file": str(out), "rule": rule, "weights": weights, "bias": bias, "loc": loc,
            "fit": fit, "failures": [{"utt_id": u, "reason": r} for u, r in failures]}  # fmt: skip
