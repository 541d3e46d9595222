"""The countermeasure: LFCC + LCNN from the zoo's registry, its file, and a tiny training run
through `speakerops train task=countermeasure` (Hydra, Lightning, MLflow, resume)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from speakerops.cli import main
from speakerops.core.config import compose
from speakerops.core.jsonio import sha256_file
from speakerops.core.paths import tracking_uri
from speakerops.data.spoof.prepare import spoof_prepare
from speakerops.models.countermeasure import Countermeasure
from speakerops.models.encoder import SpeakerEncoder
from speakerops.models.encoder_file import IntegrityError
from speakerops.models.features import FeatureConfig
from speakerops.models.zoo import backbones, build_backbone

from .test_spoof_data import spoof_overrides

pytestmark = pytest.mark.filterwarnings("ignore:The '\\w+_dataloader' does not have many workers")

SMALL = ["countermeasure.model.channels=4", "countermeasure.model.embedding_dim=8",
         "countermeasure.loader.batch_size=8", "countermeasure.loader.crop_seconds=1.0",
         "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]  # fmt: skip


def test_lfcc_lcnn_builds_from_the_registry_and_scores(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = compose(SMALL)
    assert "lcnn" in backbones()
    cm = Countermeasure.build(cfg.countermeasure.model, cfg.countermeasure.features)
    assert cm.front.n_features == 60 and cm.sample_rate == 16000
    wav = torch.randn(2, 16000) * 0.1
    feats = cm.front(wav)
    assert feats.shape == (2, 1 + (16000 - 512) // 160, 60) and torch.isfinite(feats).all()
    out = cm(wav)
    assert out.shape == (2,)
    out.sum().backward()
    assert all(p.grad is not None for p in cm.net.parameters())
    short = np.zeros(cm.min_samples - 1, np.float32)
    with pytest.raises(ValueError, match="need >= "):
        cm.score(short)
    path = cm.save(tmp_path / "countermeasure.safetensors")
    back = Countermeasure.load(path)
    x = (torch.randn(24000) * 0.1).numpy()
    assert back.score(x) == pytest.approx(cm.eval().score(x), abs=1e-6)
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with pytest.raises(IntegrityError):
        Countermeasure.load(path)
    with pytest.raises(ValueError, match="LFCC front end gives 60"):
        Countermeasure.build(
            {**cfg.countermeasure.model, "n_mels": 40}, cfg.countermeasure.features
        )


def test_train_task_countermeasure_logs_checkpoints_and_resumes(
    micro_manifest: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    over = [*spoof_overrides(micro_manifest), "spoof.workers=1", *SMALL, "task=countermeasure",
            "trainer.max_epochs=2", "train.out_dir=speaker_out"]  # fmt: skip
    spoof_prepare(compose(over).spoof)
    capsys.readouterr()
    assert main(["train", *over]) == 0
    # one line per epoch for a log file (stderr is not a terminal here): epoch, step, val_eer
    epochs = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in epochs] == ["1/2", "2/2"]
    assert all("val_eer " in ln and "train_loss " in ln for ln in epochs)
    out = tmp_path / "artifacts" / "countermeasure"
    summary = json.loads((out / "train.json").read_text())
    assert summary["task"] == "countermeasure" and summary["epochs"] == 2
    assert 0.0 <= summary["best_val_eer"] <= 1.0
    cm = Countermeasure.load(out / "countermeasure.safetensors")
    assert np.isfinite(
        cm.score_file(next((tmp_path / "data" / "spoof" / "wav" / "A01").glob("*.wav")))
    )
    client = mlflow.MlflowClient(tracking_uri("registry"))
    run = client.get_run(summary["run_id"])
    assert run.data.tags["task"] == "countermeasure"
    assert run.data.params["countermeasure.model.arch"] == "lcnn"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_eer")]
    names = {a.path for a in client.list_artifacts(run.info.run_id, "countermeasure")}
    assert names == {
        "countermeasure/countermeasure.safetensors",
        "countermeasure/countermeasure.safetensors.sha256",
    }
    # one more epoch resumes into the same MLflow run; the speaker model's outputs are untouched
    assert main(["train", *over, "trainer.max_epochs=3"]) == 0
    again = json.loads((out / "train.json").read_text())
    assert again["run_id"] == summary["run_id"] and again["epochs"] == 3
    assert not (tmp_path / "artifacts" / "train").exists()  # nor the speaker model's train.out_dir:
    assert not (tmp_path / "speaker_out").exists()  # an experiment's setting there is left alone

    # `spoof evaluate`: this CM beside a (tiny, untrained) speaker encoder on the unseen attacks
    enc_cfg = compose(["model.channels=8", "model.attention_channels=4"])
    encoder = SpeakerEncoder(build_backbone(enc_cfg.model), FeatureConfig(**enc_cfg.features),
                             OmegaConf.to_container(enc_cfg.model, resolve=True))  # fmt: skip
    encoder.save(tmp_path / "encoder.safetensors")
    argv = ["spoof", "evaluate", f"encoder={tmp_path / 'encoder.safetensors'}",
            f"cm={out / 'countermeasure.safetensors'}", *over, "evaluate.bootstrap.n=20"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((tmp_path / "artifacts" / "spoof_eval" / "spoof_eval.json").read_text())
    assert set(report["cm"]["eer_per_attack"]) == {"A03", "A05", "A06"}  # the unseen attacks only
    # the figures beside the numbers: CM DET per unseen attack, CM score histograms with the
    # threshold, SASV DET of the speaker model alone vs the pair; real PNGs in spoof.eval_dir
    assert set(report["figures"]) == {"cm_det", "cm_scores", "sasv_det"}
    for png in map(Path, report["figures"].values()):
        assert png.resolve().parent == (tmp_path / "artifacts" / "spoof_eval").resolve()
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    for iv in (report["cm"]["eer_unseen"], report["cm"]["min_t_dcf"], report["pair"]["sasv_eer"]):
        assert iv["low"] <= iv["high"] and iv["value"] is not None
    assert (
        report["n_trials"] == {"target": 2, "nontarget": 4, "spoof": 6} and not report["failures"]
    )
    assert (
        set(report["speaker_alone"])
        == set(report["pair"])
        == set(report["pair_vs_alone"])
        == {"sasv_eer", "spf_eer", "sv_eer", "min_a_dcf"}
    )
    # pair − alone on the same trials: the point is the difference of the two points
    for k, d in report["pair_vs_alone"].items():
        assert d["value"] == pytest.approx(report["pair"][k]["value"] - report["speaker_alone"][k]["value"])  # fmt: skip
        assert d["low"] <= d["high"]
    # the CM with its operating point (the policy's rule on the calibration split) beside it:
    # the file `serve.countermeasure` loads, hash-checked against its sidecar
    assert report["cm"]["operating_point"] == {"rule": "eer"}
    served = Countermeasure.load(report["cm"]["file"])
    assert served.threshold == report["cm"]["threshold"]
    assert served.operating_point["cm_calibration_sha256"] == report["hashes"]["cm_calibration"]
    # what it flags at that threshold, item by item: bona fide of calibration and eval, each
    # unseen attack, the target trials the pair loses
    spoof_dir = tmp_path / "data" / "spoof"
    paths = pd.read_csv(spoof_dir / "manifest.csv").set_index("utt_id")["path"]
    theta, got = report["cm"]["threshold"], report["cm"]["flagged"]

    def under(utts) -> dict:
        n = sum(served.score_file(paths[u]) < theta for u in utts)
        return {"flagged": n, "of": len(utts), "rate": n / len(utts)}

    cal, ev = (pd.read_csv(spoof_dir / f"cm_{s}.csv", dtype=str) for s in ("calibration", "eval"))
    assert got["bonafide_calibration"] == under(cal.loc[cal["label"] == "1", "utt_id"])
    assert got["bonafide_eval"] == under(ev.loc[ev["attack"] == "bonafide", "utt_id"])
    for attack in ("A03", "A05", "A06"):
        assert got[attack] == under(ev.loc[ev["attack"] == attack, "utt_id"])
    trials = pd.read_csv(spoof_dir / "sasv_trials_eval.csv", dtype=str)
    assert got["target_trials"] == under(trials.loc[trials["kind"] == "target", "test"])
    # split: deployment: the threshold from the eval speakers' unused bona fide recordings
    policy = tmp_path / "deploy_policy.yaml"
    policy.write_text("absolute:\n  eer: {max: 0.5}\ncountermeasure:\n  operating_point: "
                      "{rule: bonafide_rejection, rate: 0.01, split: deployment}\n")  # fmt: skip
    assert main([*argv, f"register.policy={policy}", "spoof.eval_dir=deploy_eval"]) == 0
    deployed = json.loads((tmp_path / "deploy_eval" / "spoof_eval.json").read_text())
    dep = pd.read_csv(tmp_path / "data" / "spoof" / "cm_deployment.csv")
    lowest = min(served.score_file(paths[u]) for u in dep["utt_id"])  # rate 0.01 of < 100 items
    assert deployed["cm"]["threshold"] == pytest.approx(lowest, abs=1e-5)
    # the threshold is the lowest deployment score: none of the deployment's own audio flagged
    assert deployed["cm"]["flagged"]["bonafide_deployment"] == {"flagged": 0, "of": len(dep), "rate": 0.0}  # fmt: skip
    assert deployed["hashes"]["cm_deployment"] == sha256_file(tmp_path / "data" / "spoof" / "cm_deployment.csv")  # fmt: skip
    assert Countermeasure.load(deployed["cm"]["file"]).operating_point["split"] == "deployment"
    (tmp_path / "data" / "spoof" / "cm_deployment.csv").unlink()
    assert main([*argv, f"register.policy={policy}", "spoof.eval_dir=deploy_eval"]) == 2
    assert "cm_deployment.csv: not found" in capsys.readouterr().err  # what to run, named
    with pytest.raises(ValueError, match="no operating point"):
        _ = Countermeasure.load(out / "countermeasure.safetensors").threshold
