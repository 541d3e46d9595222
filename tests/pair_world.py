"""A tiny, real pair world: the promotion world's speakers and registered encoders (v1, v2),
the spoof lists made from them by the real `spoof prepare`, and countermeasures.

``fisher_countermeasure``: an LFCC-LCNN whose convolutions are random and whose head is the
Fisher discriminant of bona fide vs spoofed items, fitted in closed form in seconds. Fitted on
every split, the eval attacks included, it is good on them by construction: these tests are
about the gate and the registry, not the countermeasure's generalization (the figures of a
trained one are the README's). ``as_bonafide``: attacks fitted as if bona fide, a
countermeasure that lets exactly those through.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from .conftest import shared
from .promote_world import LAX_POLICY, two_model_world

PAIR_POLICY = (
    LAX_POLICY
    + """countermeasure:
  absolute:
    cm.eer_unseen: {max: 0.45}
    pair.sasv_eer: {max: 0.6}
  relative:
    cm.eer_attack: {margin: 0.05}
    pair.sasv_eer: {margin: 0.5}
"""
)

SPOOF = {
    "spoof.speakers.train": "4",
    "spoof.speakers.calibration": "3",
    "spoof.speakers.eval": "4",
    "spoof.bonafide_per_speaker": "3",
    "spoof.nontargets_per_enroll": "3",
    "spoof.max_seconds": "2.0",
    "spoof.workers": "1",
    # the seen attacks this world's figures were set with: the Fisher CM below is about the
    # gate and the registry; WORLD resynthesis (A07) among them moves its midpoint threshold
    "spoof.splits.train": "[A01,A02,A04]",
    "spoof.splits.calibration": "[A01,A02,A04]",
    "countermeasure.model.channels": "8",
    "countermeasure.model.embedding_dim": "32",
}


def pair_world(root: Path) -> tuple[Path, dict]:
    """params.yaml (the pair policy, the spoof lists prepared) and registered.json's."""
    from speakerops.core.config import compose
    from speakerops.data.spoof.prepare import spoof_prepare

    extra = {
        **SPOOF,
        "spoof.out_dir": str(root / "spoof"),
        "spoof.eval_dir": str(root / "spoof_eval"),
        "spoof.bonafide_manifest": str(root / "prepared" / "manifest.csv"),
        "spoof.attacks.A06.rir_dir": str(shared("rir")),
        "evaluate.bootstrap.n": "40",
    }
    params, reg = two_model_world(root, extra, n_speakers=24)
    (root / "policy.yaml").write_text(PAIR_POLICY)
    cfg = compose([], str(params))
    spoof_prepare(cfg.spoof)
    return params, reg


def fisher_countermeasure(cfg, as_bonafide: tuple[str, ...] = (), seed: int = 3):
    from speakerops.data.audio import load_audio
    from speakerops.data.manifest import read_manifest
    from speakerops.data.spoof.protocol import read_cm_protocol
    from speakerops.models.countermeasure import Countermeasure

    torch.manual_seed(seed)
    cm = Countermeasure.build(cfg.countermeasure.model, cfg.countermeasure.features).eval()
    spoof = Path(cfg.spoof.out_dir)
    import pandas as pd

    train = pd.concat(
        [read_cm_protocol(spoof / f"cm_{s}.csv")[0] for s in ("train", "calibration", "eval")]
    )
    paths = read_manifest(spoof / "manifest.csv").set_index("utt_id")["path"]
    with torch.no_grad():
        X = np.stack([
            cm.net["backbone"](cm.front(torch.from_numpy(load_audio(paths[u], cm.sample_rate)[0])[None]))[0].numpy()
            for u in train["utt_id"]
        ]).astype(np.float64)  # fmt: skip
    y = train["label"].to_numpy().astype(bool) | train["attack"].isin(as_bonafide).to_numpy()
    mb, ms = X[y].mean(0), X[~y].mean(0)
    sw = np.cov(X[y].T) + np.cov(X[~y].T)
    sw += 1e-3 * np.trace(sw) / len(sw) * np.eye(len(sw))
    w = np.linalg.solve(sw, mb - ms)
    w /= np.abs(w @ (mb - ms)) / 4.0  # the class means 4 logits apart
    with torch.no_grad():
        cm.net["head"].weight.copy_(torch.from_numpy(w[None]).float())
        cm.net["head"].bias.fill_(float(-w @ (mb + ms) / 2))
    return cm


def save_cm(cm, path: Path, threshold: float | None = 0.0) -> Path:
    """The CM file as `spoof evaluate` writes it: with its operating-point threshold (0.0, the
    Fisher head's midpoint between the class means); ``threshold=None``: as training writes it,
    without one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if threshold is not None:
        cm.extras["operating_point"] = {"rule": "fixed", "threshold": float(threshold)}
    return cm.save(path)


__all__ = ["OmegaConf", "PAIR_POLICY", "fisher_countermeasure", "pair_world", "save_cm"]
