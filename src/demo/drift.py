"""`speakerops drift-demo`: both sides of drift monitoring on the champion from `speakerops demo`.

1. A production batch from the reference distribution (new synthetic speakers, the usual
   channel mix) is embedded into the production log and checked: no drift, no ticket.
2. A batch with a shifted channel (telephone band plus noise for every recording) is embedded
   and checked: drift, one retraining ticket, and the DVC retraining run with the newly
   labelled batch added to the training manifest, whose new challenger goes through the gate.

``via=batch`` (default) embeds each batch with `speakerops embed`; ``via=api`` sends it as
traffic to the verification service instead (`speakerops serve` on 127.0.0.1, ``serve.model``:
the champion): each speaker enrolls with one utterance and is verified with the others, the
client sending the recording's channel, so the production log the drift job reads is written
by the service alone.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd

from speakerops.core.config import compose
from speakerops.core.names import CHAMPION
from speakerops.data.synthetic import generate_corpus
from speakerops.drift.ingest import embed_to_file
from speakerops.drift.run import main as drift_main
from speakerops.serve.client import Client, ClientError
from speakerops.serve.process import ServerProcess
from speakerops.serve.tokens import issue_token, revoke_token

SHIFTED_CHANNEL = {"column": "gender", "value": ["f", "m"], "channel": "phone", "snr_db": 5.0}
DEMO_KEY = "speakerops-drift-demo-key (not a secret: set SPEAKEROPS_PSEUDONYM_KEY in production)"
VIAS = ("batch", "api")
API_TENANT = "drift-demo"


def production_batch(
    out_dir: Path,
    name: str,
    seed: int,
    n_speakers: int,
    degrade: dict | None,
    utts: int = 3,
    workers: int = 2,
) -> Path:
    """Generate a labelled production batch and write its manifest: speaker ids prefixed,
    utterance ids opaque (`prod-<batch>-<n>`: the production log refuses ids that contain a
    raw speaker id)."""
    df = generate_corpus(out_dir, n_speakers, utts, seed=seed, degrade=degrade, workers=workers)
    df = df.assign(
        path=[str((out_dir / p).resolve()) for p in df["path"]],
        speaker=[f"prod-{name}-{s}" for s in df["speaker"]],
        utt_id=[f"prod-{name}-{i:05d}" for i in range(len(df))],
        split="train",
    )
    manifest = out_dir / "manifest.csv"
    df.to_csv(manifest, index=False)
    return manifest


def send_through_api(cfg, overrides: list[str], manifest: Path, log_dir: Path) -> dict[str, int]:
    """Each speaker of the manifest enrolls (its first utterance the service accepts) and is
    verified with the rest, through `speakerops serve` writing its production log to
    `log_dir`. Returns the request counts, also written beside the log
    (``<log_dir>.requests.json``): ``enroll``, ``verify`` and ``refused:<code>`` (a refused
    request is counted and the batch goes on)."""
    df = pd.read_csv(manifest, dtype={"channel": str})
    # one token of the demo's own, replacing the previous run's and revoked when done: the
    # project's tokens file does not collect a token per batch and run
    token_id, token = issue_token(cfg.serve.tokens, API_TENANT, label="drift-demo", replace=True)
    counts: dict[str, int] = {}
    server = ServerProcess([*overrides, f"serve.production_log={log_dir}"], log_file=log_dir.parent / f"{log_dir.name}.server.log")  # fmt: skip
    try:
        _send(server, token, df, counts)
    finally:
        revoke_token(cfg.serve.tokens, token_id)
    (log_dir.parent / f"{log_dir.name}.requests.json").write_text(json.dumps(counts, indent=1))
    return counts


def _send(server: ServerProcess, token: str, df: pd.DataFrame, counts: dict[str, int]) -> None:
    with server:
        client = Client(server.url, API_TENANT, token)
        for speaker, rows in df.groupby("speaker", sort=True):
            enrolled = False
            for row in rows.itertuples():
                channel = row.channel if isinstance(row.channel, str) else None
                try:
                    if enrolled:
                        client.verify(speaker, row.path, channel=channel)
                        action = "verify"
                    else:
                        client.enroll(speaker, [row.path], channel=channel)
                        enrolled, action = True, "enroll"
                except ClientError as exc:
                    code = exc.body.get("error", {}).get("code", exc.status)
                    action = f"refused:{code}"
                counts[action] = counts.get(action, 0) + 1
        client.http.close()


def run_drift_demo(
    overrides: list[str],
    retrain: bool = True,
    via: str = "batch",
    n_speakers: int = 120,
    workers: int = 2,
) -> int:
    """Both batches through drift monitoring (module docstring); `n_speakers` per batch,
    generated with `workers` processes. Exit 0 when the same-distribution batch gives no
    drift and the shifted one drift, else 1 (2: the champion or the service is missing)."""
    if via not in VIAS:
        raise ValueError(f"via={via!r}: expected one of {VIAS}")
    os.environ.setdefault("SPEAKEROPS_PSEUDONYM_KEY", DEMO_KEY)
    cfg = compose(overrides)
    root = Path(cfg.paths.artifacts_dir).parent / "data" / "production_demo"
    results = {}
    for k, (name, degrade) in enumerate((("same", None), ("shifted", SHIFTED_CHANNEL))):
        batch_dir = root / name
        manifest = production_batch(batch_dir, name, 5000 + k, n_speakers, degrade, workers=workers)
        log_dir = root / "log" / name
        shutil.rmtree(log_dir, ignore_errors=True)  # a rerun replays the batch, not appends it
        try:
            if via == "api":
                counts = send_through_api(cfg, overrides, manifest, log_dir)
                print(f"batch '{name}' through the service: {counts}; log {log_dir}")
            else:
                report = embed_to_file(
                    cfg,
                    f"models:/{cfg.register.model_name}@{CHAMPION}",
                    manifest,
                    batch_dir / "embeddings.parquet",
                    log_dir,
                )
                print(
                    f"wrote {report.n_embedded} embeddings to {report.output}; "
                    f"log {report.log_part}"
                )
        except (ValueError, LookupError, OSError, RuntimeError) as exc:
            print(
                f"drift-demo: {'the service' if via == 'api' else 'embedding'} failed ({exc});"
                " it needs the champion that `speakerops demo` registers",
                file=sys.stderr,
            )
            return 2
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
