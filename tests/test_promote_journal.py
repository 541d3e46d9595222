"""Promotion is a journaled transaction: a real `speakerops promote` SIGKILLed at every step
(SPEAKEROPS_FAULT_KILL_AT, registry/journal.py) leaves the old or the new champion; the next
promote finishes or rolls back the journal (audited), history and audit agree with the alias,
the audit log verifies and rollback goes to the right version."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO
from .promote_world import cli, two_model_world

BIN = Path(sys.executable).parent
NAME = "speaker-encoder"
# where the kill leaves the journal, and what the next run then does with it
ROLLED_BACK = ("journal-written", "artifacts", "model-tags")
ROLLED_FORWARD = ("alias", "history", "version-tags", "audit-append", "audit-tags", "audit-anchor")
PROMOTE_AGAIN = ("artifacts", "history")  # the next run is `promote`; for the others `rollback`


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("journal")
    params, _ = two_model_world(root, {"evaluate.bootstrap.n": "20"}, n_speakers=24)
    rc, out, err = cli("promote", "--config", str(params), "--candidate", f"models:/{NAME}/1",
                       "--out", str(root / "out" / "v1"))  # fmt: skip
    assert rc == 0, out + err
    return {"root": root, "params": str(params)}


def state(root: Path) -> dict:
    from mlflow.tracking import MlflowClient

    from speakerops.core.keys import open_keyring
    from speakerops.registry.audit import read_audit_log, verify_audit_log

    log = root / "registry" / "audit.jsonl"
    rm = MlflowClient(f"sqlite:///{root / 'registry' / 'mlflow.db'}").get_registered_model(NAME)
    return {
        "alias": str(rm.aliases["champion"]),
        "history": json.loads(rm.tags["champion_history"]),
        "records": read_audit_log(log),
        "verified": verify_audit_log(log, keyring=open_keyring(root / "registry")),
        "journal": (root / "registry" / "locks" / f"{NAME}.promote.journal.json").is_file(),
    }


def test_sigkill_at_every_promotion_step_leaves_old_or_new_and_the_next_run_recovers(
    world: dict,
) -> None:
    from speakerops.registry.journal import STEPS

    root, params = world["root"], world["params"]
    assert set(ROLLED_BACK + ROLLED_FORWARD) < set(STEPS)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    for step in STEPS:
        n_before = len(state(root)["records"])
        promote = ["promote", "--config", params, "--candidate", f"models:/{NAME}/2"]
        killed = subprocess.run(
            ["speakerops", *promote, "--out", str(root / "out" / step)],
            env=dict(env, SPEAKEROPS_FAULT_KILL_AT=step), capture_output=True, text=True,
        )  # fmt: skip
        assert killed.returncode == -signal.SIGKILL, (step, killed.stderr[-3000:])
        after_kill = state(root)  # the log verifies even straight after the kill
        assert after_kill["alias"] in ("1", "2"), step
        assert after_kill["journal"] == (step in ROLLED_BACK + ROLLED_FORWARD), step
        new_alias = "2" if step in ROLLED_FORWARD + ("journal-cleared",) else "1"

        # the next run: `promote` again (twice), else `rollback`; either recovers first
        if step in PROMOTE_AGAIN:
            rc, out, err = cli(*promote, "--out", str(root / "out" / f"{step}-again"))
            assert rc == 0, (step, out, err)
            s = state(root)
            assert s["alias"] == "2" and s["history"] == ["1", "2"], (step, s)
            assert s["records"][-1]["action"] == "promote" and s["records"][-1]["verdict"] == "pass"
            assert s["records"][-1]["champion_after"] == "2"
            new_alias = "2"
        rc, out, err = cli("rollback", "--config", params, "--reason", f"after {step}")
        if new_alias == "2":
            assert rc == 0 and "from v2 to v1" in out, (step, out, err)
        else:  # v1 is (still) the only champion there has been
            assert rc == 2 and "no champion before v1" in err, (step, out, err)
        s = state(root)
        assert not s["journal"] and s["verified"] == len(s["records"]), step
        assert s["alias"] == "1" and s["history"] == ["1"], (step, s)
        changes = [r for r in s["records"] if r.get("champion_after")]
        assert changes[-1]["champion_after"] == "1", (step, changes[-1])

        recovers = [r for r in s["records"][n_before:] if r["action"] == "recover"]
        if step in ROLLED_BACK + ROLLED_FORWARD:
            outcome = "rolled back" if step in ROLLED_BACK else "rolled forward"
            assert [r["verdict"] for r in recovers] == [outcome], (step, recovers)
            assert recovers[0]["champion_after"] == ("2" if step in ROLLED_FORWARD else "1")
            assert "was interrupted" in recovers[0]["reasons"][0]
            # a rolled-forward promotion's own record is in the log exactly once
            own = [r for r in s["records"] if r.get("txn") == recovers[0]["recovers"]]
            assert len(own) == (1 if step in ROLLED_FORWARD else 0), (step, own)
        else:  # killed before the journal (nothing changed) or after it was cleared (all done)
            assert recovers == [], (step, recovers)
            assert after_kill["alias"] == new_alias, step


def test_a_killed_rollback_is_finished_by_the_next_command(world: dict) -> None:
    root, params = world["root"], world["params"]
    rc, out, err = cli("promote", "--config", params, "--candidate", f"models:/{NAME}/2",
                       "--out", str(root / "out" / "rb-setup"))  # fmt: skip
    assert rc == 0, out + err
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    killed = subprocess.run(
        ["speakerops", "rollback", "--config", params, "--reason", "killed midway"],
        env=dict(env, SPEAKEROPS_FAULT_KILL_AT="history"), capture_output=True, text=True,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert state(root)["alias"] == "1" and state(root)["journal"]  # alias moved: committed
    # the next rollback first rolls the killed one forward, then finds nothing before v1
    rc, out, err = cli("rollback", "--config", params)
    assert rc == 2 and "no champion before v1" in err, out + err
    s = state(root)
    assert s["alias"] == "1" and s["history"] == ["1"] and not s["journal"]
    recover, rollback = s["records"][-1], s["records"][-2]
    assert rollback["action"] == "rollback" and rollback["reasons"] == ["killed midway"]
    assert recover["action"] == "recover" and recover["verdict"] == "rolled forward"
    assert recover["champion_after"] == "1" and s["verified"] == len(s["records"])


def test_promote_rollback_and_a_drift_load_at_once(world: dict) -> None:
    """bench/chaos.py's concurrency case on this world: promote, rollback and a drift job's
    champion-reference loads started together; nothing wrong, nothing lost."""
    sys.path.insert(0, str(REPO / "bench"))
    from chaos_promote import concurrent_rounds

    result = concurrent_rounds(Path(world["params"]), world["root"], rounds=1)
    assert result["wrong"] == 0 and result["lost"] == 0, result
    assert result["tried"] == 6 and result["survived"] + result["refused"] == 6, result
