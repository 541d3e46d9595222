"""`speakerops spoof fuse`: fit the fusion weights of several countermeasures (logistic
regression on their bona fide logits) on the calibration split, seen attacks only.

Reads `spoof.out_dir/cm_calibration.csv` and `cm_eval.csv` (each checked against its sha256);
refuses when the calibration list holds an attack of the eval list (the fusion must never see
the unseen attacks). Scores every calibration item with every member, fits
``sklearn.linear_model.LogisticRegression`` (``spoof.fuse.C``, class-balanced) on the items all
members could score, and writes the fused countermeasure (:mod:`speakerops.models.cm_fusion`) to
``spoof.fuse.out_dir`` with its members copied beside it. `spoof evaluate cm=<that file>` then
chooses its operating threshold on the same calibration split, as for a single CM.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from sklearn.linear_model import LogisticRegression

from speakerops.data.manifest import read_manifest
from speakerops.data.spoof.protocol import BONAFIDE, read_cm_protocol
from speakerops.eval.spoof_eval import cm_scores
from speakerops.models.cm_fusion import FILENAME, FusedCountermeasure
from speakerops.models.countermeasure import Countermeasure


def fit_weights(scores: np.ndarray, labels: np.ndarray, c: float) -> tuple[list[float], float]:
    """Logistic-regression weights and bias of ``[N, n_members]`` logits vs labels (1 = bona fide)."""
    y = np.asarray(labels).astype(int)
    if len(set(y)) != 2:
        raise ValueError("spoof fuse: the calibration items need both bona fide and spoofed ones")
    lr = LogisticRegression(C=float(c), class_weight="balanced", max_iter=1000)
    lr.fit(np.asarray(scores, dtype=float), y)
    return [float(w) for w in lr.coef_[0]], float(lr.intercept_[0])


def fuse(
    cfg: DictConfig, member_paths: Sequence[str | Path], out: str | Path | None = None
) -> dict:
    """Fit and write the fused CM (module doc); returns its summary."""
    if len(member_paths) < 2:
        raise ValueError(f"spoof fuse: members={list(member_paths)}: give two or more countermeasure files")  # fmt: skip
    spoof_dir = Path(cfg.spoof.out_dir)
    cal, cal_sha = read_cm_protocol(spoof_dir / "cm_calibration.csv")
    ev, _ = read_cm_protocol(spoof_dir / "cm_eval.csv")
    seen = sorted(set(cal["attack"]) - {BONAFIDE})
    leaked = sorted(set(seen) & (set(ev["attack"]) - {BONAFIDE}))
    if leaked:
        raise ValueError(
            f"{spoof_dir}/cm_calibration.csv holds eval attacks {leaked}: the fusion would see "
            "the unseen attacks; re-run `speakerops spoof prepare` (attack-disjoint splits)"
        )
    manifest = read_manifest(spoof_dir / "manifest.csv").set_index("utt_id")
    paths = manifest.loc[sorted(set(cal["utt_id"])), "path"].to_dict()
    members = [Countermeasure.load(p) for p in member_paths]
    per_member, failures = [], []
    for m in members:
        s, f = cm_scores(m, paths)
        per_member.append(s)
        failures += f
    ok = [u for u in cal["utt_id"] if all(u in s for s in per_member)]
    cal = cal.set_index("utt_id").loc[ok]
    x = np.array([[s[u] for s in per_member] for u in ok])
    weights, bias = fit_weights(x, cal["label"].to_numpy(), cfg.spoof.fuse.C)
    fit = {"split": "calibration", "cm_calibration_sha256": cal_sha, "attacks": seen,
           "n_bonafide": int(cal["label"].sum()), "n_spoof": int((~cal["label"].astype(bool)).sum()),
           "C": float(cfg.spoof.fuse.C), "members": [str(p) for p in member_paths]}  # fmt: skip
    fused = FusedCountermeasure(
        members, weights, bias, [Path(p) for p in member_paths], {"fit": fit}
    )
    out = Path(out or Path(cfg.spoof.fuse.out_dir) / FILENAME)
    fused.save(out)
    return {"file": str(out), "weights": weights, "bias": bias, "fit": fit,
            "failures": [{"utt_id": u, "reason": r} for u, r in failures]}  # fmt: skip
