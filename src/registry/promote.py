"""`speakerops promote` / `speakerops rollback`: candidate vs champion under the policy.

Promotion of ``models:/<name>/<version>``:

1. Preconditions (fail closed): the candidate's recorded ``trials_sha256`` tag equals the
   pinned eval trial list (`data/prepared/trials_eval.csv`, whose bytes must still match the
   `.sha256` beside it); a champion exists when the policy says ``require_champion: true``;
   the champion's tag matches the same list. A failed precondition refuses before any
   scoring, with the reason.
2. Both models, as packaged, score the same pinned trials: embedding -> scoring (cosine or
   AS-norm with the packaged cohort) -> the packaged calibration -> LLRs.
3. :func:`speakerops.eval.assess.assess`: metrics, FMR/FNMR and per-group bias at the
   policy's shipped threshold, speaker-bootstrap intervals, paired intervals of
   candidate − champion.
4. The policy's absolute and relative gates -> verdict. Writes `verdict.json` (deterministic:
   the same promotion twice gives the same bytes), `report.md`, `det.png`,
   `calibration.png`, `bias_<column>.png` into the output folder.
5. Unless ``dry_run``: the files go to MLflow on the candidate version's run
   (`promotion/<timestamp>/`), the version gets tags (`promotion.*`, `audit.<n>`), alias
   ``champion`` moves to the candidate only on pass, and one audit record is appended to the
   append-only log (:mod:`speakerops.registry.audit`).

Exit codes: :data:`EXIT_PASS` 0, :data:`EXIT_REFUSED` 1 (a gate or precondition refused),
:data:`EXIT_ERROR` 2 (the promotion could not be evaluated: bad URI, missing files, …).

Rollback moves ``champion`` back to the version that was champion before the current one
(the registered model's ``champion_history`` tag), with an audit record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from speakerops.core.jsonio import dumps
from speakerops.core.keys import keyring_from_cfg
from speakerops.core.mlflow import client as store_client
from speakerops.core.mlflow import ensure_experiment
from speakerops.core.names import CHAMPION
from speakerops.core.paths import tracking_uri
from speakerops.core.policy import Policy, load_policy
from speakerops.core.uris import ModelRef, parse_model_uri, registered_model_uri, run_artifact_uri
from speakerops.registry import audit
from speakerops.registry.gate import check_absolute, check_relative, decide, precondition
from speakerops.registry.lock import promotion_lock

EXIT_PASS = 0
EXIT_REFUSED = 1
EXIT_ERROR = 2
HISTORY_TAG = "champion_history"
GATED_FIGURES = (
    "eer",
    "min_dcf_0.01",
    "min_dcf_0.05",
    "act_dcf_0.01",
    "act_dcf_0.05",
    "cllr",
    "min_cllr",
    "cal_loss",
    "fmr",
    "fnmr",
)


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


def _client(cfg: DictConfig):
    ensure_experiment(cfg.mlflow.experiment, cfg.paths.registry_dir)
    return store_client(cfg.paths.registry_dir)


def _version(client, name: str, version: str | None, alias: str | None):
    from mlflow.exceptions import MlflowException

    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, version)
    except MlflowException as exc:
        ref = f"@{alias}" if alias else f"/{version}"
        raise ValueError(
            f"models:/{name}{ref}: no such registered model version ({exc.message})"
        ) from exc


def current_champion(client, name: str):
    """The version behind alias `champion`, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def champion_history(client, name: str) -> list[str]:
    """Versions that have been champion, oldest first (registered-model tag)."""
    rm = client.get_registered_model(name)
    raw = rm.tags.get(HISTORY_TAG)
    if not raw:
        return []
    try:
        return [str(v) for v in json.loads(raw)]
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"registered model {name}: tag {HISTORY_TAG} is not a JSON list") from exc


def _settings(cfg: DictConfig, policy: Policy):
    from speakerops.eval.assess import AssessSettings

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
    for pattern in ("verdict.json", "report.md", "det.png", "calibration.png", "bias_*.png"):
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


def _preconditions(policy: Policy, cand, champ, pinned: str) -> list[dict]:
    checks = []
    tag = cand.tags.get("trials_sha256")
    if tag is None:
        checks.append(
            precondition(
                "trials.candidate",
                False,
                f"candidate v{cand.version} has no trials_sha256 tag: cannot tell which trial "
                "list it was evaluated on (fail closed)",
                None,
                pinned,
            )
        )
    else:
        ok = tag == pinned
        checks.append(
            precondition(
                "trials.candidate",
                ok,
                f"candidate v{cand.version} was evaluated on trial list {tag[:12]}…"
                + (
                    " = the pinned list" if ok else f", not the pinned {pinned[:12]}… (fail closed)"
                ),
                tag,
                pinned,
            )
        )
    if champ is None:
        ok = not policy.require_champion
        checks.append(
            precondition(
                "champion.present",
                ok,
                "no champion yet: "
                + (
                    "first promotion allowed (require_champion: false); relative gates skipped"
                    if ok
                    else "the policy requires one (require_champion: true) (fail closed)"
                ),
                None,
                "required" if policy.require_champion else "optional",
            )
        )
    else:
        ctag = champ.tags.get("trials_sha256")
        ok = ctag == pinned
        checks.append(
            precondition(
                "trials.champion",
                ok,
                f"champion v{champ.version} "
                + (
                    "has no trials_sha256 tag (fail closed)"
                    if ctag is None
                    else f"was evaluated on trial list {ctag[:12]}…"
                    + (
                        " = the pinned list"
                        if ok
                        else f", not the pinned {pinned[:12]}…: candidate and champion are not "
                        "comparable (fail closed)"
                    )
                ),
                ctag,
                pinned,
            )
        )
    return checks


def _score(uri: str, manifest, trials, progress: bool, store: str):
    """(scores, LLRs or None, scorer description, calibration dict) of a packaged model."""
    from speakerops.eval.evaluate import embed_split
    from speakerops.eval.scoring import Scorer, system_scores
    from speakerops.registry.package import load_encoder

    encoder = load_encoder(uri, tracking_uri=store)
    scorer = Scorer.from_encoder(encoder)
    batch = embed_split(encoder, manifest, trials.utterances, f"embedding with {uri}", progress)
    scores, llrs = system_scores(scorer, batch.as_dict(), trials)
    cal = encoder.extras.get("calibration")
    return scores, llrs, scorer.normalization.describe(), cal


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
    from speakerops.data.manifest import read_manifest
    from speakerops.eval.assess import assess
    from speakerops.eval.trials import load_trial_set

    ref = _candidate(candidate_uri)
    name, version, alias = ref.name, ref.version, ref.alias
    policy = load_policy(cfg.register.policy)
    settings = _settings(cfg, policy)
    client = _client(cfg)
    audit.verify_store(cfg, client)  # a log that does not prove itself stops everything
    store = tracking_uri(cfg.paths.registry_dir)
    cand = _version(client, name, version, alias)
    version = str(cand.version)
    champ = current_champion(client, name)
    out = _prepare_out_dir(_out_dir(cfg, name, version, out_dir))

    prepared = Path(cfg.data.prepared_dir)
    manifest = read_manifest(prepared / "manifest.csv")
    trials = load_trial_set(prepared, "eval", manifest)
    checks = _preconditions(policy, cand, champ, trials.sha256)
    cand_label = f"candidate v{version}"
    champ_label = f"champion v{champ.version}" if champ is not None else None
    verdict: dict[str, Any] = {
        "action": action,
        "model_name": name,
        "candidate": _model_info(cand),
        "champion": _model_info(champ) if champ is not None else None,
        "policy": policy.summary(),
        "trials": {
            "path": str(trials.path),
            "sha256": trials.sha256,
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
        cand_scores, cand_llrs, cand_desc, cand_cal = _score(
            registered_model_uri(name, version), manifest, trials, progress, store
        )
        systems[cand_label] = (cand_scores, cand_llrs)
        info["candidate"] = {"scoring": cand_desc, "calibration": cand_cal}
        checks.append(
            precondition(
                "calibration.candidate",
                cand_llrs is not None,
                f"candidate v{version} "
                + (
                    f"ships a {cand_cal.get('kind')} calibration (scores -> LLRs)"
                    if cand_llrs is not None
                    else "ships no calibration: no LLRs, no shipped threshold (fail closed)"
                ),
                (cand_cal or {}).get("kind"),
                "present",
            )
        )
        if champ is not None:
            ch_scores, ch_llrs, ch_desc, ch_cal = _score(
                registered_model_uri(name, champ.version), manifest, trials, progress, store
            )
            systems[champ_label] = (ch_scores, ch_llrs)
            info["champion"] = {"scoring": ch_desc, "calibration": ch_cal}
        results, diff = assess(trials, systems, settings)
        c = results[cand_label]
        h = results.get(champ_label) if champ_label else None
        checks += check_absolute(c.figures, policy, c.details())
        checks += check_relative(
            c.figures, h.figures if h else None, diff, policy, champ_label or CHAMPION
        )
        verdict["models"] = info
        verdict["figures"] = {
            "candidate": _figure_table(c),
            "champion": _figure_table(h) if h else None,
            "difference": diff,
        }
        verdict["bias"] = {"candidate": c.bias, "champion": h.bias if h else None}
        verdict["plots"] = _plots(out, results, trials, settings, cand_label, champ_label)
    else:
        verdict["figures"] = None
        verdict["bias"] = None
        verdict["models"] = None
    v = decide(checks)
    verdict["checks"] = checks
    verdict["passed"] = v.passed
    verdict["verdict"] = "pass" if v.passed else "fail"
    verdict["reasons"] = v.reasons
    verdict["version"] = version  # `speakerops gate` compatibility
    verdict["champion_after"] = (
        version if (v.passed and not dry_run) else (str(champ.version) if champ else None)
    )
    verdict["dry_run"] = bool(dry_run)
    (out / "verdict.json").write_text(dumps(verdict))

    from speakerops.registry.report import write_report

    context = {
        "timestamp": audit.utc_now(),
        "user": audit.current_user(),
        **audit.ci_context(),
    }
    write_report(verdict, out / "report.md", context)
    record = None
    if not dry_run:
        record = _record(cfg, client, verdict, cand, champ, out, context)
    return PromotionResult(verdict, out, EXIT_PASS if v.passed else EXIT_REFUSED, record)


def _plots(out: Path, results, trials, settings, cand_label, champ_label) -> dict[str, str]:
    from speakerops.eval.plots import bias_plot, calibration_plot, det_plot

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


def _record(cfg, client, verdict, cand, champ, out: Path, context) -> dict[str, Any]:
    """MLflow artifacts + tags, alias move on pass, champion history, audit record."""
    name, version = cand.name, str(cand.version)
    passed = verdict["passed"]
    before = str(champ.version) if champ is not None else None
    stamp = context["timestamp"].replace(":", "").replace("-", "")
    artifact_path = f"promotion/{stamp}-v{version}"
    if cand.run_id:
        client.log_artifacts(cand.run_id, str(out), artifact_path)
    if passed:
        client.set_registered_model_alias(name, CHAMPION, version)
        history = champion_history(client, name)
        if before is not None and (not history or history[-1] != before):
            history.append(before)
        if not history or history[-1] != version:
            history.append(version)
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    reasons = verdict["reasons"]
    # the latest attempt (every attempt is also an `audit.<n>` tag and a line of the log)
    tags = {
        "promotion.last_verdict": verdict["verdict"],
        "promotion.last_reasons": "; ".join(reasons)[:4900] or "all gates passed",
        "promotion.last_champion_before": before or "none",
        "promotion.last_trials_sha256": verdict["trials"]["sha256"],
        "promotion.last_policy_sha256": verdict["policy"]["sha256"],
        "promotion.last_artifacts": artifact_path if cand.run_id else "",
        "gate": "passed" if passed else "refused",
        "gate_reasons": "; ".join(c["reason"] for c in verdict["checks"])[:4900],
    }
    if passed:
        tags["promotion.promoted_at"] = context["timestamp"]
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v)
    record = {
        "timestamp": context["timestamp"],
        "user": context["user"],
        "action": verdict["action"],
        "model_name": name,
        "candidate_version": version,
        "champion_before": before,
        "champion_after": version if passed else before,
        "verdict": verdict["verdict"],
        "reasons": reasons,
        "trials_sha256": verdict["trials"]["sha256"],
        "policy_sha256": verdict["policy"]["sha256"],
        "report": str(out / "report.md"),
        "mlflow_artifacts": run_artifact_uri(cand.run_id, artifact_path) if cand.run_id else None,
        "ci": {k: v for k, v in context.items() if k not in ("timestamp", "user")} or None,
    }
    return audit.record(cfg, client, record, model_name=name, versions=[version])


def record_error(
    cfg: DictConfig, candidate_uri: str, message: str, action: str = "promote"
) -> dict:
    """Audit an attempt that could not be evaluated (exit code 2)."""
    return audit.append_audit(
        audit.audit_log_path(cfg),
        {
            "action": action,
            "candidate": candidate_uri,
            "verdict": "error",
            "reasons": [message],
            "ci": audit.ci_context() or None,
        },
        keyring=keyring_from_cfg(cfg),
    )


def rollback(
    cfg: DictConfig,
    model_name: str | None = None,
    to_version: str | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """Move `champion` back to the previous champion (or to ``to_version``, which must have
    been champion before), under the promotion lock; returns the audit record."""
    name = model_name or str(cfg.register.model_name)
    with promotion_lock(cfg, name, tracking_uri(cfg.paths.registry_dir)):
        return _rollback_locked(cfg, name, to_version, reason)


def _rollback_locked(
    cfg: DictConfig, name: str, to_version: str | None, reason: str
) -> dict[str, Any]:
    client = _client(cfg)
    audit.verify_store(cfg, client)
    champ = current_champion(client, name)
    if champ is None:
        raise ValueError(f"registered model {name}: no champion to roll back from")
    current = str(champ.version)
    history = champion_history(client, name)
    if not history or history[-1] != current:
        history.append(current)  # champion set outside promote: treat it as the latest
    if to_version is None:
        earlier = [v for v in history[:-1] if v != current]
        if not earlier:
            raise ValueError(
                f"registered model {name}: no champion before v{current} is recorded "
                f"(history {history}); name one that passed a promotion with --to <version>"
            )
        target = earlier[-1]
        while history and history[-1] != target:
            history.pop()
    else:
        target = str(to_version)
        if target == current:
            raise ValueError(f"v{target} is already the champion")
        vetted = _version(client, name, target, None).tags.get("promotion.promoted_at")
        if target not in history and not vetted:
            raise ValueError(
                f"v{target} of {name} has never passed a promotion (history {history}): "
                "rollback only restores a vetted version; use `speakerops promote`"
            )
        if target in history:
            history = history[: len(history) - history[::-1].index(target)]
        else:
            history.append(target)
    _version(client, name, target, None)  # exists
    client.set_registered_model_alias(name, CHAMPION, target)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    record = audit.record(
        cfg,
        client,
        {
            "action": "rollback",
            "model_name": name,
            "candidate_version": target,
            "champion_before": current,
            "champion_after": target,
            "verdict": "rolled back",
            "reasons": [reason or f"rollback from v{current} to v{target}"],
            "ci": audit.ci_context() or None,
        },
        model_name=name,
        versions=[current, target],
    )
    client.set_model_version_tag(name, current, "promotion.rolled_back", record["timestamp"])
    return record


def summary_lines(verdict: dict[str, Any]) -> list[str]:
    """Console lines: the verdict, then one line per check."""
    cand = verdict["candidate"]
    champ = verdict.get("champion")
    head = (
        f"promotion {'PASSED' if verdict['passed'] else 'REFUSED'}: {cand['name']} "
        f"v{cand['version']} vs champion {('v' + champ['version']) if champ else '(none)'}"
    )
    if verdict["passed"] and not verdict.get("dry_run"):
        head += f"; alias champion moved to v{cand['version']}"
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
    "champion_history",
    "current_champion",
    "promote",
    "record_error",
    "rollback",
    "summary_lines",
]
