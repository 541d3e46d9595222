"""`speakerops spoof evaluate`: a speaker encoder and its countermeasure on the unseen attacks.

Reads the pinned lists of `spoof prepare` (`spoof.out_dir`, each checked against its sha256):
`cm_calibration.csv`, `cm_eval.csv`, `sasv_trials_eval.csv`. Scores every item with the CM
(bona fide logit) and every SASV trial with the speaker encoder (cosine of the embeddings),
then reports, with speaker-bootstrap intervals (:mod:`speakerops.eval.bootstrap`, resampling
the claimed / enrolled speakers; `evaluate.bootstrap`):

* the CM on the eval attacks (never seen in training): EER pooled and per attack (bona fide
  vs that attack), min t-DCF (ASVspoof 2019) with the ASV system at its EER threshold, and
  what it flags at its operating threshold (``cm.flagged``: bona fide items of the threshold's
  split and of eval, each unseen attack, the target trials the pair loses);
* the speaker model alone and the pair on the same trial list with spoofed non-targets:
  SASV-EER, SV-EER, SPF-EER and min a-DCF, and ``pair_vs_alone``: pair − alone for each, with
  its paired speaker-bootstrap interval (does the CM help, beyond the point estimate). The pair is the cascade the service runs: a trial
  whose test audio the CM scores under its operating threshold is rejected (score −inf),
  otherwise it keeps the speaker score. The CM threshold is chosen on the calibration split
  (its own, seen, attacks), never tuned on eval, by the rule of ``register.policy``'s
  ``countermeasure.operating_point`` (:func:`~speakerops.eval.spoof_metrics.cm_threshold`;
  ``{rule: eer}``, the EER threshold, when the policy states none or there is no policy file);
  with ``split: deployment`` on `cm_deployment.csv` instead (bona fide recordings of the eval
  speakers that no test item uses: a deployment's own audio, where the calibration split is
  another corpus's speech).

Writes `spoof_eval.json`, the countermeasure with that operating point inside
(`countermeasure.safetensors` + sidecar, the file `serve.countermeasure` loads) and the
figures (:func:`spoof_figures`: `cm_det.png`, `cm_scores.png`, `sasv_det.png`) in
`spoof.eval_dir`; items the CM or the encoder cannot score are
listed there (`failures`) and their trials left out, nothing silently.

:func:`score_pair` gives the per-item scores (kept in memory only) and :func:`pair_report` the
figures; :func:`paired_difference` compares two pairs scored on the same lists with the paired
speaker bootstrap (the same resampled speakers for both: the relative gates of the pair,
:mod:`speakerops.registry.cm_gate`), on the items both could score.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from speakerops.core.jsonio import dumps
from speakerops.core.policy import cm_operating_point
from speakerops.data.audio import AudioError
from speakerops.data.manifest import read_manifest
from speakerops.data.spoof.protocol import BONAFIDE, read_cm_protocol, read_sasv_trials
from speakerops.eval.bootstrap import paired_bootstrap, speaker_bootstrap
from speakerops.eval.embed import embed_files
from speakerops.eval.plots import det_plot, score_histogram_plot
from speakerops.eval.scoring import cosine_scores
from speakerops.eval.spoof_metrics import (
    asv_operating_point,
    cm_eer,
    cm_threshold,
    min_a_dcf,
    min_t_dcf,
    sasv_eers,
)
from speakerops.models.cm_decision import CountermeasureDecision
from speakerops.models.countermeasure import Countermeasure
from speakerops.models.encoder import SpeakerEncoder


def cm_scores(
    cm: CountermeasureDecision, paths: dict[str, str]
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


def _interval_dict(iv: dict[str, float]) -> dict[str, float]:
    return {k: float(iv[k]) for k in ("value", "low", "high")}


@dataclass
class PairScores:
    """A speaker encoder + countermeasure scored on the pinned spoof lists."""

    hashes: dict[str, str]
    cm_threshold: float  # the policy rule's CM threshold on its split (calibration or deployment)
    cm_eval: pd.DataFrame  # cm_eval.csv rows the CM scored, column `score` added
    trials: (
        pd.DataFrame
    )  # SASV trials both could score (list row index), `asv`, `cm`, `enroll_speaker`
    failures: list[tuple[str, str]] = field(default_factory=list)
    threshold_split: str = "calibration"  # the list the threshold was set on (the rule's split)
    threshold_items: pd.DataFrame | None = None  # that list's rows the CM scored, with `score`

    @property
    def pair(self) -> np.ndarray:
        """The cascade: a test the CM scores under its threshold is rejected (−inf)."""
        return np.where(self.trials["cm"] >= self.cm_threshold, self.trials["asv"], -np.inf)


def score_pair(cfg: DictConfig, encoder: SpeakerEncoder, cm: CountermeasureDecision) -> PairScores:
    """Score the pinned lists of `spoof.out_dir` (each checked against its sha256)."""
    spoof_dir = Path(cfg.spoof.out_dir)
    manifest = read_manifest(spoof_dir / "manifest.csv").set_index("utt_id")
    rule = cm_operating_point(cfg.register.policy)
    split = rule.get("split", "calibration")
    if split != "calibration" and not (spoof_dir / f"cm_{split}.csv").is_file():
        raise FileNotFoundError(
            f"{spoof_dir / f'cm_{split}.csv'}: not found, and the policy's countermeasure "
            f"operating point sets the threshold on it (split: {split}); run `speakerops spoof "
            "prepare` again with spoof.deployment_per_speaker > 0"
        )
    cal, cal_sha = read_cm_protocol(spoof_dir / f"cm_{split}.csv")
    ev, ev_sha = read_cm_protocol(spoof_dir / "cm_eval.csv")
    trials, trials_sha = read_sasv_trials(spoof_dir / "sasv_trials_eval.csv")

    needed = sorted(set(cal["utt_id"]) | set(ev["utt_id"]))
    scores, failures = cm_scores(cm, manifest.loc[needed, "path"].to_dict())
    cal = cal[cal["utt_id"].isin(scores)].assign(score=lambda d: [scores[u] for u in d["utt_id"]])
    threshold = cm_threshold(cal["score"].tolist(), cal["label"], rule)
    ev = ev[ev["utt_id"].isin(scores)].assign(score=lambda d: [scores[u] for u in d["utt_id"]])

    utts = sorted(set(trials["enroll"]) | set(trials["test"]))
    emb = embed_files(encoder, manifest.loc[utts, "path"].tolist(), utts, progress=False)
    failures += list(zip(emb.failed_utt_ids, [r for _, r in emb.failures], strict=True))
    ok = set(emb.utt_ids) & (set(scores) | set(trials["enroll"]))
    trials = trials[
        trials["enroll"].isin(ok) & trials["test"].isin(ok) & trials["test"].isin(scores)
    ]
    trials = trials.assign(
        asv=cosine_scores(emb.as_dict(), trials),
        cm=[scores[u] for u in trials["test"]],
        enroll_speaker=manifest.loc[trials["enroll"], "speaker"].to_numpy(),
    )
    hashes = {f"cm_{split}": cal_sha, "cm_eval": ev_sha, "sasv_trials_eval": trials_sha}
    return PairScores(hashes, float(threshold), ev, trials, failures, split, cal)


def _boot(cfg: DictConfig) -> tuple[int, float, int]:
    b = cfg.evaluate.bootstrap
    return int(b.n), float(b.confidence), int(b.seed)


def _attacks(ev: pd.DataFrame) -> dict[str, np.ndarray]:
    """{attack: rows of bona fide + that attack} of the CM eval list."""
    return {a: ev["attack"].isin([BONAFIDE, a]).to_numpy() for a in sorted(set(ev["attack"]) - {BONAFIDE})}  # fmt: skip


def _sasv_fns(cfg: DictConfig) -> dict:
    return {
        "sasv_eer": lambda s, y, kinds: sasv_eers(s, kinds)["sasv_eer"],
        "spf_eer": lambda s, y, kinds: sasv_eers(s, kinds)["spf_eer"],
        "sv_eer": lambda s, y, kinds: sasv_eers(s, kinds)["sv_eer"],
        "min_a_dcf": lambda s, y, kinds: min_a_dcf(s, kinds, cfg.spoof.metrics.a_dcf),
    }


def _t_dcf(cfg: DictConfig, ps: PairScores):
    point = asv_operating_point(ps.trials["asv"].to_numpy(), ps.trials["kind"].to_numpy())
    return point, lambda s, y: min_t_dcf(s, y, point, cfg.spoof.metrics.t_dcf)


def _share(scores: pd.Series, threshold: float) -> dict[str, float]:
    flagged = int((scores.to_numpy() < threshold).sum())
    return {"flagged": flagged, "of": int(scores.size), "rate": flagged / max(1, scores.size)}


def flagged(ps: PairScores) -> dict[str, dict[str, float]]:
    """What the CM flags at its operating threshold: the share of the threshold split's and the
    eval split's bona fide items (genuine users refused), of each unseen attack's items
    (caught), and of the target trials (genuine targets the pair loses)."""
    ev, theta = ps.cm_eval, ps.cm_threshold
    bona = ev["attack"] == BONAFIDE
    out = {}
    if ps.threshold_items is not None:
        items = ps.threshold_items
        out[f"bonafide_{ps.threshold_split}"] = _share(items.loc[items["label"].astype(bool), "score"], theta)  # fmt: skip
    out["bonafide_eval"] = _share(ev.loc[bona, "score"], theta)
    out |= {a: _share(g["score"], theta) for a, g in ev[~bona].groupby("attack")}
    out["target_trials"] = _share(ps.trials.loc[ps.trials["kind"] == "target", "cm"], theta)
    return out


def pair_report(cfg: DictConfig, ps: PairScores) -> dict:
    """The figures of one pair with speaker-bootstrap intervals (module doc)."""
    n, conf, seed = _boot(cfg)
    ev = ps.cm_eval
    s_ev, y_ev, spk_ev = (
        ev["score"].to_numpy(),
        ev["label"].to_numpy().astype(bool),
        ev["speaker"].to_numpy(),
    )
    eer = {"eer": lambda s, y: cm_eer(s, y)}
    pooled = speaker_bootstrap(s_ev, y_ev, spk_ev, eer, n, conf, seed)
    per_attack = {}
    for attack, keep in _attacks(ev).items():
        iv = speaker_bootstrap(s_ev[keep], y_ev[keep], spk_ev[keep], eer, n, conf, seed)["eer"]
        per_attack[attack] = {**_interval(iv), "n_spoof": int((~y_ev[keep]).sum())}
    point, t_dcf = _t_dcf(cfg, ps)
    tdcf = speaker_bootstrap(s_ev, y_ev, spk_ev, {"t": t_dcf}, n, conf, seed)["t"]
    kinds = ps.trials["kind"].to_numpy()
    target, spk = kinds == "target", ps.trials["enroll_speaker"].to_numpy()

    def sasv(system: np.ndarray) -> dict:
        out = speaker_bootstrap(
            system, target, spk, _sasv_fns(cfg), n, conf, seed, extra={"kinds": kinds}
        )
        return {k: _interval(v) for k, v in out.items()}

    asv = ps.trials["asv"].to_numpy()
    # the pair − the speaker model alone on the same trials, the same resampled speakers for both
    helps = paired_bootstrap(
        ps.pair, asv, target, spk, _sasv_fns(cfg), n, conf, seed, extra={"kinds": kinds}
    )

    return {
        "hashes": dict(ps.hashes),
        "cm": {
            "threshold": ps.cm_threshold,
            "eer_unseen": _interval(pooled["eer"]),
            "eer_per_attack": per_attack,
            "min_t_dcf": _interval(tdcf),
            "asv_operating_point": point,
            "flagged": flagged(ps),
        },
        "speaker_alone": sasv(asv),
        "pair": sasv(ps.pair),
        "pair_vs_alone": {k: _interval_dict(v) for k, v in helps.items()},
        "n_trials": {k: int((kinds == k).sum()) for k in ("target", "nontarget", "spoof")},
        "failures": [{"utt_id": u, "reason": r} for u, r in ps.failures],
        "bootstrap": OmegaConf.to_container(cfg.evaluate.bootstrap, resolve=True),
    }


def paired_difference(cfg: DictConfig, first: PairScores, second: PairScores) -> dict:
    """first − second for every figure of :func:`pair_report` (same keys), each with its paired
    speaker-bootstrap interval, on the items and trials both pairs could score."""
    if first.hashes != second.hashes:
        raise ValueError(f"paired difference: the pairs were scored on different spoof lists ({first.hashes} vs {second.hashes})")  # fmt: skip
    n, conf, seed = _boot(cfg)
    a = first.cm_eval.set_index("utt_id")
    b = second.cm_eval.set_index("utt_id")
    common = a.index.intersection(b.index)
    a, b = a.loc[common].reset_index(), b.loc[common].reset_index()
    y, spk = a["label"].to_numpy().astype(bool), a["speaker"].to_numpy()
    sa, sb = a["score"].to_numpy(), b["score"].to_numpy()
    eer = {"eer": lambda s, y: cm_eer(s, y)}
    cm = {"eer_unseen": paired_bootstrap(sa, sb, y, spk, eer, n, conf, seed)["eer"]}
    cm["eer_per_attack"] = {
        attack: paired_bootstrap(sa[k], sb[k], y[k], spk[k], eer, n, conf, seed)["eer"]
        for attack, k in _attacks(a).items()
    }
    both = first.trials.index.intersection(second.trials.index)
    fa, fb = _subset(first, both), _subset(second, both)
    t_dcf = {"t": (_t_dcf(cfg, fa)[1], _t_dcf(cfg, fb)[1])}
    cm["min_t_dcf"] = paired_bootstrap(sa, sb, y, spk, t_dcf, n, conf, seed)["t"]
    kinds = fa.trials["kind"].to_numpy()
    target, tspk = kinds == "target", fa.trials["enroll_speaker"].to_numpy()

    def sasv(x: np.ndarray, z: np.ndarray) -> dict:
        return paired_bootstrap(
            x, z, target, tspk, _sasv_fns(cfg), n, conf, seed, extra={"kinds": kinds}
        )

    return {
        "hashes": dict(first.hashes),
        "cm": cm,
        "speaker_alone": sasv(fa.trials["asv"].to_numpy(), fb.trials["asv"].to_numpy()),
        "pair": sasv(fa.pair, fb.pair),
        "n_items": {"cm_eval": int(len(common)), "sasv_trials": int(len(both))},
    }


def spoof_figures(ps: PairScores, out: Path) -> dict[str, str]:
    """PNGs beside `spoof_eval.json`: the CM's DET per unseen attack and its score histograms
    with the operating threshold, and the SASV DET of the speaker model alone vs the pair."""
    ev, theta = ps.cm_eval, ps.cm_threshold
    s, y = ev["score"].to_numpy(), ev["label"].to_numpy().astype(bool)
    systems = {"unseen, pooled": (s, y)} | {f"bona fide vs {a}": (s[k], y[k]) for a, k in _attacks(ev).items()}  # fmt: skip
    rates = ("CM false acceptance (spoof accepted), P_fa", "CM miss (bona fide rejected), P_miss")
    figures = {"cm_det": det_plot(systems, out / "cm_det.png", "Countermeasure DET, unseen attacks",
                                  {n: (v[0], theta) for n, v in systems.items()}, rates)}  # fmt: skip
    bona = ev["attack"] == BONAFIDE
    groups = {"bona fide (eval)": ev.loc[bona, "score"].to_numpy()}
    if ps.threshold_items is not None:
        cal = ps.threshold_items[ps.threshold_items["label"].astype(bool)]
        groups[f"bona fide ({ps.threshold_split}: sets the threshold)"] = cal["score"].to_numpy()
    groups |= {f"{a} (unseen)": g["score"].to_numpy() for a, g in ev[~bona].groupby("attack")}
    figures["cm_scores"] = score_histogram_plot(groups, theta, out / "cm_scores.png",
                                                "Countermeasure scores", "CM score (higher: more bona fide)")  # fmt: skip
    target = (ps.trials["kind"] == "target").to_numpy()
    sasv = {"speaker model alone": (ps.trials["asv"].to_numpy(), target), "pair (CM cascade)": (ps.pair, target)}  # fmt: skip
    figures["sasv_det"] = det_plot(sasv, out / "sasv_det.png", "SASV DET: targets vs bona fide and spoofed non-targets")  # fmt: skip
    return {k: str(v) for k, v in figures.items()}


def _subset(ps: PairScores, rows: pd.Index) -> PairScores:
    return replace(ps, trials=ps.trials.loc[rows])


def evaluate_pair(cfg: DictConfig, encoder_path: str | Path, cm_path: str | Path) -> dict:
    """Score and report (module doc); returns what `spoof_eval.json` holds."""
    cm = Countermeasure.load(cm_path)
    encoder = SpeakerEncoder.load(encoder_path)
    ps = score_pair(cfg, encoder, cm)
    report = {"encoder": str(encoder_path), "countermeasure": str(cm_path), **pair_report(cfg, ps)}
    out = Path(cfg.spoof.eval_dir)
    out.mkdir(parents=True, exist_ok=True)
    rule = cm_operating_point(cfg.register.policy)
    split = ps.threshold_split
    cm.extras["operating_point"] = {**rule, "threshold": ps.cm_threshold, "split": split,
                                    f"cm_{split}_sha256": ps.hashes[f"cm_{split}"]}  # fmt: skip
    report["cm"]["operating_point"] = rule
    report["cm"]["file"] = str(cm.save(out / cm.filename))
    report["figures"] = spoof_figures(ps, out)
    (out / "spoof_eval.json").write_text(dumps(report))
    return report
