"""Benchmark: `speakerops drift` on a 100 000 × 192 production window (not a timed test).

Builds a synthetic reference (eval + calibration sample) and a production log in a temp
folder, then times ``speakerops.drift.run.main`` end to end — reading the log, every
check, the Evidently HTML report, the ticket — and prints the per-step timings.
Target: within 60 s on the project's 2-core machine.

    .venv/bin/python bench/bench_drift.py                 # 100k rows, no speaker keys (worst case:
                                                          # the classifier sees all 100k rows)
    .venv/bin/python bench/bench_drift.py --keys          # with speaker keys (one row per speaker)
    .venv/bin/python bench/bench_drift.py --rows 20000 --method mmd
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=100_000, help="window rows (default 100000)")
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--ref-rows", type=int, default=20_000, help="reference rows (default 20000)")
    ap.add_argument("--parts", type=int, default=100, help="log parts the window is written in")
    ap.add_argument("--keys", action="store_true", help="log pseudonymous speaker keys")
    ap.add_argument("--method", choices=["model", "mmd"], default="model")
    ap.add_argument(
        "--p-phone", type=float, default=0.9, help="phone share in the window (reference: 0.1)"
    )
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    from speakerops.core.keys import MASTER_KEY_ENV, new_key_text, open_keyring
    from speakerops.drift.log import append_production_log
    from speakerops.drift.simulated_traffic import synthetic_population
    from speakerops.registry.reference import save_reference

    tmp = Path(tempfile.mkdtemp(prefix="bench-drift-"))
    os.environ.setdefault(MASTER_KEY_ENV, new_key_text())  # a throwaway store's master key
    keyring = open_keyring(tmp / "registry")
    try:
        t0 = time.perf_counter()
        emb, meta = synthetic_population(
            args.ref_rows, n_speakers=args.ref_rows // 5, p_phone=0.1, seed=1000, dim=args.dim
        )
        scores = pd.DataFrame({"set": ["eval"] * 2, "label": [1, 0], "score": [0.7, 0.1]})
        save_reference(
            tmp / "reference", emb, meta, scores, keyring=keyring, model_name="speaker-encoder",
            model_version="1",
        )  # fmt: skip
        emb, meta = synthetic_population(
            args.rows, n_speakers=args.rows // 5, p_phone=args.p_phone, seed=1, dim=args.dim
        )
        key = b"bench-pseudonym-key-0123456789"
        for i, idx in enumerate(np.array_split(np.arange(args.rows), args.parts)):
            m = meta.iloc[idx]
            append_production_log(
                tmp / "log", emb[idx], keyring=keyring, utt_ids=[f"req-{j}" for j in idx], model_name="speaker-encoder",
                model_version="1", durations_s=m["duration_s"], sample_rates=m["sample_rate"], snr_db=m["snr_db"],
                channels=m["channel"], speaker_ids=m["speaker"] if args.keys else None,
                pseudonym_key=key if args.keys else None, timestamp=f"2025-03-0{1 + i % 7}T12:00:00Z",
            )  # fmt: skip
        setup_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        import evidently  # noqa: F401  (import cost reported apart: the CLI pays it once)
        import evidently.metrics  # noqa: F401

        import_s = time.perf_counter() - t0

        from speakerops.drift.run import main as drift_main

        cfg = {
            "paths": {"registry_dir": str(tmp / "registry")},
            "drift": {
                "log_dir": str(tmp / "log"),
                "output_dir": str(tmp / "out"),
                "run_name": "bench",
                "reference": {"source": "path", "path": str(tmp / "reference")},
                "window": {"start": "2025-03-01", "end": "2025-03-08", "min_rows": 200},
                "embedding": {
                    "method": args.method,
                    **({"threshold": 0.015, "max_rows": 2000} if args.method == "mmd" else {}),
                },
                "tickets": {"dir": str(tmp / "tickets")},
            },
        }
        t0 = time.perf_counter()
        code = drift_main(cfg)
        total_s = time.perf_counter() - t0
        summary = json.loads((tmp / "out" / "bench" / "summary.json").read_text())
        emb_check = next(c for c in summary["result"]["checks"] if c["name"] == "embedding")
        result = {
            "rows": args.rows,
            "dim": args.dim,
            "reference_rows": args.ref_rows,
            "speaker_keys": args.keys,
            "method": args.method,
            "exit_code": code,
            "embedding_rows_decided_on": emb_check["detail"]["rows_after_dedup_and_subsample"],
            "embedding_score": emb_check["score"],
            "setup_s": round(setup_s, 2),
            "evidently_import_s": round(import_s, 2),
            "drift_job_s": round(total_s, 2),
            "steps_s": summary["timings_s"],
            "within_60s": total_s < 60,
        }
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0 if total_s < 60 else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
