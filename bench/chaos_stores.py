"""Chaos cases on the stores: encrypted blobs, the keyed audit chain, the encrypted production
log, the encoder files (bench/chaos.py runs them)."""

from __future__ import annotations

import json
import multiprocessing as mp
import random
from pathlib import Path

import numpy as np
from chaos_kit import attempts, case, outcome, ring


@case("encrypted blob: random bit flips")
def bit_flips(root: Path, quick: bool) -> dict:
    from speakerops.core.keys import KeyMaterialError

    keys, rng = ring(root), random.Random(0)
    emb = np.random.default_rng(0).standard_normal(192).astype(np.float32)
    blob = keys.encrypt_array("reference", emb, aad=b"row")
    flips = [(rng.randrange(len(blob)), rng.randrange(8)) for _ in range(200 if quick else 2000)]

    def flipped(at: tuple[int, int]) -> None:
        bad = bytearray(blob)
        bad[at[0]] ^= 1 << at[1]
        keys.decrypt_array(bytes(bad), aad=b"row")

    return attempts(outcome(), flips, flipped, KeyMaterialError)


@case("encrypted blob: wrong key / another row's context")
def wrong_context(root: Path, quick: bool) -> dict:
    from speakerops.core.keys import KeyMaterialError

    keys = ring(root)
    blob = keys.encrypt("tenant:a", b"template", aad=b"tenant:a|spk1|v3")
    others = [
        (ring(root, master=bytes(32)), b"tenant:a|spk1|v3"),
        (keys, b"tenant:b|spk1|v3"),
        (keys, b"tenant:a|spk2|v3"),
        (keys, b"tenant:a|spk1|v4"),
        (ring(root / "other"), b"tenant:a|spk1|v3"),
    ]
    return attempts(outcome(), others, lambda o: o[0].decrypt(blob, aad=o[1]), KeyMaterialError)


def _append_many(path: str, n: int, worker: int) -> None:
    from speakerops.registry.audit import append_audit

    keys = ring(Path(path).parent)
    for i in range(n):
        append_audit(path, {"action": "promote", "worker": worker, "i": i}, keyring=keys)


@case("audit log: concurrent appends from 4 processes")
def concurrent_audit(root: Path, quick: bool) -> dict:
    from speakerops.registry.audit import read_audit_log, verify_audit_log

    out, n = outcome(), 10 if quick else 50
    path = root / "audit.jsonl"
    keys = ring(root)
    keys.active_key("audit")  # created once, before the writers race
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
    if verify_audit_log(path, keyring=keys) != 4 * n:
        out["wrong"] += 1
    return out


@case("audit log: edited, forged (chain recomputed), reordered, truncated")
def tampered_audit(root: Path, quick: bool) -> dict:
    from speakerops.registry import audit

    rng = random.Random(1)
    path = root / "audit.jsonl"
    keys = ring(root)
    head = None
    for i in range(12):
        head = audit.append_audit(
            path, {"action": "promote", "verdict": "pass", "i": i}, keyring=keys
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

    def verify(new: list[str]) -> None:
        path.write_text("".join(f"{ln}\n" for ln in new))
        audit.verify_audit_log(path, keyring=keys, anchors=anchors)

    return attempts(outcome(), attacks, verify, audit.AuditError)


@case("production log: ciphertexts swapped between rows, parts of another store")
def swapped_log_rows(root: Path, quick: bool) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from speakerops.core.keys import KeyMaterialError
    from speakerops.drift.log import append_production_log, read_production_log

    out, rng = outcome(), np.random.default_rng(2)
    keys = ring(root)
    n = 20
    for attempt in range(5 if quick else 25):
        log = root / f"log{attempt}"
        path = append_production_log(
            log,
            rng.standard_normal((n, 16)).astype(np.float32),
            keyring=keys,
            utt_ids=[f"req-{attempt}-{i}" for i in range(n)],
            model_name="m",
            model_version="1",
            durations_s=[2.0] * n,
            sample_rates=[16000] * n,
            snr_db=[20.0] * n,
        )
        out["lost"] += n - len(read_production_log(log, keyring=keys))
        table = pq.read_table(path)
        blobs = table.column("embedding_enc").to_pylist()
        i, j = rng.choice(n, 2, replace=False)
        blobs[i], blobs[j] = blobs[j], blobs[i]
        col = table.schema.get_field_index("embedding_enc")
        swapped = table.set_column(col, "embedding_enc", pa.array(blobs, pa.binary()))
        pq.write_table(swapped.replace_schema_metadata(table.schema.metadata), path)
        readers = (keys, ring(root / "stranger"))
        attempts(out, readers, lambda r, _log=log: read_production_log(_log, keyring=r),
                 KeyMaterialError)  # fmt: skip
    return out


@case("model files: bit flip, truncation, zeros block, wrong or rewritten sidecar")
def tampered_model_files(root: Path, quick: bool) -> dict:
    import torch

    from speakerops.core.jsonio import sha256_bytes, sha256_file
    from speakerops.models import encoder_file
    from speakerops.models.encoder import SpeakerEncoder
    from speakerops.models.features import FeatureConfig
    from speakerops.models.zoo import build_backbone

    torch.manual_seed(0)
    spec = {"arch": "ecapa_tdnn", "n_mels": 80, "channels": 16, "embedding_dim": 16,
            "attention_channels": 8, "res2_scale": 4}  # fmt: skip
    good = SpeakerEncoder(build_backbone(spec), FeatureConfig(), spec).save(
        root / "good.safetensors"
    )
    data, expected = good.read_bytes(), sha256_file(good)
    rng = random.Random(3)
    attacks: list[tuple[str, bytes, str | None]] = []
    for _ in range(12 if quick else 200):
        kind = rng.choice(["bit flip", "truncation", "zeros block", "wrong sidecar", "rewritten"])
        bad = bytearray(data)
        if kind == "bit flip":
            bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
        elif kind == "truncation":
            bad = bad[: rng.randrange(len(bad))]
        elif kind == "zeros block":
            at = rng.randrange(len(bad) - 4096)
            bad[at : at + 4096] = bytes(4096)
        if kind == "wrong sidecar":  # the bytes are intact, the sidecar names another digest
            side = f"{rng.getrandbits(256):064x}"
        elif kind == "rewritten":  # damaged, and the sidecar rewritten to match the damage
            bad[rng.randrange(len(bad))] ^= 0x10
            side = None
        else:
            side = expected
        attacks.append((kind, bytes(bad), side))

    def load(attack: tuple[str, bytes, str | None]) -> None:
        kind, bad, side = attack
        path = root / "tampered.safetensors"
        path.write_bytes(bad)
        digest = side or sha256_bytes(bad)
        encoder_file.sidecar(path).write_text(f"{digest}  {path.name}\n")
        # the sidecar is checked; a registered model's loads check the registry's tag too
        SpeakerEncoder.load(path)
        SpeakerEncoder.load(path, expected)

    out = attempts(outcome(), attacks, load, ValueError)
    out["tried"] += 1  # the untouched file still loads (nothing refused for no reason)
    out["survived" if SpeakerEncoder.load(good, expected).embedding_dim == 16 else "wrong"] += 1
    return out
