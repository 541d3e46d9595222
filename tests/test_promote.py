"""`speakerops promote` / `rollback` end to end on a tiny real world (see promote_world.py):
real synthetic speech, the real prepare / evaluate / register stages, real ECAPA-TDNN
encoders, a real MLflow sqlite store, the CLI called in-process.

The story, in order (module fixture; each test checks one part of it):
 0. v2 with `require_champion: true` and no champion yet -> refused before any scoring
 1. v1 (untrained weights) with the bootstrap policy -> champion; relative gates skipped
 2. v3 = v2's encoder with an over-confident packaged calibration (LLRs × 4), twice -> refused by the
    calibration gates only, identical verdicts
 3. v2 (LDA-trained, genuinely better) -> champion
 4. rollback -> v1 is champion again
 5. v2 on eval data whose female speakers are degraded (the generator's hook) -> refused by
    the bias gates, naming the group
 6. a different pinned trial list -> refused (hash); a bad URI -> exit 2
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from .promote_world import (
    cli,
    lda_encoder,
    make_cfg,
    random_encoder,
    register_model,
    write_corpus,
)

# every test reads the promotion world: real stages evaluate and register three models
pytestmark = pytest.mark.slow

BOOT = """
operating_point: {p_target: 0.5}
require_champion: false
absolute:
  eer: {max: 0.40}
  cal_loss: {max: 0.15}
relative:
  eer: {margin: 0.01}
"""
MAIN = """
operating_point: {p_target: 0.5}
require_champion: true
absolute:
  eer: {max: 0.25}
  cal_loss: {max: 0.15}
  bias.gender.worst_ratio: {max: 1.25}
  bias.gender.garbe: {max: 0.3}
relative:
  eer: {margin: 0.01}
  cllr: {margin: 0.05}
"""
N_SPK, UTTS = 100, 4


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: oversubscribed threads were ~50x slower
    root = tmp_path_factory.mktemp("promote")
    (root / "boot.yaml").write_text(BOOT)
    (root / "main.yaml").write_text(MAIN)
    shutil.copy(root / "boot.yaml", root / "policy.yaml")
    corpus = write_corpus(root / "corpus", N_SPK, UTTS)
    cfg = make_cfg(root, root / "prepared", corpus)
    from speakerops.data.manifest import read_manifest
    from speakerops.data.prepare import prepare

    prepare(cfg.data, progress=False)
    manifest = read_manifest(root / "prepared" / "manifest.csv")
    trained = lda_encoder(manifest)
    reg = {
        "v1": register_model(cfg, random_encoder(), "v1"),
        "v2": register_model(cfg, trained, "v2"),
        "v3": register_model(cfg, trained, "v3", overconfidence=4.0),
    }
    params = root / "params.yaml"
    OmegaConf.save(cfg, params, resolve=True)

    # the same speakers and trial list, the eval split's female speakers degraded (0 dB SNR)
    female_eval = set(manifest[(manifest.split == "eval") & (manifest.gender == "f")].speaker)
    shutil.copytree(corpus, root / "degraded" / "corpus")
    write_corpus(
        root / "degraded" / "corpus",
        N_SPK,
        UTTS,
        degrade={"column": "gender", "value": "f", "snr_db": 0.0},
        only_speakers=female_eval,
    )
    prepare(
        make_cfg(root, root / "degraded" / "prepared", root / "degraded" / "corpus").data,
        progress=False,
    )
    # the clean corpus with another trial list (another seed): another hash
    prepare(
        make_cfg(root, root / "other" / "prepared", corpus, **{"data.trials.seed": 7}).data,
        progress=False,
    )
    yield {"root": root, "cfg": cfg, "params": params, "reg": reg, "manifest": manifest}
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def story(world):
    root, params = world["root"], str(world["params"])
    main, boot = f"register.policy={root / 'main.yaml'}", f"register.policy={root / 'boot.yaml'}"

    def promote(version: int, *extra: str, out: str) -> dict:
        rc, stdout, stderr = cli(
            "promote",
            "--config",
            params,
            "--candidate",
            f"models:/speaker-encoder/{version}",
            "--out",
            str(root / "out" / out),
            *extra,
        )
        verdict_file = root / "out" / out / "verdict.json"
        verdict = json.loads(verdict_file.read_text()) if verdict_file.is_file() else None
        return {
            "rc": rc,
            "stdout": stdout,
            "stderr": stderr,
            "verdict": verdict,
            "dir": root / "out" / out,
            "bytes": verdict_file.read_bytes() if verdict_file.is_file() else b"",
        }

    s = {}
    s["no_champion"] = promote(2, main, out="0-v2-no-champion")
    # the first promotion (under main) committed main.yaml: the bootstrap policy needs an override
    s["v1"] = promote(1, boot, "register.policy_override=bootstrap the first champion", out="1-v1")
    s["v3a"] = promote(3, main, out="2-v3-a")
    s["v3b"] = promote(3, main, out="2-v3-b")
    s["v2"] = promote(2, main, out="3-v2")
    s["rollback"] = cli("rollback", "--config", params, "--reason", "test rollback")
    s["degraded"] = promote(
        2, main, f"data.prepared_dir={root / 'degraded' / 'prepared'}", out="5-v2-degraded"
    )
    s["other_trials"] = promote(
        2, main, f"data.prepared_dir={root / 'other' / 'prepared'}", out="6-v2-other"
    )
    s["bad_uri"] = promote(99, main, out="7-bad")
    return s


def client(world):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{world['root'] / 'registry' / 'mlflow.db'}")


def failed(verdict: dict) -> set[str]:
    return {c["gate"] for c in verdict["checks"] if not c["passed"]}


def test_evaluate_stage_outputs_and_packaged_scoring(world) -> None:
    """The evaluate stage wrote its figures; the registered package carries the AS-norm
    cohort, the calibration and the operating point, and reproduces the stage's LLRs."""
    from speakerops.core.keys import open_keyring
    from speakerops.eval.evaluate import embed_split
    from speakerops.eval.scoring import Scorer, system_scores
    from speakerops.eval.trials import load_trial_set
    from speakerops.registry.package import load_encoder

    root = world["root"]
    ev = root / "artifacts" / "v2" / "eval"
    metrics = json.loads((ev / "metrics.json").read_text())
    for key in (
        "eer",
        "min_dcf_0.01",
        "min_dcf_0.05",
        "act_dcf_0.01",
        "cllr",
        "min_cllr",
        "cal_loss",
        "trials_sha256",
        "calibration_trials_sha256",
        "n_trials",
    ):
        assert key in metrics, key
    assert (
        metrics["eer"]
        < 0.25
        < json.loads((root / "artifacts/v1/eval/metrics.json").read_text())["eer"]
    )
    evaluation = json.loads((ev / "evaluation.json").read_text())
    eer_fig = evaluation["figures"]["eer"]
    assert eer_fig["low"] <= eer_fig["value"] <= eer_fig["high"]
    assert evaluation["bias"]["gender"]["status"] == "ok"
    for png in ("det.png", "calibration.png", "bias.png"):
        assert (ev / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    uri = f"sqlite:///{root / 'registry' / 'mlflow.db'}"
    enc = load_encoder("models:/speaker-encoder/2", tracking_uri=uri)
    scoring = enc.extras["scoring"]
    n_train = world["manifest"].query("split == 'train'").speaker.nunique()
    assert scoring["method"] == "asnorm" and scoring["top_n"] == 20
    assert scoring["cohort_size"] == n_train and "cohort" not in scoring  # encrypted
    assert enc.extras["calibration"]["kind"] == "linear"
    assert enc.extras["operating_point"]["llr_threshold"] == pytest.approx(0.0)  # boot policy P=0.5
    scorer = Scorer.from_encoder(enc, open_keyring(root / "registry"))
    assert scorer.normalization.cohort.shape == (n_train, enc.embedding_dim)
    trials = load_trial_set(root / "prepared", "eval", world["manifest"])
    batch = embed_split(enc, world["manifest"], trials.utterances, "test", False)
    _, llr = system_scores(scorer, batch.as_dict(), trials)
    stage = pd.read_csv(ev / "scores_eval.csv")
    np.testing.assert_allclose(llr, stage["llr"].to_numpy(), atol=1e-6)
    a, b = trials.table.iloc[0][["enroll", "test"]]
    out = scorer.verify(batch.as_dict()[a], batch.as_dict()[b], p_target=0.5)
    assert out["accept"] == (out["llr"] >= out["threshold"] == 0.0)


def test_quality_calibration_switch(world) -> None:
    from speakerops.core.keys import open_keyring
    from speakerops.eval.evaluate import evaluate
    from speakerops.eval.sealed import load_eval_embeddings, pseudonymise_ids

    root = world["root"]
    cfg = OmegaConf.merge(
        world["cfg"],
        {
            "train": {"out_dir": str(root / "artifacts" / "v2" / "train")},
            "evaluate": {
                "out_dir": str(root / "artifacts" / "v2q"),
                "calibration": {"kind": "quality"},
                "scoring": {"method": "cosine"},
                "bootstrap": {"n": 50},
            },
        },
    )
    metrics = evaluate(cfg, progress=False)
    cal = json.loads((root / "artifacts" / "v2q" / "calibration.json").read_text())
    assert cal["kind"] == "quality" and math.isfinite(cal["c"])
    assert metrics["calibration_kind"] == "quality" and metrics["score_normalization"] == "cosine"
    assert 0 <= metrics["cal_loss"] < 0.3
    from speakerops.eval.calibration import QualityCalibration, log_min_duration
    from speakerops.eval.metrics import cllr, min_cllr
    from speakerops.eval.scoring import cosine_scores
    from speakerops.eval.trials import load_trial_set

    out, prepared = root / "artifacts" / "v2q", cfg.data.prepared_dir
    # the calibration is fitted on the calibration split's cosine scores and the log of the
    # shorter side's duration: refitting it from the stage's saved embeddings gives a, b, c
    ring = open_keyring(root / "registry")
    emb = dict(zip(*load_eval_embeddings(out, keyring=ring), strict=True))
    cal_t = load_trial_set(prepared, "calibration").table
    refit = QualityCalibration(p_eff=cal["p_eff"]).fit(
        cosine_scores(emb, cal_t),
        cal_t["label"],
        log_min_duration(cal_t["enroll_duration"], cal_t["duration"]),
    )
    for key in ("a", "b", "c"):
        assert cal[key] == pytest.approx(getattr(refit, key), rel=1e-3, abs=1e-4), key
    # the eval LLRs apply it trial by trial, durations included (the quality term moves them)
    scores = pd.read_csv(out / "scores_eval.csv")
    ev_t = load_trial_set(prepared, "eval").table
    # the trial utterances as keyed pseudonyms, in the trial list's order
    key = ring.pseudonym_key()
    assert scores["enroll"].tolist() == pseudonymise_ids(ev_t[["enroll"]], key)["enroll"].tolist()
    q = log_min_duration(ev_t["enroll_duration"], ev_t["duration"])
    np.testing.assert_allclose(
        scores["llr"], cal["a"] * scores["score"] + cal["b"] + cal["c"] * q, rtol=0, atol=1e-6
    )
    assert np.ptp(cal["c"] * q) > 1e-3
    # and cal_loss is Cllr - minCllr of exactly those LLRs
    llr, y = scores["llr"].to_numpy(), scores["label"].to_numpy()
    assert metrics["cal_loss"] == pytest.approx(cllr(llr, y) - min_cllr(llr, y), abs=1e-6)


def test_refused_before_scoring_without_a_required_champion(story) -> None:
    r = story["no_champion"]
    assert r["rc"] == 1, r["stderr"]
    assert failed(r["verdict"]) == {"champion.present"}
    assert "requires one" in r["stdout"]
    assert r["verdict"]["figures"] is None  # nothing was scored
    assert "neither model was scored" in (r["dir"] / "report.md").read_text()


def test_first_promotion_bootstraps_the_champion(story, world) -> None:
    r = story["v1"]
    assert r["rc"] == 0, r["stdout"] + r["stderr"]
    skipped = [c for c in r["verdict"]["checks"] if c.get("skipped")]
    assert [c["gate"] for c in skipped] == ["eer.vs_champion"]
    assert "alias champion moved to v1" in r["stdout"]


def test_miscalibrated_candidate_is_refused_by_calibration_gates_alone(story) -> None:
    r = story["v3a"]
    assert r["rc"] == 1
    v = r["verdict"]
    assert failed(v) == {"cal_loss.max", "cllr.vs_champion"}
    checks = {c["gate"]: c for c in v["checks"]}
    assert checks["eer.max"]["passed"] and checks["eer.vs_champion"]["passed"]
    cand = v["figures"]["candidate"]
    assert cand["cal_loss"]["value"] > 0.5 and cand["cal_loss"]["low"] > 0.15
    assert cand["act_dcf_0.01"]["value"] > 1.0  # worse than not deciding at all
    same = story["v2"]["verdict"]["figures"]["candidate"]
    assert cand["eer"] == same["eer"] and cand["fmr"] == same["fmr"]  # same scores, same θ=0
    report = (r["dir"] / "report.md").read_text()
    assert "❌ REFUSED" in report and "calibration loss" in report
    assert "cal_loss = " in report  # the reasons, with the figure and its interval


def test_same_promotion_twice_gives_the_same_verdict(story) -> None:
    a, b = story["v3a"], story["v3b"]
    assert a["rc"] == b["rc"] == 1
    assert a["bytes"] == b["bytes"] and len(a["bytes"]) > 1000


def test_better_candidate_becomes_champion_rollback_restores_and_all_is_audited(
    story, world
) -> None:
    from speakerops.core.keys import open_keyring
    from speakerops.registry.audit import read_audit_log, verify_audit_log

    r = story["v2"]
    assert r["rc"] == 0, r["stdout"]
    v = r["verdict"]
    diff = v["figures"]["difference"]["eer"]
    assert diff["high"] < 0  # better than v1 on the paired bootstrap's upper bound
    assert v["champion_after"] == "2"
    rc, stdout, stderr = story["rollback"]
    assert rc == 0, stderr
    assert "from v2 to v1" in stdout
    c = client(world)
    assert str(c.get_registered_model("speaker-encoder").aliases["champion"]) == "1"
    assert json.loads(c.get_registered_model("speaker-encoder").tags["champion_history"]) == ["1"]

    params = str(world["params"])
    rc, _, err = cli("rollback", "--config", params)  # v1 was the first champion
    assert rc == 2 and "no champion before v1" in err
    rc, _, err = cli("rollback", "--config", params, "--to", "3")  # v3 never passed
    assert rc == 2 and "never passed a promotion" in err
    assert str(c.get_registered_model("speaker-encoder").aliases["champion"]) == "1"

    log = world["root"] / "registry" / "audit.jsonl"
    assert verify_audit_log(log, keyring=open_keyring(world["root"] / "registry")) == 9
    recs = read_audit_log(log)
    summary = [(x["action"], x.get("candidate_version"), x["verdict"]) for x in recs]
    assert summary == [
        ("promote", "2", "fail"),
        ("promote", "1", "pass"),
        ("promote", "3", "fail"),
        ("promote", "3", "fail"),
        ("promote", "2", "pass"),
        ("rollback", "1", "rolled back"),
        ("promote", "2", "fail"),
        ("promote", "2", "fail"),
        ("promote", None, "error"),
    ]
    assert recs[4]["champion_before"] == "1" and recs[4]["champion_after"] == "2"
    assert recs[5]["champion_before"] == "2" and recs[5]["reasons"] == ["test rollback"]
    assert all(x["user"] and x["timestamp"].endswith("Z") for x in recs)
    v2_tags = c.get_model_version("speaker-encoder", "2").tags
    audits = sorted(k for k in v2_tags if k.startswith("audit."))
    assert len(audits) == 5  # no-champion, pass, rollback, degraded, other-trials
    assert json.loads(v2_tags[audits[1]])["verdict"] == "pass"
    v3_tags = c.get_model_version("speaker-encoder", "3").tags
    assert v3_tags["promotion.last_verdict"] == "fail"
    assert "cal_loss" in v3_tags["promotion.last_reasons"]
    assert "promotion.promoted_at" not in v3_tags and "promotion.promoted_at" in v2_tags
    # the report and plots went to MLflow on the candidate's run
    run_id = c.get_model_version("speaker-encoder", "2").run_id
    folders = [a.path for a in c.list_artifacts(run_id, "promotion")]
    names = {a.path.rsplit("/", 1)[-1] for f in folders for a in c.list_artifacts(run_id, f)}
    assert {"report.md", "verdict.json", "det.png", "calibration.png", "bias_gender.png"} <= names


def test_group_degraded_data_is_refused_by_the_bias_gate_naming_the_group(story) -> None:
    r = story["degraded"]
    assert r["rc"] == 1
    v = r["verdict"]
    assert {"bias.gender.worst_ratio.max", "bias.gender.garbe.max"} <= failed(v)
    assert v["trials"]["sha256"] == story["v2"]["verdict"]["trials"]["sha256"]  # same pinned list
    reason = next(c["reason"] for c in v["checks"] if c["gate"] == "bias.gender.worst_ratio.max")
    assert "worst group gender='f'" in reason
    rows = {row["group"]: row for row in v["bias"]["candidate"]["gender"]["table"]}
    assert rows["f"]["dcf"] > rows["m"]["dcf"] and rows["f"]["fmr"] > 2 * rows["m"]["fmr"]
    report = (r["dir"] / "report.md").read_text()
    assert "worst group **f**" in report and "| **f** |" in report
    assert (r["dir"] / "bias_gender.png").is_file()


def test_fail_closed_on_another_trial_list_and_exit_2_on_errors(
    story, tmp_path, monkeypatch
) -> None:
    r = story["other_trials"]
    assert r["rc"] == 1
    assert failed(r["verdict"]) == {"trials.candidate", "trials.champion"}
    assert "not the pinned" in r["stdout"]
    bad = story["bad_uri"]
    assert bad["rc"] == 2 and "no such registered model version" in bad["stderr"]
    rc, _, err = cli("promote", "--config", "nope.yaml", "--candidate", "models:/x/1")
    assert rc == 2 and "nope.yaml" in err
    monkeypatch.chdir(tmp_path)  # the default store of this call is ./registry: not the repo's
    rc, _, err = cli("promote", "--candidate", "runs:/abc/model")
    assert rc == 2 and "registered version" in err


def test_report_reads_well(story) -> None:
    r = story["v2"]
    report = (r["dir"] / "report.md").read_text()
    assert report.startswith("# Promotion report: speaker-encoder v2 vs champion v1")
    assert "**✅ PASS**: candidate v2 is now `champion` (replacing v1)" in report
    for heading in ("## Gates", "## Candidate vs champion", "## Per-group figures", "## Plots"):
        assert heading in report
    assert "| gate | value | 95 % interval | threshold | verdict |" in report
    assert "(non-inferiority)" in report and "paired" in report
    for png in ("det.png", "calibration.png", "bias_gender.png", "bias_accent.png"):
        assert f"]({png})" in report
        data = (r["dir"] / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_a_lax_policy_on_the_command_line_is_refused_unless_overridden(world, story) -> None:
    """Today a lax policy given as register.policy=<file> was accepted; the registry's
    committed policy (main.yaml, committed by the story's first promotion) is pinned."""
    from speakerops.core.keys import open_keyring
    from speakerops.registry.audit import read_audit_log, verify_audit_log

    root, params = world["root"], str(world["params"])
    assert story["v1"]["verdict"]["policy"]["pin"]["override"] == "bootstrap the first champion"
    assert story["v2"]["verdict"]["policy"]["pin"] == {
        "committed": story["no_champion"]["verdict"]["policy"]["sha256"]
    }
    lax = root / "lax.yaml"
    lax.write_text("operating_point: {p_target: 0.5}\nabsolute:\n  eer: {max: 0.99}\n")
    rc, out, err = cli(
        "promote", "--config", params, "--candidate", "models:/speaker-encoder/3",
        "--out", str(root / "out" / "9-lax"), f"register.policy={lax}",
    )  # fmt: skip
    assert rc == 2 and "is not the committed policy of speaker-encoder" in err, err
    champion = client(world).get_registered_model("speaker-encoder").aliases.get("champion")
    assert champion != "3"
    rc, out, err = cli("policy", "commit", "--config", params, f"register.policy={lax}",
                       "--reason", "test: lax on purpose")  # fmt: skip
    assert rc == 0 and "committed for speaker-encoder" in out, err
    log = root / "registry" / "audit.jsonl"
    records = read_audit_log(log)
    assert records[-1]["action"] == "policy-commit" and records[-2]["verdict"] == "error"
    assert verify_audit_log(log, keyring=open_keyring(root / "registry")) == len(records)
    tags = client(world).get_registered_model("speaker-encoder").tags
    assert tags["policy.committed_path"] == str(lax)
