"""Fault and abuse suite: every way we know to fool the release gate or lose data, tried for
real, with a printed table.

    .venv/bin/python bench/chaos.py [--quick] [--json out.json]

Each case tries an attack or a fault many times and counts, per attempt, one of:
``refused`` (stopped with a named reason: the reason is printed), ``survived`` (the system did
the right thing without refusing: e.g. a concurrent append that landed) or ``WRONG`` (the
attack got through, or data was silently changed). ``lost`` counts records that were written
and cannot be read back. The suite fails (exit 1) when anything is WRONG or lost.

The cases build real stores in a temporary folder: the keyring and AES-GCM blobs, the keyed
audit chain with its anchored head, the encrypted production log, the metrics on generated
score arrays (hypothesis), concurrent writers in separate processes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

CASES: list[tuple[str, Callable[[Path, bool], dict]]] = []


def case(name: str):
    def wrap(fn):
        CASES.append((name, fn))
        return fn

    return wrap


def _outcome() -> dict:
    return {"tried": 0, "refused": 0, "survived": 0, "wrong": 0, "lost": 0, "reasons": Counter()}


def _refused(out: dict, exc: BaseException) -> None:
    out["refused"] += 1
    out["reasons"][f"{type(exc).__name__}: {str(exc).split(':')[-1].strip()[:60]}"] += 1


def _ring(root: Path, name: str = "keyring.json", master: bytes | None = None):
    from speakerops.core.keys import Keyring

    return Keyring(root / name, master or bytes(range(32)))


@case("encrypted blob: random bit flips")
def bit_flips(root: Path, quick: bool) -> dict:
    from speakerops.core.keys import KeyMaterialError

    ring, out, rng = _ring(root), _outcome(), random.Random(0)
    emb = np.random.default_rng(0).standard_normal(192).astype(np.float32)
    blob = ring.encrypt_array("reference", emb, aad=b"row")
    for _ in range(200 if quick else 2000):
        out["tried"] += 1
        bad = bytearray(blob)
        bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
        try:
            ring.decrypt_array(bytes(bad), aad=b"row")
            out["wrong"] += 1
        except KeyMaterialError as exc:
            _refused(out, exc)
    return out


@case("encrypted blob: wrong key / another row's context")
def wrong_context(root: Path, quick: bool) -> dict:
    from speakerops.core.keys import KeyMaterialError

    ring, out = _ring(root), _outcome()
    blob = ring.encrypt("tenant:a", b"template", aad=b"tenant:a|spk1|v3")
    others = [
        (_ring(root, master=bytes(32)), b"tenant:a|spk1|v3"),
        (ring, b"tenant:b|spk1|v3"),
        (ring, b"tenant:a|spk2|v3"),
        (ring, b"tenant:a|spk1|v4"),
        (_ring(root / "other"), b"tenant:a|spk1|v3"),
    ]
    for r, aad in others:
        out["tried"] += 1
        try:
            r.decrypt(blob, aad=aad)
            out["wrong"] += 1
        except KeyMaterialError as exc:
            _refused(out, exc)
    return out


def _append_many(path: str, n: int, worker: int) -> None:
    from speakerops.core.keys import Keyring
    from speakerops.registry.audit import append_audit

    ring = Keyring(Path(path).with_name("keyring.json"), bytes(range(32)))
    for i in range(n):
        append_audit(path, {"action": "promote", "worker": worker, "i": i}, keyring=ring)


@case("audit log: concurrent appends from 4 processes")
def concurrent_audit(root: Path, quick: bool) -> dict:
    from speakerops.registry.audit import read_audit_log, verify_audit_log

    out, n = _outcome(), 10 if quick else 50
    path = root / "audit.jsonl"
    ring = _ring(root)
    ring.active_key("audit")  # created once, before the writers race
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), n, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    out["tried"] = 4 * n
    got = {(r["worker"], r["i"]) for r in read_audit_log(path)}
    out["lost"] = 4 * n - len(got)
    out["survived"] = len(got)
    if verify_audit_log(path, keyring=ring) != 4 * n:
        out["wrong"] += 1
    return out


@case("audit log: edited, forged (chain recomputed), reordered, truncated")
def tampered_audit(root: Path, quick: bool) -> dict:
    from speakerops.registry import audit

    out, rng = _outcome(), random.Random(1)
    path = root / "audit.jsonl"
    ring = _ring(root)
    head = None
    for i in range(12):
        head = audit.append_audit(
            path, {"action": "promote", "verdict": "pass", "i": i}, keyring=ring
        )
    anchors = {"speaker-encoder": head["head"]}
    lines = path.read_text().splitlines()

    def rechain(recs: list[dict]) -> list[str]:
        prev, text = audit.GENESIS, []
        for rec in recs:
            rec = dict(rec, prev_sha256=prev)
            line = json.dumps(rec, sort_keys=True, default=str)
            prev = audit._line_sha(line)
            text.append(line)
        return text

    attacks = []
    for _ in range(30 if quick else 200):
        kind = rng.choice(["edit", "forge", "reorder", "truncate", "delete"])
        recs = [json.loads(ln) for ln in lines]
        k = rng.randrange(len(recs))
        if kind == "edit":
            new = list(lines)
            new[k] = new[k].replace('"pass"', '"fail"')
        elif kind == "forge":
            recs[k]["verdict"] = "forged"
            new = rechain(recs)
        elif kind == "reorder":
            j = (k + 1 + rng.randrange(len(recs) - 1)) % len(recs)
            recs[k], recs[j] = recs[j], recs[k]
            new = rechain(recs)
        elif kind == "truncate":
            new = lines[: rng.randrange(len(lines))]
        else:
            new = rechain(recs[:k] + recs[k + 1 :])
        attacks.append(new)
    for new in attacks:
        out["tried"] += 1
        path.write_text("".join(f"{ln}\n" for ln in new))
        try:
            audit.verify_audit_log(path, keyring=ring, anchors=anchors)
            out["wrong"] += 1
        except audit.AuditError as exc:
            _refused(out, exc)
    return out


@case("production log: ciphertexts swapped between rows, parts of another store")
def swapped_log_rows(root: Path, quick: bool) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from speakerops.core.keys import KeyMaterialError
    from speakerops.drift.log import append_production_log, read_production_log

    out, rng = _outcome(), np.random.default_rng(2)
    ring = _ring(root)
    n = 20
    written = 0
    for attempt in range(5 if quick else 25):
        log = root / f"log{attempt}"
        path = append_production_log(
            log,
            rng.standard_normal((n, 16)).astype(np.float32),
            keyring=ring,
            utt_ids=[f"req-{attempt}-{i}" for i in range(n)],
            model_name="m",
            model_version="1",
            durations_s=[2.0] * n,
            sample_rates=[16000] * n,
            snr_db=[20.0] * n,
        )
        written += n
        out["lost"] += n - len(read_production_log(log, keyring=ring))
        table = pq.read_table(path)
        blobs = table.column("embedding_enc").to_pylist()
        i, j = rng.choice(n, 2, replace=False)
        blobs[i], blobs[j] = blobs[j], blobs[i]
        col = table.schema.get_field_index("embedding_enc")
        swapped = table.set_column(col, "embedding_enc", pa.array(blobs, pa.binary()))
        pq.write_table(swapped.replace_schema_metadata(table.schema.metadata), path)
        for reader in (ring, _ring(root / "stranger")):
            out["tried"] += 1
            try:
                read_production_log(log, keyring=reader)
                out["wrong"] += 1
            except KeyMaterialError as exc:
                _refused(out, exc)
    return out


@case("metrics: generated score arrays (hypothesis)")
def generated_scores(root: Path, quick: bool) -> dict:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from speakerops.eval import metrics

    out = _outcome()
    finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)

    @settings(
        max_examples=100 if quick else 600,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(st.lists(finite, min_size=1, max_size=60), st.lists(finite, min_size=1, max_size=60))
    def check(tar: list[float], non: list[float]) -> None:
        out["tried"] += 1
        s = np.array(tar + non)
        y = np.r_[np.ones(len(tar), bool), np.zeros(len(non), bool)]
        e = metrics.eer(s, y)
        d = metrics.min_dcf(s, y, 0.01)
        ok = 0.0 <= e <= 0.5 and 0.0 <= d <= 1.0 + 1e-12
        out["survived" if ok else "wrong"] += 1

    check()
    out["tried"] += 1  # NaN scores are refused with the index
    try:
        metrics.eer(np.array([np.nan, 1.0]), np.array([True, False]))
        out["wrong"] += 1
    except ValueError as exc:
        _refused(out, exc)
    out["tried"] += 1  # infinite scores (PAV LLRs of separated trials) are legal and ordered
    e = metrics.eer(np.array([np.inf, 0.0, -np.inf]), np.array([True, True, False]))
    out["survived" if 0.0 <= e <= 0.5 else "wrong"] += 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer attempts per case")
    ap.add_argument("--json", type=Path, help="also write the table here")
    args = ap.parse_args()
    os.environ.setdefault("SPEAKEROPS_DATA_KEY", os.urandom(32).hex())
    rows = []
    for name, fn in CASES:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
            try:
                res = fn(Path(tmp), args.quick)
            except Exception as exc:  # a case that crashes is a finding, not a pass
                res = _outcome()
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
