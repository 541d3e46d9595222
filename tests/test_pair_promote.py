"""A speaker model and its countermeasure registered as a pair (lineage both ways, aliases)
and promoted together through the real `speakerops spoof register` / `promote` / `rollback`
on a real MLflow store: the first pair becomes champion on both models; a speaker model
without a countermeasure is refused against a champion pair, saying what to run; a candidate
pair whose countermeasure lets the replay attack through is refused naming it, the champion
pair kept; a promotion SIGKILLed between the two alias moves leaves both as they were."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .pair_world import fisher_countermeasure, pair_world, save_cm
from .promote_world import cli, lda_encoder, register_model

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
SPK, CM = "speaker-encoder", "spoof-countermeasure"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import torch

    from speakerops.core.config import compose

    root = tmp_path_factory.mktemp("pair")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        params, _ = pair_world(root)
        cfg = compose([], str(params))
        good = save_cm(
            fisher_countermeasure(cfg), root / "cm" / "good" / "countermeasure.safetensors"
        )
        leaky = save_cm(fisher_countermeasure(cfg, ("A06",)), root / "cm" / "leaky" / "countermeasure.safetensors")  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return {"root": root, "params": str(params), "cfg": cfg, "good": good, "leaky": leaky}


def aliases(root: Path) -> tuple[str | None, str | None]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'registry' / 'mlflow.db'}")
    return tuple(
        (lambda a: str(a["champion"]) if "champion" in a else None)(client.get_registered_model(n).aliases)
        for n in (SPK, CM)
    )  # fmt: skip


def tags(root: Path, name: str, version: str) -> dict:
    from mlflow.tracking import MlflowClient

    return (
        MlflowClient(f"sqlite:///{root / 'registry' / 'mlflow.db'}")
        .get_model_version(name, version)
        .tags
    )


RUNS = iter(range(1000))


def promote(world: dict, version: str, *extra: str) -> tuple[int, dict, str, Path]:
    """`speakerops promote` in process: (exit code, verdict.json, console + report.md, folder)."""
    out = world["root"] / "out" / f"{next(RUNS)}-v{version}"
    rc, stdout, err = cli("promote", "--config", world["params"], "--candidate",
                          f"models:/{SPK}/{version}", "--out", str(out), *extra)  # fmt: skip
    verdict = (
        json.loads((out / "verdict.json").read_text()) if (out / "verdict.json").is_file() else {}
    )
    report = (out / "report.md").read_text() if (out / "report.md").is_file() else ""
    return rc, verdict, stdout + err + report, out


@pytest.mark.realdata  # the replay attack's real impulse responses
def test_a_countermeasure_without_its_threshold_is_not_registered(world: dict) -> None:
    """The training output carries no operating point: registering it is refused, saying to
    run `spoof evaluate`; without cm= the file `spoof evaluate` writes is the one registered."""
    from speakerops.core.config import compose

    root, params = world["root"], world["params"]
    trained = save_cm(fisher_countermeasure(world["cfg"]), root / "cm" / "trained" / "countermeasure.safetensors", threshold=None)  # fmt: skip
    rc, out, err = cli("spoof", "register", "--config", params, f"cm={trained}", f"speaker=models:/{SPK}/1")  # fmt: skip
    assert rc == 2 and f"cm={trained}: the countermeasure carries no operating-point threshold" in err, out + err  # fmt: skip
    assert "run `speakerops spoof evaluate`" in err
    eval_dir = Path(compose([], params).spoof.eval_dir)
    assert not (eval_dir / "countermeasure.safetensors").exists()
    rc, out, err = cli("spoof", "register", "--config", params, f"speaker=models:/{SPK}/1")
    assert rc == 2 and f"cm={eval_dir / 'countermeasure.safetensors'}: no countermeasure file" in err, out + err  # fmt: skip
    assert "pair.countermeasure_version" not in tags(root, SPK, "1")  # nothing was paired


def test_the_pair_is_registered_gated_and_promoted_together(world: dict) -> None:
    root, params = world["root"], world["params"]
    rc, out, err = cli(
        "spoof", "register", "--config", params, f"cm={world['good']}", f"speaker=models:/{SPK}/1"
    )
    assert rc == 0, out + err
    reg = json.loads((root / "artifacts" / "register" / "registered_cm.json").read_text())
    assert reg["model_uri"] == f"models:/{CM}/1" and reg["aliases"] == ["challenger"]
    cm_tags, spk_tags = tags(root, CM, "1"), tags(root, SPK, "1")
    assert (cm_tags["pair.speaker_model"], cm_tags["pair.speaker_version"]) == (
        SPK,
        "1",
    )  # lineage both ways
    assert (spk_tags["pair.countermeasure_model"], spk_tags["pair.countermeasure_version"]) == (
        CM,
        "1",
    )
    from speakerops.core.jsonio import sha256_file

    assert cm_tags["cm_sha256"] == sha256_file(world["good"])
    # a paired version stays paired
    rc, out, err = cli(
        "spoof", "register", "--config", params, f"cm={world['leaky']}", f"speaker=models:/{SPK}/1"
    )
    assert rc == 2 and "already paired with spoof-countermeasure v1" in err, out + err

    # the first pair: absolute gates only; both aliases move
    rc, verdict, text, out_dir = promote(world, "1")
    assert rc == 0, text
    assert aliases(root) == ("1", "1")
    assert verdict["pair"]["candidate"]["version"] == "1" and verdict["pair"]["refused"] == []
    gates = {c["gate"] for c in verdict["checks"]}
    assert {"cm.eer_unseen.max", "pair.sasv_eer.max", "pair.helps"} <= gates
    assert "and spoof-countermeasure v1" in text  # the console line names both aliases
    assert tags(root, CM, "1")["gate"] == "passed"
    records = [
        json.loads(line) for line in (root / "registry" / "audit.jsonl").read_text().splitlines()
    ]
    assert records[-1]["countermeasure"] == {"model_name": CM, "candidate_version": "1",
                                             "champion_before": None, "champion_after": "1"}  # fmt: skip
    # the champion pair's drift reference holds the CM's score of each of its recordings
    import numpy as np

    from speakerops.core.keys import keyring_from_cfg
    from speakerops.core.paths import tracking_uri
    from speakerops.drift.reference import load_champion_reference
    from speakerops.models.countermeasure import Countermeasure

    ref, version = load_champion_reference(SPK, tracking_uri=tracking_uri(root / "registry"),
                                           keyring=keyring_from_cfg(world["cfg"]))  # fmt: skip
    assert version == "1" and reg["reference_cm_scores"] == len(ref) > 0
    scores = ref.metadata["cm_score"].to_numpy(dtype=float)
    assert np.isfinite(scores).mean() > 0.9 and np.nanstd(scores) > 0
    assert ref.info["cm_operating_point"] == Countermeasure.load(world["good"]).operating_point
    assert ref.info["cm_sha256"] == sha256_file(world["good"])  # which CM gave those scores

    # a speaker model without a countermeasure against the champion pair: refused, what to run
    rc, verdict, text, out_dir = promote(world, "2")
    assert rc == 1 and aliases(root) == ("1", "1"), text
    row = next(c for c in verdict["checks"] if c["gate"] == "pair.candidate_countermeasure")
    assert (
        not row["passed"]
        and "speakerops spoof register" in row["reason"]
        and f"models:/{SPK}/2" in row["reason"]
    )
    log = root / "registry" / "audit.jsonl"
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["countermeasure"] == {"model_name": CM, "candidate_version": None,
                                      "champion_before": "1", "champion_after": "1"}  # fmt: skip

    # its countermeasure lets the replay attack (A06, never seen in training) through: refused,
    # the report names the attack, the champion pair stays
    rc, out, err = cli(
        "spoof", "register", "--config", params, f"cm={world['leaky']}", f"speaker=models:/{SPK}/2"
    )
    assert rc == 0, out + err
    rc, verdict, text, out_dir = promote(world, "2")
    assert rc == 1 and aliases(root) == ("1", "1"), text
    assert [c["gate"] for c in verdict["checks"] if not c["passed"]] == [
        "cm.eer_attack[A06].vs_champion"
    ]
    row = next(c for c in verdict["checks"] if c["gate"] == "cm.eer_attack[A06].vs_champion")
    assert row["value"] > 0.3 and "paired difference" in row["reason"]
    assert "cm.eer_attack[A06].vs_champion" in (out_dir / "report.md").read_text()
    pair = json.loads((out_dir / "pair.json").read_text())
    d = pair["difference"]["cm"]["eer_per_attack"]
    assert d["A06"]["low"] > 0.05 and d["A03"]["high"] <= 0.05  # paired intervals, per attack
    assert tags(root, CM, "2")["gate"] == "refused" and tags(root, SPK, "2")["gate"] == "refused"
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["countermeasure"] == {"model_name": CM, "candidate_version": "2",
                                      "champion_before": "1", "champion_after": "1"}  # fmt: skip
    # the same decision from the files: `spoof gate` on the two reports and promote's pair.json
    for side in ("candidate", "champion"):
        (out_dir / f"{side}.json").write_text(json.dumps(pair[side]["report"]))
    gate = ["spoof", "gate", "--config", params, f"candidate={out_dir / 'candidate.json'}",
            f"champion={out_dir / 'champion.json'}", f"spoof.eval_dir={out_dir}"]  # fmt: skip
    assert cli(*gate, f"difference={out_dir / 'pair.json'}")[0] == 1
    again = json.loads((out_dir / "pair_gate.json").read_text())
    assert again["refused"] == ["cm.eer_attack[A06].vs_champion"]
    assert cli(*gate)[0] == 1  # without the paired difference: the relative gates fail closed
    assert "speakerops promote" in (out_dir / "pair_gate.md").read_text()


@pytest.mark.realdata  # the replay attack's real impulse responses
def test_a_crash_between_the_two_alias_moves_leaves_both_as_before(world: dict) -> None:
    root, params, cfg = world["root"], world["params"], world["cfg"]
    if aliases(root) != ("1", "1"):
        pytest.skip("needs the champion pair of the test before")
    import torch

    from speakerops.data.manifest import read_manifest

    torch.set_num_threads(1)
    register_model(
        cfg, lda_encoder(read_manifest(root / "prepared" / "manifest.csv"), seed=2), "v3"
    )
    rc, out, err = cli(
        "spoof", "register", "--config", params, f"cm={world['good']}", f"speaker=models:/{SPK}/3"
    )
    assert rc == 0, out + err
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    argv = ["speakerops", "promote", "--config", params, "--candidate", f"models:/{SPK}/3"]
    # killed right after the countermeasure's alias moved, before the speaker model's
    killed = subprocess.run([*argv, "--out", str(root / "kill-1")], env=dict(env, SPEAKEROPS_FAULT_KILL_AT="model-tags"),
                            capture_output=True, text=True)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert aliases(root) == ("1", "3")  # halfway: what the journal undoes
    rc, verdict, text, out_dir = promote(world, "3", "--dry-run")  # any promote recovers first
    assert aliases(root) == ("1", "1"), text
    records = [
        json.loads(line) for line in (root / "registry" / "audit.jsonl").read_text().splitlines()
    ]
    recover = next(r for r in records[::-1] if r["action"] == "recover")
    assert recover["verdict"] == "rolled back" and f"{CM} stays at v1" in recover["reasons"][0]
    assert rc == 0 and verdict["dry_run"]  # the pair would pass

    # killed right after the speaker model's alias moved (the commit point): rolled forward
    killed = subprocess.run([*argv, "--out", str(root / "kill-2")], env=dict(env, SPEAKEROPS_FAULT_KILL_AT="alias"),
                            capture_output=True, text=True)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    rc, out, err = cli(
        "rollback", "--config", params, "--reason", "pair back"
    )  # recovers, then rolls back
    assert rc == 0, out + err
    assert aliases(root) == ("1", "1")  # forward to v3 + CM v3, then both back to v1 + CM v1
    records = [
        json.loads(line) for line in (root / "registry" / "audit.jsonl").read_text().splitlines()
    ]
    assert [r["verdict"] for r in records[-2:]] == ["rolled forward", "rolled back"]
    assert records[-1]["countermeasure"] == {
        "model_name": CM,
        "champion_before": "3",
        "champion_after": "1",
    }


def test_a_fused_countermeasure_is_registered_with_its_members_and_loads_back(world: dict) -> None:
    """`spoof register` of a fused CM (src/models/cm_fusion.py) logs its members beside it; the
    registered version loads back (hash-checked, as `serve.countermeasure` loads it) fused."""
    import numpy as np
    import torch
    from mlflow.tracking import MlflowClient

    from speakerops.data.manifest import read_manifest
    from speakerops.models.cm_fusion import FusedCountermeasure
    from speakerops.models.countermeasure import Countermeasure
    from speakerops.registry.pair import load_countermeasure

    root, params, cfg = world["root"], world["params"], world["cfg"]
    torch.set_num_threads(1)
    register_model(
        cfg, lda_encoder(read_manifest(root / "prepared" / "manifest.csv"), seed=4), "v4"
    )
    paths = [Path(world["good"]), Path(world["leaky"])]
    members = [Countermeasure.load(p) for p in paths]
    op = {"rule": "fixed", "threshold": 0.5}
    fused = FusedCountermeasure(members, [0.6, 0.4], -0.1, paths, {"operating_point": op})
    out = fused.save(root / "cm" / "fused" / "countermeasure_fused.json")
    rc, stdout, err = cli("spoof", "register", "--config", params, f"cm={out}", f"speaker=models:/{SPK}/4")  # fmt: skip
    assert rc == 0, stdout + err
    version = json.loads((root / "artifacts" / "register" / "registered_cm.json").read_text())["version"]  # fmt: skip
    store = f"sqlite:///{root / 'registry' / 'mlflow.db'}"
    mv, loaded = load_countermeasure(MlflowClient(store), store, CM, version)
    assert mv.tags["cm_file"] == "countermeasure_fused.json"
    assert isinstance(loaded, FusedCountermeasure) and loaded.threshold == 0.5
    assert loaded.member_sha256 == fused.member_sha256 and loaded.weights == [0.6, 0.4]
    wav = np.random.default_rng(1).normal(0, 0.05, 16000).astype(np.float32)
    assert loaded.score(wav) == fused.score(wav)


def test_rollback_to_a_speaker_model_alone_removes_the_countermeasure_alias(tmp_path: Path) -> None:
    """v1 was champion alone, v2 then champion with CM v1: rolling back takes both back, the
    countermeasure's alias removed (no half pair left behind); audited."""
    from speakerops.core.config import compose
    from speakerops.registry.audit import read_audit_log
    from speakerops.registry.champion import client_for, rollback

    cfg = compose(
        [f"paths.registry_dir={tmp_path / 'registry'}", f"paths.artifacts_dir={tmp_path}"]
    )
    client = client_for(cfg)
    (tmp_path / "src").mkdir()
    for name in (SPK, CM):
        client.create_registered_model(name)
    for _ in range(2):  # v1, v2
        client.create_model_version(SPK, str(tmp_path / "src"))
    client.create_model_version(CM, str(tmp_path / "src"), tags={"pair.speaker_model": SPK, "pair.speaker_version": "2"})  # fmt: skip
    client.set_model_version_tag(SPK, "2", "pair.countermeasure_model", CM)
    client.set_model_version_tag(SPK, "2", "pair.countermeasure_version", "1")
    client.set_registered_model_tag(SPK, "champion_history", json.dumps(["1", "2"]))
    client.set_registered_model_alias(SPK, "champion", "2")
    client.set_registered_model_alias(CM, "champion", "1")

    record = rollback(cfg, SPK, reason="back to the speaker model alone")
    assert record["champion_after"] == "1"
    assert record["countermeasure"] == {
        "model_name": CM,
        "champion_before": "1",
        "champion_after": None,
    }
    assert "champion" not in client.get_registered_model(CM).aliases
    assert str(client.get_registered_model(SPK).aliases["champion"]) == "1"
    assert read_audit_log(tmp_path / "registry" / "audit.jsonl")[-1]["action"] == "rollback"
