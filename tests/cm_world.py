"""A small real countermeasure for the serving and drift tests: the conf's LFCC-LCNN with
seeded random convolutions and its linear head trained (logistic loss, full batch) to tell
2 s LibriSpeech train-clean-100 clips from their LPC resynthesis (the A05 vocoder attack of
`spoof prepare`); its operating point is the policy's rule (EER) on those training scores,
stored in the file as `spoof evaluate` stores it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from speakerops.core.config import compose
from speakerops.data.audio import load_audio
from speakerops.data.spoof.vocoder import lpc_resynthesis
from speakerops.eval.spoof_metrics import cm_threshold
from speakerops.models.countermeasure import Countermeasure

from .conftest import shared

SR = 16000


def lpc_spoof(wav: np.ndarray, seed: int = 0) -> np.ndarray:
    """The A05 attack (conf/spoof/default.yaml: order 18, voicing 0.35) of a waveform."""
    out = lpc_resynthesis(wav, SR, 18, 0.35, np.random.default_rng(seed))
    return out.astype(np.float32)


def train_countermeasure(path: Path, n: int = 40, seed: int = 0) -> Countermeasure:
    torch.manual_seed(seed)
    cfg = compose([])
    cm = Countermeasure.build(cfg.countermeasure.model, cfg.countermeasure.features).eval()
    files = sorted(shared("librispeech", "train-clean-100").glob("*.flac"))[:n]
    bona = [load_audio(f, SR)[0][: 2 * SR] for f in files]
    spoof = [lpc_spoof(w, i) for i, w in enumerate(bona)]
    with torch.no_grad():
        x = torch.stack(
            [cm.net["backbone"](cm.front(torch.from_numpy(w)[None]))[0] for w in bona + spoof]
        )
    y = torch.cat([torch.ones(n), torch.zeros(n)])
    head = cm.net["head"]
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(head(x).squeeze(-1), y).backward()
        opt.step()
    with torch.no_grad():
        scores = head(x).squeeze(-1).numpy()
    threshold = cm_threshold(scores, y.numpy(), {"rule": "eer"})
    cm.extras["operating_point"] = {"rule": "eer", "threshold": threshold, "split": "test"}
    cm.save(path)
    return Countermeasure.load(path)
