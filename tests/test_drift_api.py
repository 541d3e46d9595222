"""Acceptance: the drift job, fed only through the API, raises drift on the telephone-band
batch and not on the same-distribution batch.

`run_drift_demo(via="api")` on a small world: the real `speakerops serve` in a subprocess
(an encoder file with packaged AS-norm and calibration), the demo's own production batches
(`production_batch`, `SHIFTED_CHANNEL`) sent as enroll/verify requests with their channel,
and the real drift job (Evidently) on the production log the service wrote, against a
reference embedded in process from another same-distribution batch."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from speakerops.core.keys import keyring_from_cfg
from speakerops.data.quality import QualitySettings
from speakerops.demo.drift import production_batch, run_drift_demo
from speakerops.drift.log import read_production_log
from speakerops.eval.embed import embed_inputs
from speakerops.registry.reference import save_reference

from .serve_world import build_encoder, make_cfg

N_SPEAKERS = 36  # per batch; 3 utterances each: the first accepted enrolls, the rest verify


@pytest.mark.slow
def test_drift_fed_only_through_the_api(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPEAKEROPS_PSEUDONYM_KEY", "drift-api-test-key")
    encoder = build_encoder()
    model = encoder.save(tmp_path / "speaker-encoder.safetensors")  # its name: the file's stem
    base = make_cfg(tmp_path)
    # the reference: another same-distribution batch, embedded in process
    ref = production_batch(tmp_path / "reference-batch", "ref", 4000, 50, None, workers=1)
    batch, _ = embed_inputs(
        encoder, ref, base.audio.extensions, QualitySettings.from_config(base.quality),
        progress=False,
    )  # fmt: skip
    manifest = pd.read_csv(ref).set_index("utt_id").loc[batch.utt_ids]
    metadata = pd.DataFrame(
        {
            "duration_s": batch.durations,
            "sample_rate": batch.sample_rates,
            "snr_db": batch.snr_db,
            "channel": manifest["channel"].to_numpy(),
            "speaker": manifest["speaker"].to_numpy(),
        }
    )
    scores = pd.DataFrame({"set": ["eval", "eval"], "label": [1, 0], "score": [0.7, 0.1]})
    save_reference(
        tmp_path / "reference", batch.embeddings, metadata, scores, keyring=keyring_from_cfg(base)
    )
    overrides = [
        f"paths.registry_dir={tmp_path / 'registry'}",
        f"paths.artifacts_dir={tmp_path / 'artifacts'}",
        f"serve.policy={base.serve.policy}",
        f"serve.model={model}",
        "drift.reference.source=path",
        f"drift.reference.path={tmp_path / 'reference'}",
        "drift.reference.model_version=local",  # an encoder file's version
        f"drift.output_dir={tmp_path / 'outputs'}",
        f"drift.tickets.dir={tmp_path / 'tickets'}",
        "drift.window.min_rows=50",
        "drift.embedding.min_rows=20",
        "drift.progress=false",
        "drift.report.enabled=false",  # the decision does not need the HTML report
    ]
    assert (
        run_drift_demo(overrides, retrain=False, via="api", n_speakers=N_SPEAKERS, workers=1) == 0
    )
    out = capsys.readouterr().out
    assert "batch 'same': exit 0 -> no drift" in out and "batch 'shifted': exit 1 -> DRIFT" in out

    summaries = {
        name: json.loads((tmp_path / "outputs" / f"demo-{name}" / "summary.json").read_text())
        for name in ("same", "shifted")
    }
    assert summaries["same"]["status"] == "no_drift" and summaries["same"]["result"]["fired"] == []
    fired = set(summaries["shifted"]["result"]["fired"])
    assert {"embedding", "channel"} <= fired, fired
    assert len(list((tmp_path / "tickets").glob("drift-*.json"))) == 1

    # the demo's bearer token was revoked when its batches were sent: none piles up
    tokens = json.loads(Path(make_cfg(tmp_path).serve.tokens).read_text())
    assert tokens.get("drift-demo", {}) == {}, tokens

    # the logs were written by the service alone: one row per accepted request, with the
    # channel the client sent and the speaker's pseudonym, never a raw id
    cfg = make_cfg(tmp_path)
    root = tmp_path / "data" / "production_demo"
    for name in ("same", "shifted"):
        log = read_production_log(root / "log" / name, keyring=keyring_from_cfg(cfg))
        counts = json.loads((root / "log" / f"{name}.requests.json").read_text())
        assert len(log) == counts.get("enroll", 0) + counts.get("verify", 0) >= 50
        refused = sum(v for k, v in counts.items() if k.startswith("refused:"))
        assert len(log) + refused == 3 * N_SPEAKERS  # every request answered, none lost
        assert log["speaker_key"].notna().all() and log["model_version"].eq("local").all()
        assert log["speaker_key"].nunique() == counts["enroll"] >= 25
        assert not log["speaker_key"].astype(str).str.contains("prod-").any()
        channels = set(log["channel"])
        assert channels == {"phone"} if name == "shifted" else len(channels) > 1
        assert Path(root / "log" / f"{name}.server.log").is_file()
