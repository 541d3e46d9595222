"""`speakerops promote`: candidate vs champion under the policy.

Promotion of ``models:/<name>/<version>``:

1. Preconditions (fail closed): the candidate's recorded ``trials_sha256`` tag equals the
   pinned eval trial list (`data/prepared/trials_eval.csv`, whose bytes must still match the
   `.sha256` beside it); a champion exists when the policy says ``require_champion: true``;
   the champion's tag matches the same list. A failed precondition refuses before any
   scoring, with the reason (:func:`speakerops.registry.verdict.preconditions`).
2. Both models, as packaged, score the same pinned trials: embedding -> scoring (cosine or
   AS-norm with the packaged cohort) -> the packaged calibration -> LLRs.
3. :func:`speakerops.eval.assess.assess`: metrics, FMR/FNMR and per-group bias at the
   policy's shipped threshold, speaker-bootstrap intervals, paired intervals of
   candidate − champion; the same on each channel condition the policy gates and the config
   prepares (:mod:`speakerops.registry.channels`: e.g. the telephone copy of the eval list).
4. The policy's absolute and relative gates -> verdict (the pure
   :func:`speakerops.registry.verdict.promotion_verdict`). Writes `verdict.json` (deterministic:
   the same promotion twice gives the same bytes), `report.md`, `det.png`,
   `calibration.png`, `bias_<column>.png` into the output folder.
5. Unless ``dry_run``: the files go to MLflow on the candidate version's run
   (`promotion/<timestamp>/`), the version gets tags (`promotion.*`, `audit.<n>`), alias
   ``champion`` moves to the candidate only on pass, and one audit record is appended to the
   append-only log (:func:`speakerops.registry.champion.record_promotion`): one journaled
   transaction (:mod:`speakerops.registry.journal`); an interrupted one is finished or undone
   by the next promote, gate or rollback before anything else.

A candidate or champion registered with a countermeasure (:mod:`speakerops.registry.pair`) is
gated as a pair too (`pair.json`; the policy's `countermeasure:` gates, relative ones on paired
intervals), and the countermeasure's ``champion`` alias moves in the same transaction, or not.

Exit codes: :data:`EXIT_PASS` 0, :data:`EXIT_REFUSED` 1 (a gate or precondition refused),
:data:`EXIT_ERROR` 2 (the promotion could not be evaluated: bad URI, missing files, …).

Rollback is :func:`speakerops.registry.champion.rollback`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from speakerops.core.jsonio import dumps
from speakerops.core.keys import Keyring, keyring_from_cfg
from speakerops.core.names import CHAMPION
from speakerops.core.paths import tracking_uri
from speakerops.core.policy import Policy, load_policy
from speakerops.core.uris import ModelRef, parse_model_uri, registered_model_uri
from speakerops.data.manifest import read_manifest
from speakerops.eval.assess import AssessSettings, assess
from speakerops.eval.evaluate import embed_split
from speakerops.eval.plots import bias_plot, calibration_plot, det_plot
from speakerops.eval.scoring import Scorer, system_scores
from speakerops.eval.trials import load_trial_set
from speakerops.registry import audit, journal
from speakerops.registry.champion import (
    client_for,
    current_champion,
    model_version,
    record_promotion,
)
from speakerops.registry.channels import assess_channels
from speakerops.registry.lock import promotion_lock
from speakerops.registry.package import load_encoder
from speakerops.registry.pair import pair_checks
from speakerops.registry.policy_pin import check_policy, commit_tags
from speakerops.registry.report import write_report
from speakerops.registry.verdict import (
    calibration_precondition,
    outcome,
    preconditions,
    promotion_verdict,
)

EXIT_PASS = 0
EXIT_REFUSED = 1
EXIT_ERROR = 2


@dataclass
class PromotionResult:
    verdict: dict[str, Any]
    out_dir: Path
    exit_code: int
    audit_record: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return self.exit_code == EXIT_PASS


def _candidate(uri: str) -> ModelRef:
    """The candidate's parsed `models:/name/N` or `models:/name@alias` (nothing else)."""
    try:
        ref = parse_model_uri(uri)
    except ValueError as exc:
        raise ValueError(f"candidate={uri!r}: {exc}") from exc
    if not ref.is_registry:
        raise ValueError(
            f"candidate={uri!r}: promotion needs a registered version, e.g. models:/speaker-encoder/7"
        )
    return ref


def _settings(cfg: DictConfig, policy: Policy):
    return AssessSettings.from_config(cfg.evaluate, policy.operating_point)


def _out_dir(cfg: DictConfig, name: str, version: str, out_dir: str | Path | None) -> Path:
    if out_dir is not None:
        return Path(out_dir)
    base = cfg.register.get("promote_dir") or str(Path(cfg.paths.artifacts_dir) / "promote")
    return Path(base) / f"{name}-v{version}"


def _prepare_out_dir(out: Path) -> Path:
    """Create the report folder; clear the files of an earlier report in it (only those)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for pattern in (
        "verdict.json",
        "report.md",
        "pair.json",
        "det.png",
        "calibration.png",
        "bias_*.png",
    ):
        for f in out.glob(pattern):
            f.unlink()
    return out


def _model_info(mv) -> dict[str, Any]:
    tags = dict(mv.tags)
    return {
        "name": mv.name,
        "version": str(mv.version),
        "uri": registered_model_uri(mv.name, mv.version),
        "run_id": mv.run_id,
        "trials_sha256": tags.get("trials_sha256"),
        "git_commit": tags.get("git_commit"),
        "params_sha256": tags.get("params_sha256"),
    }


def _score(uri: str, manifest, trials, progress: bool, store: str, keyring: Keyring):
    """(scores, LLRs or None, scorer description, calibration dict, encoder) of a packaged model."""
    encoder = load_encoder(uri, tracking_uri=store)
    scorer = Scorer.from_encoder(encoder, keyring)
    batch = embed_split(encoder, manifest, trials.utterances, f"embedding with {uri}", progress)
    scores, llrs = system_scores(scorer, batch.as_dict(), trials)
    cal = encoder.extras.get("calibration")
    return scores, llrs, scorer.normalization.describe(), cal, encoder


def _figure_table(assessment) -> dict[str, dict[str, float]]:
    return {k: v for k, v in assessment.figures.items()}


def promote(
    cfg: DictConfig,
    candidate_uri: str,
    *,
    dry_run: bool = False,
    out_dir: str | Path | None = None,
    progress: bool = False,
    action: str = "promote",
) -> PromotionResult:
    """Evaluate the candidate (and champion) under the policy; see the module docstring.

    Holds the model's promotion lock (:mod:`speakerops.registry.lock`) throughout, so the
    champion read here is the one the alias still names when the verdict is recorded."""
    name = _candidate(candidate_uri).name
    with promotion_lock(cfg, name, tracking_uri(cfg.paths.registry_dir)):
        return _promote_locked(
            cfg, candidate_uri, dry_run=dry_run, out_dir=out_dir, progress=progress, action=action
        )


def _promote_locked(
    cfg: DictConfig,
    candidate_uri: str,
    *,
    dry_run: bool,
    out_dir: str | Path | None,
    progress: bool,
    action: str,
) -> PromotionResult:
    ref = _candidate(candidate_uri)
    name, version, alias = ref.name, ref.version, ref.alias
    policy = load_policy(cfg.register.policy)
    settings = _settings(cfg, policy)
    client = client_for(cfg)
    audit.verify_store(cfg, client)  # a log that does not prove itself stops everything
    journal.recover(cfg, client, name)  # an interrupted promotion is finished or undone first
    store = tracking_uri(cfg.paths.registry_dir)
    keyring = keyring_from_cfg(cfg)  # the packaged AS-norm cohorts are encrypted
    cand = model_version(client, name, version, alias)
    version = str(cand.version)
    champ = current_champion(client, name)
    journal.fault_point("champion-read")
    # the first promotion commits its policy, as part of the promotion's transaction
    pin = check_policy(client, name, policy, cfg.register.get("policy_override"))
    out = _prepare_out_dir(_out_dir(cfg, name, version, out_dir))

    prepared = Path(cfg.data.prepared_dir)
    manifest = read_manifest(prepared / "manifest.csv")
    trials = load_trial_set(prepared, "eval", manifest)
    cand_info = _model_info(cand)
    champ_info = _model_info(champ) if champ is not None else None
    checks = preconditions(policy, cand_info, champ_info, trials.sha256)
    cand_label = f"candidate v{version}"
    champ_label = f"champion v{champ.version}" if champ is not None else None
    verdict: dict[str, Any] = {
        "action": action,
        "model_name": name,
        "candidate": cand_info,
        "champion": champ_info,
        "policy": {**policy.summary(), "pin": pin},
        "trials": {
            "path": str(trials.path),
            "sha256": trials.sha256,
            "inputs_sha256": trials.inputs_sha256,
            "n_trials": int(len(trials.table)),
            "n_target": int(trials.labels.sum()),
            "n_enroll_speakers": int(trials.table["enroll_speaker"].nunique()),
        },
        "settings": settings.describe(),
        "plots": {},
    }
    if all(c["passed"] for c in checks):
        systems = {}
        info = {}
        encoders = {}
        cand_scores, cand_llrs, cand_desc, cand_cal, encoders["candidate"] = _score(
            registered_model_uri(name, version), manifest, trials, progress, store, keyring
        )
        systems[cand_label] = (cand_scores, cand_llrs)
        info["candidate"] = {"scoring": cand_desc, "calibration": cand_cal}
        checks.append(calibration_precondition(version, cand_cal, cand_llrs is not None))
        if champ is not None:
            ch_scores, ch_llrs, ch_desc, ch_cal, encoders["champion"] = _score(
                registered_model_uri(name, champ.version),
                manifest,
                trials,
                progress,
                store,
                keyring,
            )
            systems[champ_label] = (ch_scores, ch_llrs)
            info["champion"] = {"scoring": ch_desc, "calibration": ch_cal}
        results, diff = assess(trials, systems, settings)
        pair_rows, pair = pair_checks(cfg, policy, client, cand, champ, encoders)
        checks += pair_rows
        channels, channel_pre = assess_channels(
            cfg,
            policy,
            settings,
            trials.sha256,
            lambda uri, m, t: _score(uri, m, t, progress, store, keyring)[:2],
            (cand_label, registered_model_uri(name, version)),
            (champ_label, registered_model_uri(name, champ.version)) if champ else None,
        )
        checks += channel_pre
        c = results[cand_label]
        h = results.get(champ_label) if champ_label else None
        v = promotion_verdict(
            policy,
            checks,
            c.figures,
            c.details(),
            h.figures if h else None,
            diff,
            champ_label or CHAMPION,
            channels,
        )
        verdict["channels"] = channels
        verdict["models"] = info
        verdict["figures"] = {
            "candidate": _figure_table(c),
            "champion": _figure_table(h) if h else None,
            "difference": diff,
        }
        verdict["bias"] = {"candidate": c.bias, "champion": h.bias if h else None}
        verdict["plots"] = _plots(out, results, trials, settings, cand_label, champ_label)
        verdict["pair"] = _pair_summary(pair)
        if pair is not None:
            (out / "pair.json").write_text(dumps(pair))
    else:
        v = promotion_verdict(policy, checks)
        verdict["figures"] = None
        verdict["bias"] = None
        verdict["models"] = None
        pair = verdict["pair"] = None
    verdict |= outcome(v, version, str(champ.version) if champ else None, dry_run)
    (out / "verdict.json").write_text(dumps(verdict))

    context = {
        "timestamp": audit.utc_now(),
        "user": audit.current_user(),
        **audit.ci_context(),
    }
    write_report(verdict, out / "report.md", context)
    journal.fault_point("verdict")
    record = None
    if not dry_run:
        commit = commit_tags(policy) if pin.get("first_use") else {}
        record = record_promotion(cfg, client, verdict, cand, champ, out, context, commit, pair)
    return PromotionResult(verdict, out, EXIT_PASS if v.passed else EXIT_REFUSED, record)


def _pair_summary(pair: dict[str, Any] | None) -> dict[str, Any] | None:
    """The pair in verdict.json: which countermeasure versions, what was refused (the figures
    are in pair.json)."""
    if pair is None:
        return None
    side = {k: ({"version": v["version"], "uri": v["uri"]} if v else None) for k, v in pair.items() if k in ("candidate", "champion")}  # fmt: skip
    return {"model_name": pair["model_name"], **side, "refused": pair.get("refused")}


def _plots(out: Path, results, trials, settings, cand_label, champ_label) -> dict[str, str]:
    y = trials.labels
    theta = settings.threshold
    names = [n for n in (cand_label, champ_label) if n is not None and n in results]
    plots = {}
    det_plot(
        {n: (results[n].scores, y) for n in names},
        out / "det.png",
        f"DET on the pinned eval trials ({len(y)} trials)",
        operating_points={n: (results[n].llrs, theta) for n in names},
    )
    plots["det"] = "det.png"
    with_llr = {n: (results[n].llrs, y) for n in names if results[n].llrs is not None}
    if with_llr:
        calibration_plot(
            with_llr,
            out / "calibration.png",
            settings.operating_point,
            title="Calibration of the packaged LLRs on the pinned eval trials",
        )
        plots["calibration"] = "calibration.png"
    for col in settings.bias_columns:
        systems = {n: results[n].bias for n in names}
        if not any(s.get(col, {}).get("n_groups_ok", 0) >= 2 for s in systems.values()):
            continue  # nothing to compare: the tables say why
        fname = f"bias_{_safe(col)}.png"
        bias_plot(
            systems,
            out / fname,
            theta,
            [col],
            title=f"Per-group error rates by {col} (hatched: too few trials to gate)",
        )
        plots[f"bias_{col}"] = fname
    return plots


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def summary_lines(verdict: dict[str, Any]) -> list[str]:
    """Console lines: the verdict, then one line per check."""
    cand = verdict["candidate"]
    champ = verdict.get("champion")
    head = (
        f"promotion {'PASSED' if verdict['passed'] else 'REFUSED'}: {cand['name']} "
        f"v{cand['version']} vs champion {('v' + champ['version']) if champ else '(none)'}"
    )
    pair = verdict.get("pair") or {}
    if verdict["passed"] and not verdict.get("dry_run"):
        head += f"; alias champion moved to v{cand['version']}"
        if pair.get("candidate"):
            head += f" and {pair['model_name']} v{pair['candidate']['version']}"
    elif verdict.get("dry_run"):
        head += " (dry run: nothing changed)"
    lines = [head]
    for c in verdict["checks"]:
        mark = "skip" if c.get("skipped") else ("ok" if c["passed"] else "FAIL")
        lines.append(f"  [{mark}] {c['reason']}")
    return lines


__all__ = [
    "EXIT_ERROR",
    "EXIT_PASS",
    "EXIT_REFUSED",
    "PromotionResult",
    "promote",
    "summary_lines",
]
