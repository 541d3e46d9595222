"""`speakerops drift-demo`: both sides of drift monitoring on the champion from `speakerops demo`.

1. A production batch from the reference distribution (new synthetic speakers, the usual
   channel mix) is embedded into the production log and checked: no drift, no ticket.
2. A batch with a shifted channel (telephone band plus noise for every recording) is embedded
   and checked: drift, one retraining ticket, and the DVC retraining run with the newly
   labelled batch added to the training manifest, whose new challenger goes through the gate.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from speakerops.core.config import compose
from speakerops.core.names import CHAMPION
from speakerops.data.synthetic import generate_corpus
from speakerops.drift.ingest import embed_to_file
from speakerops.drift.run import main as drift_main

SHIFTED_CHANNEL = {"column": "gender", "value": ["f", "m"], "channel": "phone", "snr_db": 5.0}
DEMO_KEY = "speakerops-drift-demo-key (not a secret: set SPEAKEROPS_PSEUDONYM_KEY in production)"


def production_batch(
    out_dir: Path, name: str, seed: int, n_speakers: int, degrade: dict | None
) -> Path:
    """Generate a labelled production batch and write its manifest: speaker ids prefixed,
    utterance ids opaque (`prod-<batch>-<n>`: the production log refuses ids that contain a
    raw speaker id)."""
    df = generate_corpus(out_dir, n_speakers, 3, seed=seed, degrade=degrade, workers=2)
    df = df.assign(
        path=[str((out_dir / p).resolve()) for p in df["path"]],
        speaker=[f"prod-{name}-{s}" for s in df["speaker"]],
        utt_id=[f"prod-{name}-{i:05d}" for i in range(len(df))],
        split="train",
    )
    manifest = out_dir / "manifest.csv"
    df.to_csv(manifest, index=False)
    return manifest


def run_drift_demo(overrides: list[str], retrain: bool = True) -> int:
    os.environ.setdefault("SPEAKEROPS_PSEUDONYM_KEY", DEMO_KEY)
    cfg = compose(overrides)
    root = Path(cfg.paths.artifacts_dir).parent / "data" / "production_demo"
    results = {}
    for k, (name, degrade) in enumerate((("same", None), ("shifted", SHIFTED_CHANNEL))):
        batch_dir = root / name
        manifest = production_batch(batch_dir, name, 5000 + k, 120, degrade)
        log_dir = root / "log" / name
        shutil.rmtree(log_dir, ignore_errors=True)  # a rerun replays the batch, not appends it
        try:
            report = embed_to_file(
                cfg,
                f"models:/{cfg.register.model_name}@{CHAMPION}",
                manifest,
                batch_dir / "embeddings.parquet",
                log_dir,
            )
        except (ValueError, LookupError, OSError) as exc:
            print(
                f"drift-demo: embedding failed ({exc}); it needs the champion"
                " that `speakerops demo` registers",
                file=sys.stderr,
            )
            return 2
        print(f"wrote {report.n_embedded} embeddings to {report.output}; log {report.log_part}")
        drift_cfg = compose(
            [
                *overrides,
                f"drift.log_dir={log_dir}",
                f"drift.run_name=demo-{name}",
                f"drift.retrain.enabled={str(retrain and name == 'shifted').lower()}",
                f"drift.retrain.labelled_manifest={manifest}",
            ]
        )
        results[name] = drift_main(drift_cfg)
    tickets = sorted(Path(cfg.drift.tickets.dir).glob("*.json"))
    print("\n" + "=" * 72 + "\nspeakerops drift demo summary\n" + "=" * 72)
    for name, rc in results.items():
        summary = json.loads(
            (Path(cfg.drift.output_dir) / f"demo-{name}" / "summary.json").read_text()
        )
        fired = summary.get("result", {}).get("fired", [])
        verdict = {0: "no drift", 1: "DRIFT"}.get(rc, f"error: {summary.get('reason', '-')}")
        print(
            f"batch '{name}': exit {rc} -> {verdict}"
            f"{'; fired: ' + ', '.join(fired) if fired else ''}\n"
            f"  report {summary.get('report_html', '-')}"
        )
        ticket = summary.get("ticket")
        if ticket:
            print(f"  ticket {ticket['action']}: {ticket['markdown']}")
        retraining = summary.get("retrain") or {}
        gate = retraining.get("gate")
        if retraining.get("status") not in (None, "disabled"):
            command = " ".join(retraining.get("command", []))
            print(f"  retraining ({command}): {retraining['status']}")
        if gate:
            print(
                f"  new challenger v{gate['version']}: gate "
                f"{'PASSED (now champion)' if gate['passed'] else 'REFUSED (champion kept)'};"
                f" report {Path(gate['path']).parent / 'promotion' / 'report.md'}"
            )
    print(f"tickets in {cfg.drift.tickets.dir}/: {len(tickets)}")
    return 0 if results.get("same") == 0 and results.get("shifted") == 1 else 1
