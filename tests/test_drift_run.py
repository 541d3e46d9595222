"""`speakerops drift` end to end (run.main): production log → checks → report → ticket."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from speakerops.core.keys import open_keyring
from speakerops.drift.log import append_production_log
from speakerops.drift.run import main
from speakerops.drift.simulated_traffic import synthetic_population
from speakerops.registry.reference import save_reference

KEY = b"run-test-pseudonym-key-000000"


def _log(
    log_dir: Path, *, seed: int, p_phone: float, day: str, version: str = "1", n: int = 900
) -> None:
    emb, meta = synthetic_population(n, n_speakers=n // 3, p_phone=p_phone, seed=seed)
    append_production_log(
        log_dir, emb, keyring=open_keyring(log_dir.parent / "registry"),
        utt_ids=[f"req-{seed}-{i}" for i in range(n)], model_name="speaker-encoder",
        model_version=version, durations_s=meta["duration_s"], sample_rates=meta["sample_rate"],
        snr_db=meta["snr_db"], channels=meta["channel"], speaker_ids=meta["speaker"], pseudonym_key=KEY,
        timestamp=f"{day}T12:00:00Z",
    )  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("drift-run")
    emb, meta = synthetic_population(3000, n_speakers=1000, p_phone=0.1, seed=1000)
    scores = pd.DataFrame({"set": ["eval", "eval"], "label": [1, 0], "score": [0.7, 0.1]})
    save_reference(
        root / "reference", emb, meta, scores, keyring=open_keyring(root / "registry")
    )  # version unknown: given in the config
    _log(root / "log", seed=1, p_phone=0.1, day="2025-03-01")  # same distribution
    _log(root / "log", seed=2, p_phone=0.9, day="2025-03-02")  # shifted channel
    _log(
        root / "log", seed=3, p_phone=0.9, day="2025-03-03", version="2"
    )  # a new version rolls out
    return root


def _cfg(world: Path, tmp_path: Path, start: str, end: str, **extra) -> dict:
    drift = {
        "log_dir": str(world / "log"),
        "output_dir": str(tmp_path / "outputs"),
        "progress": True,
        "reference": {"source": "path", "path": str(world / "reference"), "model_version": "1"},
        "window": {"start": start, "end": end},
        "report": {"max_rows": 120},
        "tickets": {"dir": str(tmp_path / "tickets")},
    }
    for key, value in extra.items():
        drift[key] = {**drift.get(key, {}), **value}
    return {"drift": drift, "paths": {"registry_dir": str(world / "registry")}}


def _summaries(tmp_path: Path) -> list[dict]:
    return [
        json.loads(p.read_text()) for p in sorted((tmp_path / "outputs").glob("*/summary.json"))
    ]


def test_drifted_window_twice_leaves_one_ticket(world, tmp_path, capsys):
    cfg = _cfg(world, tmp_path, "2025-03-02", "2025-03-03")
    assert main(cfg) == 1
    assert main(cfg) == 1
    tickets = sorted((tmp_path / "tickets").glob("drift-*.json"))
    assert len(tickets) == 1 and len(list((tmp_path / "tickets").glob("drift-*.md"))) == 1
    ticket = json.loads(tickets[0].read_text())
    assert ticket["status"] == "open" and len(ticket["events"]) == 2
    assert "embedding" in ticket["checks_fired"] and ticket["model_version"] == "1"

    first, second = _summaries(tmp_path)
    assert first["status"] == second["status"] == "drift" and first["exit_code"] == 1
    assert first["ticket"]["action"] == "opened" and second["ticket"]["action"] == "updated"
    assert first["window"]["n_rows"] == 900 and first["model"]["version"] == "1"
    fired = first["result"]["fired"]
    assert {"embedding", "channel", "sample_rate"} <= set(fired)
    assert ticket["events"][0]["report"] == first["report_html"]
    assert {c["name"] for c in ticket["events"][0]["checks"]} >= {
        "embedding",
        "duration_s",
        "score_random_pair",
    }
    assert first["retrain"]["status"] == "skipped"  # no labelled data configured
    assert set(first["timings_s"]) >= {
        "load reference",
        "drift checks",
        "evidently report",
        "total",
    }

    metrics = json.loads(Path(first["evidently_json"]).read_text())["metrics"]
    assert metrics[0]["metric_name"].startswith("EmbeddingsDrift") and len(metrics) == 7
    html = Path(first["report_html"]).read_text()
    assert (
        "DRIFT DETECTED" in html and "Drift in embeddings" in html and "Data drift detected" in html
    )
    assert "<title>speakerops drift: DRIFT DETECTED (speaker-encoder v1)</title>" in html
    out = capsys.readouterr()
    assert "speakerops drift: DRIFT" in out.out and "ticket updated" in out.out
    assert "speakerops drift" in out.err and "6/6" in out.err  # the tqdm bar on stderr


def test_same_distribution_window_is_clean(world, tmp_path):
    assert main(_cfg(world, tmp_path, "2025-03-01", "2025-03-02")) == 0
    (summary,) = _summaries(tmp_path)
    assert summary["status"] == "no_drift" and summary["result"]["fired"] == []
    assert not (tmp_path / "tickets").exists()
    html = Path(summary["report_html"]).read_text()
    assert "NO DRIFT" in html and "DRIFT DETECTED" not in html


def test_mixed_versions_are_refused_with_a_clear_message(world, tmp_path, capsys):
    assert main(_cfg(world, tmp_path, "2025-03-02", "2025-03-04")) == 2
    (summary,) = _summaries(tmp_path)
    assert summary["status"] == "refused" and summary["exit_code"] == 2
    assert "mixes embeddings of 2 model versions" in summary["reason"]
    assert "speaker-encoder v1 (900 rows), speaker-encoder v2 (900 rows)" in summary["reason"]
    assert "report_html" not in summary and not (tmp_path / "tickets").exists()
    assert "mixes embeddings of 2 model versions" in capsys.readouterr().out

    # keeping only the champion's version makes the same window comparable
    cfg = _cfg(
        world,
        tmp_path / "b",
        "2025-03-02",
        "2025-03-04",
        window={"model_version": "champion"},
        report={"enabled": False},
    )
    assert main(cfg) == 1
    (kept,) = _summaries(tmp_path / "b")
    assert kept["window"]["n_rows"] == 900 and kept["window"]["model_version_filter"] == "1"


def test_refusals_and_errors_exit_2_and_leave_a_summary(world, tmp_path):
    only_v2 = _cfg(world, tmp_path / "a", "2025-03-03", "2025-03-04", report={"enabled": False})
    assert main(only_v2) == 2
    assert (
        "come from speaker-encoder v2 but the reference belongs to speaker-encoder v1"
        in _summaries(tmp_path / "a")[0]["reason"]
    )

    no_version = _cfg(world, tmp_path / "b", "2025-03-01", "2025-03-02")
    no_version["drift"]["reference"]["model_version"] = None
    assert main(no_version) == 2
    assert "drift.reference.model_version" in _summaries(tmp_path / "b")[0]["reason"]

    empty = _cfg(world, tmp_path / "c", "2024-01-01", "2024-01-02")
    assert main(empty) == 2
    assert "holds no production embeddings" in _summaries(tmp_path / "c")[0]["reason"]

    missing_log = _cfg(world, tmp_path / "d", "2025-03-01", "2025-03-02")
    missing_log["drift"]["log_dir"] = str(tmp_path / "nowhere")
    assert main(missing_log) == 2
    summary = _summaries(tmp_path / "d")[0]
    assert summary["status"] == "error" and "FileNotFoundError" in summary["reason"]

    assert main({"drift": {"embedding": {"method": "tsne"}}}) == 2


def test_summary_is_json_with_numbers_not_strings(world, tmp_path):
    assert main(_cfg(world, tmp_path, "2025-03-02", "2025-03-03", report={"enabled": False})) == 1
    (summary,) = _summaries(tmp_path)
    emb = next(c for c in summary["result"]["checks"] if c["name"] == "embedding")
    assert (
        isinstance(emb["score"], float) and 0.5 < emb["score"] <= 1.0 and emb["threshold"] == 0.55
    )
    assert summary["config"]["embedding"]["method"] == "model"
    assert np.isfinite(summary["timings_s"]["total"])


def test_scheduled_workflow_runs_the_drift_job():
    import yaml

    wf_path = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "drift.yml"
    wf = yaml.safe_load(wf_path.read_text())
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    (cron,) = [t["cron"] for t in triggers["schedule"]]
    assert len(cron.split()) == 5 and "workflow_dispatch" in triggers
    assert wf["permissions"]["issues"] == "write"
    steps = wf["jobs"]["drift"]["steps"]
    run = next(s["run"] for s in steps if s.get("id") == "drift")
    assert (
        'speakerops drift "${args[@]}"' in run
        and "drift.tickets.github.repo=${{ github.repository }}" in run
    )
    assert (
        '[ "$code" -eq 2 ] && exit 2 || exit 0' in run
    )  # drift (1) is reported by the issue, not a red run
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in steps)
