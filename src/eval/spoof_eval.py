"""`speakerops spoof evaluate`: a speaker encoder and its countermeasure on the unseen attacks.

Reads the pinned lists of `spoof prepare` (`spoof.out_dir`, each checked against its sha256):
`cm_calibration.csv`, `cm_eval.csv`, `sasv_trials_eval.csv`. Scores every item with the CM
(bona fide logit) and every SASV trial with the speaker encoder (cosine of the embeddings),
then reports, with speaker-bootstrap intervals (:mod:`speakerops.eval.bootstrap`, resampling
the claimed / enrolled speakers; `evaluate.bootstrap`):

* the CM on the eval attacks (never seen in training): EER pooled and per attack (bona fide
  vs that attack), min t-DCF (ASVspoof 2019) with the ASV system at its EER threshold;
* the speaker model alone and the pair on the same trial list with spoofed non-targets:
  SASV-EER, SV-EER, SPF-EER and min a-DCF. The pair is the cascade the service runs: a trial
  whose test audio the CM scores under its operating threshold is rejected (score −inf),
  otherwise it keeps the speaker score. The CM threshold is the CM's EER threshold on the
  calibration split (its own, seen, attacks), never tuned on eval.

Writes `spoof_eval.json` in `spoof.eval_dir`; items the CM or the encoder cannot score are
listed there (`failures`) and their trials left out, nothing silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from speakerops.core.jsonio import dumps
from speakerops.data.audio import AudioError
from speakerops.data.manifest import read_manifest
from speakerops.data.spoof.protocol import BONAFIDE, read_cm_protocol, read_sasv_trials
from speakerops.eval.bootstrap import speaker_bootstrap
from speakerops.eval.embed import embed_files
from speakerops.eval.metrics import eer_threshold
from speakerops.eval.scoring import cosine_scores
from speakerops.eval.spoof_metrics import (
    asv_operating_point,
    cm_eer,
    min_a_dcf,
    min_t_dcf,
    sasv_eers,
)
from speakerops.models.countermeasure import Countermeasure
from speakerops.models.encoder import SpeakerEncoder


def cm_scores(
    cm: Countermeasure, paths: dict[str, str]
) -> tuple[dict[str, float], list[tuple[str, str]]]:
    """The CM score of each item; (utt_id, reason) for those it cannot score."""
    scores, failures = {}, []
    for utt, path in paths.items():
        try:
            scores[utt] = cm.score_file(path)
        except (AudioError, ValueError) as exc:
            failures.append((utt, str(exc)))
    return scores, failures


def _interval(iv) -> dict[str, float]:
    return {"value": iv.point, "low": iv.low, "high": iv.high}


def evaluate_pair(cfg: DictConfig, encoder_path: str | Path, cm_path: str | Path) -> dict:
    """Score and report (module doc); returns what `spoof_eval.json` holds."""
    spoof_dir = Path(cfg.spoof.out_dir)
    boot = cfg.evaluate.bootstrap
    manifest = read_manifest(spoof_dir / "manifest.csv").set_index("utt_id")
    cal, cal_sha = read_cm_protocol(spoof_dir / "cm_calibration.csv")
    ev, ev_sha = read_cm_protocol(spoof_dir / "cm_eval.csv")
    trials, trials_sha = read_sasv_trials(spoof_dir / "sasv_trials_eval.csv")
    cm = Countermeasure.load(cm_path)
    encoder = SpeakerEncoder.load(encoder_path)

    needed = sorted(set(cal["utt_id"]) | set(ev["utt_id"]))
    scores, failures = cm_scores(cm, manifest.loc[needed, "path"].to_dict())
    cal = cal[cal["utt_id"].isin(scores)]
    ev = ev[ev["utt_id"].isin(scores)]
    _, cm_threshold = eer_threshold([scores[u] for u in cal["utt_id"]], cal["label"])

    # the CM on the unseen attacks, pooled and per attack
    s_ev = np.array([scores[u] for u in ev["utt_id"]])
    y_ev = ev["label"].to_numpy().astype(bool)
    spk_ev = ev["speaker"].to_numpy()
    n, conf, seed = int(boot.n), float(boot.confidence), int(boot.seed)
    pooled = speaker_bootstrap(
        s_ev, y_ev, spk_ev, {"eer": lambda s, y: cm_eer(s, y)}, n, conf, seed
    )
    per_attack = {}
    for attack in sorted(set(ev["attack"]) - {BONAFIDE}):
        keep = (ev["attack"].isin([BONAFIDE, attack])).to_numpy()
        iv = speaker_bootstrap(s_ev[keep], y_ev[keep], spk_ev[keep], {"eer": lambda s, y: cm_eer(s, y)},
                               n, conf, seed)["eer"]  # fmt: skip
        per_attack[attack] = {**_interval(iv), "n_spoof": int((~y_ev[keep]).sum())}

    # the speaker model alone and the pair on the SASV trials
    emb = embed_files(encoder, manifest.loc[sorted(set(trials["enroll"]) | set(trials["test"])), "path"].tolist(),
                      sorted(set(trials["enroll"]) | set(trials["test"])), progress=False)  # fmt: skip
    failures += list(zip(emb.failed_utt_ids, [r for _, r in emb.failures], strict=True))
    ok = set(emb.utt_ids) & (set(scores) | set(trials["enroll"]))
    trials = trials[
        trials["enroll"].isin(ok) & trials["test"].isin(ok) & trials["test"].isin(scores)
    ]
    asv = cosine_scores(emb.as_dict(), trials)
    kinds = trials["kind"].to_numpy()
    test_cm = np.array([scores[u] for u in trials["test"]])
    pair = np.where(test_cm >= cm_threshold, asv, -np.inf)
    point = asv_operating_point(asv, kinds)
    tdcf = speaker_bootstrap(s_ev, y_ev, spk_ev, {"min_t_dcf": lambda s, y: min_t_dcf(s, y, point, cfg.spoof.metrics.t_dcf)},
                             n, conf, seed)["min_t_dcf"]  # fmt: skip
    enroll_spk = manifest.loc[trials["enroll"], "speaker"].to_numpy()
    target = kinds == "target"

    def sasv(system: np.ndarray) -> dict:
        fns = {
            "sasv_eer": lambda s, y, kinds: sasv_eers(s, kinds)["sasv_eer"],
            "spf_eer": lambda s, y, kinds: sasv_eers(s, kinds)["spf_eer"],
            "sv_eer": lambda s, y, kinds: sasv_eers(s, kinds)["sv_eer"],
            "min_a_dcf": lambda s, y, kinds: min_a_dcf(s, kinds, cfg.spoof.metrics.a_dcf),
        }
        out = speaker_bootstrap(
            system, target, enroll_spk, fns, n, conf, seed, extra={"kinds": kinds}
        )
        return {k: _interval(v) for k, v in out.items()}

    report = {
        "encoder": str(encoder_path),
        "countermeasure": str(cm_path),
        "hashes": {"cm_calibration": cal_sha, "cm_eval": ev_sha, "sasv_trials_eval": trials_sha},
        "cm": {
            "threshold": cm_threshold,
            "eer_unseen": _interval(pooled["eer"]),
            "eer_per_attack": per_attack,
            "min_t_dcf": _interval(tdcf),
            "asv_operating_point": point,
        },
        "speaker_alone": sasv(asv),
        "pair": sasv(pair),
        "n_trials": {k: int((kinds == k).sum()) for k in ("target", "nontarget", "spoof")},
        "failures": [{"utt_id": u, "reason": r} for u, r in failures],
        "bootstrap": OmegaConf.to_container(boot, resolve=True),
    }
    out = Path(cfg.spoof.eval_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spoof_eval.json").write_text(dumps(report))
    return report
