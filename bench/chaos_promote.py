"""Chaos cases on the release gate: a real `speakerops promote` SIGKILLed at every step of the
promotion (SPEAKEROPS_FAULT_KILL_AT, registry/journal.py), then the next run; promote, rollback
and a drift job's champion-reference load at the same moment (bench/chaos.py runs them).

The world is tests/promote_world.py's: speakers prepared, two LDA-fitted encoders registered as
v1 and v2 under a policy both pass; v1 is made champion first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from chaos_kit import case, outcome, refused

REPO = Path(__file__).resolve().parents[1]
NAME = "speaker-encoder"
BIN = Path(sys.executable).parent


def _world(root: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from tests.promote_world import cli, two_model_world

    params, _ = two_model_world(root, {"evaluate.bootstrap.n": "20"}, n_speakers=24)
    rc, out, err = cli(
        "promote", f"config={params}", f"candidate=models:/{NAME}/1", f"out={root}/v1"
    )
    assert rc == 0, out + err
    return params


def _cli(argv: list[str], **env: str) -> subprocess.CompletedProcess:
    full = dict(os.environ, OMP_NUM_THREADS="1", **env)
    return subprocess.run([str(BIN / "speakerops"), *argv], env=full, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def _state(params: Path) -> dict:
    """The alias, the history, the log (verified) and whether a journal is left."""
    import json

    from speakerops.core.config import compose
    from speakerops.registry import audit, journal
    from speakerops.registry.champion import client_for, current_champion

    cfg = compose(config_file=params)
    client = client_for(cfg)
    champ = current_champion(client, NAME)
    tags = client.get_registered_model(NAME).tags
    return {
        "alias": str(champ.version) if champ else None,
        "history": json.loads(tags.get("champion_history", "[]")),
        "verified": audit.verify_store(cfg, client),
        "records": audit.read_audit_log(audit.audit_log_path(cfg)),
        "journal": journal.journal_path(cfg, NAME).is_file(),
    }


def _consistent(s: dict, alias: str) -> bool:
    """History and audit agree with the alias, the log verifies, no journal is left."""
    changes = [r for r in s["records"] if r.get("champion_after") is not None]
    return (
        s["alias"] == alias
        and s["history"][-1:] == [alias]
        and changes[-1]["champion_after"] == alias
        and s["verified"] == len(s["records"])
        and not s["journal"]
    )


@case("promotion: SIGKILL at every step, then the next promote and a rollback")
def killed_promotions(root: Path, quick: bool) -> dict:
    from speakerops.registry.journal import STEPS

    steps = ("verdict", "artifacts", "history", "audit-append") if quick else STEPS
    return kill_at(_world(root), root, steps)


def kill_at(params: Path, root: Path, steps) -> dict:
    """A real `speakerops promote` of v2 SIGKILLed after each step, then `promote` again and
    `rollback` (each recovering first): every time v2, then v1, agreed by history and audit."""
    from tests.promote_world import cli

    out = outcome()
    for step in steps:
        out["tried"] += 1
        seen = {r["seq"] for r in _state(params)["records"]}
        promote = ["promote", f"config={params}", f"candidate=models:/{NAME}/2"]
        killed = _cli([*promote, f"out={root / step}"], SPEAKEROPS_FAULT_KILL_AT=step)
        mid = _state(params)
        again = cli(*promote, f"out={root}/{step}-again")
        after = _state(params)
        back = cli("rollback", f"config={params}", f"reason=chaos {step}")
        end = _state(params)
        out["lost"] += len(seen - {r["seq"] for r in end["records"]})
        ok = (
            killed.returncode == -signal.SIGKILL
            and mid["alias"] in ("1", "2")
            and again[0] == 0
            and _consistent(after, "2")
            and back[0] == 0
            and _consistent(end, "1")
        )
        if ok:
            out["survived"] += 1
        else:
            out["wrong"] += 1
            out["reasons"][f"WRONG after a kill at {step}: {again[2][-200:]} {back[2][-200:]}"] += 1
    return out


def _drift_loads(params: str, n: int, queue) -> None:
    """A drift job's first step, n times: resolve the champion and load its reference."""
    from speakerops.core.config import compose
    from speakerops.core.keys import keyring_from_cfg
    from speakerops.core.paths import tracking_uri
    from speakerops.drift.reference import load_champion_reference

    cfg = compose(config_file=params)
    store, keys = tracking_uri(cfg.paths.registry_dir), keyring_from_cfg(cfg)
    for _ in range(n):
        try:
            ref, version = load_champion_reference(NAME, tracking_uri=store, keyring=keys)
            queue.put(("ok", version, ref.model_version))
        except Exception as exc:  # noqa: BLE001 - reported to the case
            queue.put(("error", type(exc).__name__, str(exc)[:200]))


@case("promotion: promote + rollback + a drift job's champion load, all at once")
def concurrent_promote_rollback_drift(root: Path, quick: bool) -> dict:
    return concurrent_rounds(_world(root), root, 1 if quick else 4)


def concurrent_rounds(params: Path, root: Path, rounds: int) -> dict:
    """Each round: `promote` v2, `rollback` and a drift job's champion-reference loads, started
    at once; each finishes or is refused with a reason, the loads see v1 or v2 whole, and the
    registry agrees with itself afterwards."""
    import multiprocessing as mp

    from tests.promote_world import cli

    out = outcome()
    ctx = mp.get_context("spawn")
    for round_ in range(rounds):
        queue = ctx.Queue()
        drift = ctx.Process(target=_drift_loads, args=(str(params), 3, queue))
        drift.start()
        procs = [
            subprocess.Popen(
                [str(BIN / "speakerops"), *argv],
                env=dict(os.environ, OMP_NUM_THREADS="1"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for argv in (
                [
                    "promote",
                    f"config={params}",
                    f"candidate=models:/{NAME}/2",
                    f"out={root / f'c{round_}'}",
                ],
                ["rollback", f"config={params}", f"reason=chaos round {round_}"],
            )  # fmt: skip
        ]
        results = [(p.wait(600), p.communicate()[1]) for p in procs]
        drift.join(600)
        loads = [queue.get() for _ in range(3)]
        s = _state(params)
        for rc, err in results:  # each either did its work or was refused with a reason
            out["tried"] += 1
            if rc == 0:
                out["survived"] += 1
            elif rc in (1, 2) and err.strip():
                refused(out, err.strip().splitlines()[-1])
            else:
                out["wrong"] += 1
        for kind, version, loaded in loads:  # a consistent champion, or a named refusal
            out["tried"] += 1
            ok = kind == "ok" and version in ("1", "2") and loaded == version
            out["survived" if ok else "wrong"] += 1
        out["tried"] += 1  # the registry agrees with itself afterwards
        out["survived" if _consistent(s, s["alias"]) else "wrong"] += 1
        if s["alias"] == "2":  # back to v1 for the next round
            cli("rollback", f"config={params}", "reason=chaos reset")
    return out
