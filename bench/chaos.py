"""Fault and abuse suite: every way we know to fool the release gate or lose data, tried for
real, with a printed table.

    .venv/bin/python bench/chaos.py [--quick] [--only WORD] [--skip WORD] [--json out.json]

Each case tries an attack or a fault many times and counts, per attempt, one of:
``refused`` (stopped with a named reason: the reason is printed), ``survived`` (the system did
the right thing without refusing: e.g. a concurrent append that landed) or ``WRONG`` (the
attack got through, or data was silently changed). ``lost`` counts records that were written
and cannot be read back. The suite fails (exit 1) when anything is WRONG or lost.

The cases build real stores in a temporary folder (``--only``/``--skip WORD``: the cases whose
name has it): the keyring and AES-GCM blobs, the keyed audit chain with its anchored head, the
encrypted production log and the encoder files (bench/chaos_stores.py); a batch of bad files
through ``prepare`` and the ``embed`` listing, hypothesis-generated audio through the input
checks and the encoder, generated score arrays through the metrics (bench/chaos_inputs.py); a
real ``speakerops promote`` SIGKILLed at every step of the promotion, and promote + rollback +
a drift job's champion load at once, on a real registry (bench/chaos_promote.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import chaos_inputs  # noqa: F401 - registers its cases
import chaos_promote  # noqa: F401
import chaos_stores  # noqa: F401
from chaos_kit import CASES, outcome


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer attempts per case")
    ap.add_argument("--json", type=Path, help="also write the table here")
    ap.add_argument("--only", action="append", help="run the cases whose name contains this")
    ap.add_argument("--skip", action="append", help="leave out the cases whose name contains this")
    args = ap.parse_args()
    os.environ.setdefault("SPEAKEROPS_DATA_KEY", os.urandom(32).hex())
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    rows = []
    order = ("chaos_stores", "chaos_inputs", "chaos_promote")
    for name, fn in sorted(CASES, key=lambda c: order.index(c[1].__module__)):
        if args.only and not any(word in name for word in args.only):
            continue
        if args.skip and any(word in name for word in args.skip):
            continue
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
            try:
                res = fn(Path(tmp), args.quick)
            except Exception as exc:  # a case that crashes is a finding, not a pass
                res = outcome()
                res["wrong"] = 1
                res["reasons"][f"CRASH {type(exc).__name__}: {exc}"[:90]] += 1
        res["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append((name, res))
    w = max(len(n) for n, _ in rows)
    print(f"{'case':<{w}}  {'tried':>6} {'refused':>8} {'survived':>9} {'WRONG':>6} {'lost':>5}  s")
    for name, r in rows:
        print(
            f"{name:<{w}}  {r['tried']:>6} {r['refused']:>8} {r['survived']:>9} "
            f"{r['wrong']:>6} {r['lost']:>5}  {r['seconds']}"
        )
        for reason, count in r["reasons"].most_common(3):
            print(f"{'':<{w}}    refused x{count}: {reason}")
    total = {
        k: sum(r[k] for _, r in rows) for k in ("tried", "refused", "survived", "wrong", "lost")
    }
    print(
        f"{'TOTAL':<{w}}  {total['tried']:>6} {total['refused']:>8} {total['survived']:>9} "
        f"{total['wrong']:>6} {total['lost']:>5}"
    )
    if args.json:
        args.json.write_text(
            json.dumps({n: {**r, "reasons": dict(r["reasons"])} for n, r in rows}, indent=2)
        )
    return 1 if total["wrong"] or total["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
