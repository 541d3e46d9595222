"""``speakerops drift``: the scheduled drift job.

Steps: load the champion's reference → read the window of the production log → decide
(:func:`speakerops.drift.checks.check_drift`) → Evidently HTML report → on drift, open or
update the retraining ticket → trigger DVC retraining with the labelled production data.
Every run writes ``<output_dir>/<run>/summary.json`` (also on refusal/error) and, when the
check ran, ``report.html``.

Exit codes: 0 no drift, 1 drift found (ticket opened/updated; retraining triggered when
configured and it ran: its new challenger passed or was refused by the promotion gate, whose
verdict the summary records), 2 refusal or error (the reason is in the summary and on stderr).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from speakerops.core.jsonio import sha256_file
from speakerops.core.keys import KeyMaterialError, Keyring, keyring_from_cfg
from speakerops.core.names import CHAMPION
from speakerops.core.paths import tracking_uri
from speakerops.drift.checks import check_drift
from speakerops.drift.config import drift_config
from speakerops.drift.log import read_production_log, to_utc
from speakerops.drift.reference import load_champion_reference
from speakerops.drift.report import render_report
from speakerops.drift.results import DriftRefusal, DriftResult
from speakerops.drift.retrain import retraining_command, trigger_retraining
from speakerops.drift.tickets import (
    github_from_config,
    load_ticket,
    open_or_update_ticket,
    record_retraining,
)
from speakerops.registry.reference import Reference, load_reference

log = logging.getLogger("speakerops.drift")
STEPS = (
    "load reference",
    "read window",
    "drift checks",
    "evidently report",
    "ticket",
    "retraining",
)


def resolve_window(d) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC from ``drift.window`` (end defaults to now, start to
    end − last_days)."""
    w = d.window
    end = to_utc(w.end, what="drift.window.end") if w.end else datetime.now(timezone.utc)
    if w.start:
        start = to_utc(w.start, what="drift.window.start")
    else:
        if w.last_days is None or float(w.last_days) <= 0:
            raise ValueError("drift.window.start is null and drift.window.last_days is not > 0")
        start = end - timedelta(days=float(w.last_days))
    if end <= start:
        raise ValueError(
            f"drift.window: end {end.isoformat()} is not after start {start.isoformat()}"
        )
    return start, end


def load_configured_reference(d, keyring: Keyring) -> Reference:
    """The reference named by ``drift.reference`` (registry alias or local folder)."""
    r = d.reference
    if r.source == "mlflow":
        ref, _ = load_champion_reference(
            str(r.model_name), str(r.alias), r.tracking_uri, keyring=keyring
        )
        return ref
    if not r.path:
        raise ValueError("drift.reference.source is 'path' but drift.reference.path is not set")
    ref = load_reference(r.path, keyring=keyring)
    if r.model_version is not None:
        ref.model_version = str(r.model_version)
    if ref.model_name is None and r.model_name:
        ref.model_name = str(r.model_name)
    if ref.model_version is None:
        raise DriftRefusal(
            f"the reference at {r.path} does not say which model version it belongs to: set "
            "drift.reference.model_version so embeddings of other versions are never compared with it"
        )
    return ref


def _run_dir(d) -> Path:
    name = (
        d.run_name or f"drift-{datetime.now(timezone.utc):%Y%m%dT%H%M%S.%fZ}-{uuid.uuid4().hex[:6]}"
    )
    out = Path(d.output_dir) / str(name)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _retrain(d, ticket_id: str | None, out_dir: Path) -> dict[str, Any]:
    r = d.retrain
    if not r.enabled:
        return {"status": "disabled"}
    manifest = Path(r.labelled_manifest) if r.labelled_manifest else None
    if manifest is None and not r.run_without_manifest:
        return {
            "status": "skipped",
            "reason": "no labelled production data yet (drift.retrain.labelled_manifest); the ticket carries the evidence",
        }
    sha = sha256_file(manifest) if manifest is not None and manifest.is_file() else None
    if ticket_id is not None and sha is not None:
        done = [
            e
            for e in load_ticket(d.tickets.dir, ticket_id).get("retrain", [])
            if e.get("manifest_sha256") == sha
        ]
        if any(e.get("returncode") == 0 for e in done):
            return {
                "status": "skipped",
                "reason": f"this ticket already retrained with manifest sha256 {sha[:12]}",
            }
    argv, root = retraining_command(d, manifest)
    started = time.time()
    rc = trigger_retraining(d, manifest, log_path=out_dir / "retrain.log")
    entry = {
        "command": argv,
        "cwd": str(root),
        "manifest": None if manifest is None else str(manifest),
        "manifest_sha256": sha,
        "returncode": rc,
        "log": str(out_dir / "retrain.log"),
        "gate": _fresh_gate_verdict(root / str(r.gate_verdict), started),
    }
    if ticket_id is not None:
        record_retraining(d.tickets.dir, ticket_id, entry)
    gate = entry["gate"]
    if gate is not None and not gate["passed"]:
        status = "refused"  # the pipeline ran to its gate, which kept the champion
    else:
        status = "ok" if rc == 0 else "failed"
    return {"status": status, **entry}


def _fresh_gate_verdict(path: Path, since: float) -> dict[str, Any] | None:
    """The gate verdict the retraining run wrote (``None`` when it wrote none)."""
    if not path.is_file() or path.stat().st_mtime < since:
        return None
    v = json.loads(path.read_text())
    return {
        "model_name": v.get("model_name"),
        "version": v.get("version"),
        "passed": bool(v.get("passed")),
        "path": str(path),
    }


def _print_summary(summary: dict[str, Any]) -> None:
    status = summary["status"]
    print(f"speakerops drift: {status.upper().replace('_', ' ')}")
    if summary.get("reason"):
        print(f"  reason: {summary['reason']}")
    for c in summary.get("result", {}).get("checks", []):
        if c.get("skipped"):
            print(f"  {c['name']:<18} skipped ({c['skipped']})")
        else:
            mark = "DRIFT" if c["drifted"] else "ok"
            print(
                f"  {c['name']:<18} {mark:<5} {c['method']} = {c['score']:.4g} (threshold {c['threshold']:g})"
            )
    for key in ("report_html", "summary_json"):
        if summary.get(key):
            print(f"  {key}: {summary[key]}")
    if summary.get("ticket"):
        t = summary["ticket"]
        print(
            f"  ticket {t['action']}: {t['markdown']}"
            + (f" ({t['github_url']})" if t.get("github_url") else "")
        )
    if summary.get("retrain"):
        r = summary["retrain"]
        gate = r.get("gate")
        verdict = (
            f"; challenger v{gate['version']} {'PASSED' if gate['passed'] else 'REFUSED by'} the"
            f" gate ({gate['path']})"
            if gate
            else ""
        )
        print(f"  retraining: {r.get('status')}{verdict}")


def main(cfg) -> int:
    """Run the drift job with the composed config (reads ``cfg.drift``); see module doc."""
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    summary: dict[str, Any] = {
        "status": "error",
        "started_at": datetime.now(timezone.utc).isoformat(),
    }
    try:
        d = drift_config(cfg)
    except Exception as exc:  # a broken config: nothing else can run
        print(f"speakerops drift: invalid drift config: {exc}", file=sys.stderr)
        return 2
    if d.reference.tracking_uri is None and isinstance(cfg, DictConfig) and "paths" in cfg:
        d.reference.tracking_uri = tracking_uri(cfg.paths.registry_dir)  # the configured store
    try:
        keyring = keyring_from_cfg(cfg)
    except KeyMaterialError as exc:
        print(f"speakerops drift: {exc}", file=sys.stderr)
        return 2
    if d.get("threads") is None:
        return _main(d, keyring, summary, timings, t_start)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=int(d.threads)):
        return _main(d, keyring, summary, timings, t_start)


def _main(
    d, keyring: Keyring, summary: dict[str, Any], timings: dict[str, float], t_start: float
) -> int:
    try:
        out_dir = _run_dir(d)
    except OSError as exc:
        print(
            f"speakerops drift: cannot create the run folder under {d.output_dir}: {exc}",
            file=sys.stderr,
        )
        return 2
    summary_path = out_dir / "summary.json"
    summary["summary_json"] = str(summary_path)
    summary["config"] = OmegaConf.to_container(d, resolve=True)
    bar = tqdm(
        total=len(STEPS),
        desc="speakerops drift",
        unit="step",
        disable=not d.progress,
        file=sys.stderr,
    )

    def step(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 3)
        bar.update(1)

    code = 2
    try:
        bar.set_postfix_str(STEPS[0])
        t0 = time.perf_counter()
        reference = load_configured_reference(d, keyring)
        summary["model"] = {
            "name": reference.model_name,
            "version": reference.model_version,
            "run_id": reference.run_id,
            "reference_source": d.reference.source,
            "reference_rows": len(reference),
        }
        step(STEPS[0], t0)

        bar.set_postfix_str(STEPS[1])
        t0 = time.perf_counter()
        start, end = resolve_window(d)
        version = d.window.model_version
        if version is not None and str(version) == CHAMPION:
            version = reference.model_version
        window = read_production_log(
            d.log_dir,
            start,
            end,
            model_name=reference.model_name,
            model_version=None if version is None else str(version),
            keyring=keyring,
        )
        summary["window"] = {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "n_rows": len(window),
            "model_version_filter": None if version is None else str(version),
            "first_timestamp": None if window.empty else str(window["timestamp"].iloc[0]),
            "last_timestamp": None if window.empty else str(window["timestamp"].iloc[-1]),
        }
        step(STEPS[1], t0)

        bar.set_postfix_str(STEPS[2])
        t0 = time.perf_counter()
        result: DriftResult = check_drift(window, reference, d)
        summary["status"] = "drift" if result.drifted else "no_drift"
        summary["result"] = result.to_dict()
        step(STEPS[2], t0)

        bar.set_postfix_str(STEPS[3])
        t0 = time.perf_counter()
        if d.report.enabled:
            report = render_report(
                result, d, out_dir / "report.html", context={"window": summary["window"]}
            )
            summary["report_html"] = str(report)
            summary["evidently_json"] = str(report.with_suffix(".evidently.json"))
        step(STEPS[3], t0)

        bar.set_postfix_str(STEPS[4])
        t0 = time.perf_counter()
        code = 0
        ticket_id = None
        if result.drifted:
            gh, gh_warning = github_from_config(d.tickets.github)
            if gh_warning:
                result.warnings.append(gh_warning)
                summary["result"]["warnings"] = list(result.warnings)
            evidence = {
                "model_name": result.model_name,
                "model_version": result.model_version,
                "checks_fired": result.fired,
                "checks": [c for c in summary["result"]["checks"]],
                "window": {k: summary["window"][k] for k in ("start", "end", "n_rows")},
                "report": summary.get("report_html"),
                "summary": str(summary_path),
            }
            outcome = open_or_update_ticket(
                d.tickets.dir, evidence, gh, list(d.tickets.github.labels or [])
            )
            summary["ticket"] = outcome.to_dict()
            ticket_id = outcome.ticket_id
            code = 2 if outcome.github_error else 1
        step(STEPS[4], t0)

        bar.set_postfix_str(STEPS[5])
        t0 = time.perf_counter()
        if result.drifted:
            summary["retrain"] = _retrain(d, ticket_id, out_dir)
            if summary["retrain"].get("status") == "failed":
                code = 2
        step(STEPS[5], t0)
    except DriftRefusal as exc:
        summary["status"] = "refused"
        summary["reason"] = str(exc)
        log.error("drift check refused: %s", exc)
        code = 2
    except Exception as exc:  # the job must always leave a summary behind
        summary["status"] = "error"
        summary["reason"] = f"{type(exc).__name__}: {exc}"
        summary["traceback"] = traceback.format_exc()
        log.error("drift job failed: %s", summary["reason"])
        code = 2
    finally:
        bar.close()
    summary["exit_code"] = code
    summary["timings_s"] = {**timings, "total": round(time.perf_counter() - t_start, 3)}
    summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    _print_summary(summary)
    return code
