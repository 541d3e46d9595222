"""Score-level fusion of countermeasures (src/models/cm_fusion.py, src/eval/cm_fusion_fit.py):
the fused score is the weighted sum of the members' logits (rule sum) or the lowest of their
standardised logits (rule any: spoof-suspected when one member is), members are hash-checked
(a tampered one is refused), the fit never sees an eval attack (sum: the calibration split's
seen attacks; any: a split's bona fide items, the deployment's among them), and `spoof
evaluate` / `Countermeasure.load` take the fused file as a countermeasure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from speakerops.cli import main
from speakerops.core.config import compose
from speakerops.core.jsonio import sha256_file
from speakerops.data.audio import load_audio
from speakerops.data.spoof.prepare import spoof_prepare
from speakerops.eval.cm_fusion_fit import fit_weights, robust_scale
from speakerops.eval.spoof_eval import cm_scores
from speakerops.eval.spoof_metrics import cm_eer, cm_threshold
from speakerops.models.cm_fusion import FusedCountermeasure, log_cdf
from speakerops.models.countermeasure import Countermeasure
from speakerops.models.encoder import SpeakerEncoder
from speakerops.models.features import FeatureConfig
from speakerops.models.zoo import build_backbone

from .test_rawnet import TINY_RAW
from .test_spoof_data import spoof_overrides

SMALL_LCNN = ["countermeasure.model.channels=4", "countermeasure.model.embedding_dim=8"]


def _members(folder: Path) -> list[Path]:
    """A tiny LFCC-LCNN and a tiny RawNet2 (seeded, untrained), saved."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, over in enumerate((SMALL_LCNN, TINY_RAW)):
        torch.manual_seed(i)
        cfg = compose(list(over))
        cm = Countermeasure.build(cfg.countermeasure.model, cfg.countermeasure.features).eval()
        paths.append(cm.save(folder / f"cm{i}" / "countermeasure.safetensors"))
    return paths


def test_fused_score_is_the_weighted_sum_and_members_are_hash_checked(tmp_path: Path) -> None:
    paths = _members(tmp_path / "m")
    members = [Countermeasure.load(p) for p in paths]
    fused = FusedCountermeasure(members, [0.7, -1.3], 0.25, paths,
                                {"operating_point": {"rule": "eer", "threshold": 0.1}})  # fmt: skip
    out = fused.save(tmp_path / "fused" / "countermeasure_fused.json")
    loaded = Countermeasure.load(out)  # dispatches on the .json file
    assert isinstance(loaded, FusedCountermeasure) and loaded.threshold == 0.1
    wav = np.random.default_rng(0).normal(0, 0.05, 16000).astype(np.float32)
    s = [m.score(wav) for m in members]
    assert s[0] != s[1]
    assert loaded.score(wav) == pytest.approx(0.25 + 0.7 * s[0] - 1.3 * s[1], rel=1e-6)
    assert loaded.assess(wav)["spoof_suspected"] == (loaded.score(wav) < 0.1)
    assert loaded.min_samples == max(m.min_samples for m in members)
    with pytest.raises(ValueError, match="need >="):
        loaded.score(wav[:10])
    # the serving path: the fused file's own sha256 given, as serve.countermeasure_sha256
    assert Countermeasure.load(out, sha256_file(out)).weights == [0.7, -1.3]
    with pytest.raises(ValueError, match="does not match the expected"):
        Countermeasure.load(out, "0" * 64)

    # a tampered member (same name, other bytes, even with its own sidecar rewritten) is refused
    member = out.parent / "member1.safetensors"
    other = Countermeasure.load(paths[0])
    other.save(member)  # a valid countermeasure file, not the one the fused file lists
    with pytest.raises(ValueError, match=r"members\[1\] member1.safetensors does not match"):
        Countermeasure.load(out)
    # and a fused file whose weights were edited no longer matches its sidecar
    fused.save(out)
    body = json.loads(out.read_text())
    body["weights"] = [5.0, 5.0]
    out.write_text(json.dumps(body))
    with pytest.raises(ValueError, match="does not match the expected"):
        Countermeasure.load(out)
    body["members"][0]["file"] = "../cm0/countermeasure.safetensors"
    out.write_text(json.dumps(body))
    with pytest.raises(ValueError, match="bare file name"):
        FusedCountermeasure.load(out, sha256_file(out))


@pytest.fixture
def tiny_spoof(micro_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    over = [*spoof_overrides(micro_manifest), "spoof.workers=1"]
    spoof_prepare(compose(over).spoof)
    # the members here are untrained: no check of their EER on the seen attacks (its own test)
    return [*over, "spoof.fuse.max_member_eer=null"]


def test_spoof_fuse_fits_on_seen_attacks_only_and_evaluate_takes_it(
    tiny_spoof: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = _members(tmp_path / "m")
    fuse = ["spoof", "fuse", f"members={paths[0]},{paths[1]}", *tiny_spoof]
    assert main(fuse) == 0
    out = tmp_path / "artifacts" / "cm_fused" / "countermeasure_fused.json"
    fused = Countermeasure.load(out)
    fit = fused.extras["fit"]
    cal = pd.read_csv("data/spoof/cm_calibration.csv", dtype={"utt_id": str, "attack": str})
    ev = pd.read_csv("data/spoof/cm_eval.csv", dtype={"utt_id": str, "attack": str})
    unseen = set(ev["attack"]) - {"bonafide"}
    assert fit["split"] == "calibration" and unseen and not set(fit["attacks"]) & unseen
    assert fit["n_bonafide"] + fit["n_spoof"] == len(cal)

    # the weights are exactly the fit on the calibration items, and not that with eval items
    manifest = pd.read_csv("data/spoof/manifest.csv", dtype={"utt_id": str}).set_index("utt_id")
    members = [Countermeasure.load(p) for p in paths]

    def scores(rows: pd.DataFrame) -> np.ndarray:
        per = [cm_scores(m, manifest.loc[rows["utt_id"], "path"].to_dict())[0] for m in members]
        return np.array([[s[u] for s in per] for u in rows["utt_id"]])

    w, b = fit_weights(scores(cal), cal["label"].to_numpy(), 1.0)
    assert fused.weights == pytest.approx(w) and fused.bias == pytest.approx(b)
    both = pd.concat([cal, ev])
    w_leak, _ = fit_weights(scores(both), both["label"].to_numpy(), 1.0)
    assert not np.allclose(w_leak, fused.weights, rtol=1e-3)
    wav = load_audio(manifest.loc[ev["utt_id"].iloc[0], "path"], 16000)[0]
    assert fused.score(wav) == pytest.approx(b + float(np.dot(w, [m.score(wav) for m in members])))

    # `spoof evaluate` takes the fused file unchanged and writes it with its threshold
    enc_cfg = compose(["model.channels=8", "model.attention_channels=4"])
    from omegaconf import OmegaConf

    encoder = SpeakerEncoder(build_backbone(enc_cfg.model), FeatureConfig(**enc_cfg.features),
                             OmegaConf.to_container(enc_cfg.model, resolve=True))  # fmt: skip
    encoder.save(tmp_path / "encoder.safetensors")
    argv = ["spoof", "evaluate", f"encoder={tmp_path / 'encoder.safetensors'}", f"cm={out}",
            *tiny_spoof, "evaluate.bootstrap.n=20"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((tmp_path / "artifacts" / "spoof_eval" / "spoof_eval.json").read_text())
    assert set(report["cm"]["eer_per_attack"]) == unseen
    served = Countermeasure.load(report["cm"]["file"])
    assert isinstance(served, FusedCountermeasure)
    assert served.threshold == report["cm"]["threshold"] and served.weights == fused.weights

    # a calibration list holding an eval attack is refused (pinned hash rewritten to match)
    leak = pd.concat([cal, ev[ev["attack"].isin(unseen)].head(1)])
    leak.to_csv("data/spoof/cm_calibration.csv", index=False)
    side = Path("data/spoof/cm_calibration.csv.sha256")
    side.write_text(f"{sha256_file('data/spoof/cm_calibration.csv')}  cm_calibration.csv\n")
    assert main(fuse) != 0
    assert "holds eval attacks" in capsys.readouterr().err


def test_rule_any_flags_when_one_member_is_under_its_own_threshold(tmp_path: Path) -> None:
    paths = _members(tmp_path / "m")
    members = [Countermeasure.load(p) for p in paths]
    rng = np.random.default_rng(1)
    wavs = [rng.normal(0, 0.05, 16000).astype(np.float32) for _ in range(6)]
    s = np.array([[m.score(w) for m in members] for w in wavs])
    med, low = np.median(s, axis=0), s.min(axis=0) - 1.0  # a member at `low` never flags
    w = [2.0, 0.5]
    for loc in ([med[0], low[1]], [low[0], med[1]], [med[0], med[1]]):
        fused = FusedCountermeasure(members, w, 0.0, paths,
                                    {"operating_point": {"rule": "eer", "threshold": 0.0}},
                                    "any", [float(v) for v in loc])  # fmt: skip
        out = fused.save(tmp_path / "any" / "countermeasure_fused.json")
        assert json.loads(out.read_text())["rule"] == "any"
        loaded = Countermeasure.load(out)
        assert loaded.rule == "any" and loaded.loc == pytest.approx(loc)
        flagged = []
        for wav, (a, b) in zip(wavs, s, strict=True):
            z = min(w[0] * (a - loc[0]), w[1] * (b - loc[1]))
            assert loaded.score(wav) == pytest.approx(z, rel=1e-6, abs=1e-9)
            # flagged exactly when a member is under its own threshold l_i + t / w_i (t = 0)
            assert loaded.assess(wav)["spoof_suspected"] == bool(a < loc[0] or b < loc[1])
            flagged.append(loaded.assess(wav)["spoof_suspected"])
        # one member at its median flags the half under it; both flag their union
        under = [s[:, i] < loc[i] for i in range(2)]
        assert flagged == list(under[0] | under[1]) and sum(flagged) >= 3
    # a file of the old format (no rule) is a weighted sum; a bad rule or loc is refused
    body = json.loads(out.read_text())
    old = {k: v for k, v in body.items() if k not in ("rule", "loc")}
    out.write_text(json.dumps(old))
    assert FusedCountermeasure.load(out, sha256_file(out)).rule == "sum"
    for bad, match in (({**body, "rule": "max"}, "rule 'max'"),
                       ({**body, "loc": [0.0]}, "one location per member"),
                       ({**body, "loc": ["x", 1.0]}, "loc must be a list of finite"),
                       ({**body, "weights": [1.0, -1.0]}, "positive weights")):  # fmt: skip
        out.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=match):
            FusedCountermeasure.load(out, sha256_file(out))


def test_log_cdf_is_the_empirical_cdf_with_continuous_tails() -> None:
    ref = [-1.0, 0.0, 0.0, 2.0]  # positions 1/8, 3/8, 5/8, 7/8; the tie at 0 takes their mean
    u, p = np.array([-1.0, 0.0, 2.0]), np.array([1 / 8, 4 / 8, 7 / 8])
    inside = np.array([-1.0, -0.5, 0.0, 1.0, 2.0])
    assert log_cdf(inside, ref, 0.5) == pytest.approx(np.log(np.interp(inside, u, p)))
    # beyond the scores seen: exponential tails of the given scale, continuous at the ends
    assert log_cdf(np.array([-3.0]), ref, 0.5)[0] == pytest.approx(np.log(1 / 8) - 2 / 0.5)
    assert log_cdf(np.array([3.0]), ref, 0.5)[0] == pytest.approx(np.log(1 - np.exp(-2) / 8))
    grid = np.linspace(-6.0, 6.0, 2001)
    v = log_cdf(grid, ref, 0.5)
    assert np.all(np.diff(v) > 0) and np.all(v < 0)  # strictly increasing, a log-probability
    assert np.max(np.abs(np.diff(v))) < 0.05  # no jump anywhere, the ends included


def test_cdf_standardise_splits_the_rejection_budget_between_members(tmp_path: Path) -> None:
    """The failure seen on the real split: one member with a long low tail of bona fide scores.
    In MAD units the union's 10 % rejection goes wholly to it; in CDF units each member takes
    about its share (two independent members: 1 - (1 - q)^2 = 0.10, q = 5.1 % each)."""
    paths = _members(tmp_path / "m")
    members = [Countermeasure.load(p) for p in paths]
    rng = np.random.default_rng(3)
    a = rng.normal(0.0, 1.0, 400)
    a[:80] = rng.uniform(-30.0, -10.0, 80)  # member 0: 20 % of bona fide far down
    x = np.stack([a, rng.normal(0.0, 1.0, 400)], axis=1)
    loc, scale = robust_scale(x)
    w = [1.0 / v for v in scale]
    ref = [sorted(col.tolist()) for col in x.T]
    share = {}
    for std in ("mad", "cdf"):
        fused = FusedCountermeasure(members, w, 0.0, paths, None, "any", loc, std,
                                    ref if std == "cdf" else None)  # fmt: skip
        z = fused.fuse_scores(x)
        t = cm_threshold(z, np.ones(len(z), bool), {"rule": "bonafide_rejection", "rate": 0.1})
        assert np.mean(z < t) == pytest.approx(0.10, abs=0.005)
        # member i flags a test when its own term is under the fused threshold
        terms = (x - loc) * w if std == "mad" else np.stack([log_cdf(x[:, i], ref[i], scale[i]) for i in range(2)], 1)  # fmt: skip
        assert np.array_equal(z < t, (terms < t).any(axis=1))
        share[std] = (terms < t).mean(axis=0)
    assert share["mad"][1] == 0.0 and share["mad"][0] == pytest.approx(0.10, abs=0.005)
    assert 0.035 <= share["cdf"].min() and share["cdf"].max() <= 0.07
    # saved and loaded: the same rule, the same scores; bad files refused
    fused = FusedCountermeasure(members, w, 0.0, paths, None, "any", loc, "cdf", ref)
    out = fused.save(tmp_path / "cdf" / "countermeasure_fused.json")
    loaded = Countermeasure.load(out)
    assert loaded.standardise == "cdf" and loaded.ref == ref
    assert loaded.fuse_scores(x) == pytest.approx(fused.fuse_scores(x))
    body = json.loads(out.read_text())
    for bad, match in (({**body, "ref": [ref[0][::-1], ref[1]]}, "sorted bona fide scores"),
                       ({**body, "ref": [ref[0]]}, "sorted bona fide scores"),
                       ({**body, "ref": [[0.0, "x"], ref[1]]}, "ref must be a list of lists"),
                       ({**body, "rule": "sum"}, "cdf only with rule=any"),
                       ({**body, "standardise": "rank"}, "standardise='rank'")):  # fmt: skip
        out.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=match):
            FusedCountermeasure.load(out, sha256_file(out))


def test_robust_scale_is_median_and_mad() -> None:
    x = np.array([[1.0, 5.0], [2.0, 5.0], [4.0, 5.0], [10.0, 5.0], [3.0, 6.0]])
    loc, scale = robust_scale(x)
    assert loc == [3.0, 5.0]
    # column 0: |x - 3| = 2, 1, 1, 7, 0 -> MAD 1; column 1: MAD 0 -> its standard deviation
    assert scale == pytest.approx([1.4826, float(np.std([5, 5, 5, 5, 6]))])
    assert robust_scale(np.ones((3, 1)))[1] == [1.0]
    with pytest.raises(ValueError, match="two or more bona fide"):
        robust_scale(np.ones((1, 2)))


def test_spoof_fuse_any_fits_on_the_deployment_bona_fide(
    tiny_spoof: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = _members(tmp_path / "m")
    fuse = ["spoof", "fuse", f"members={paths[0]},{paths[1]}", *tiny_spoof]
    # sum on a bona-fide-only list: refused, saying what to use
    assert main([*fuse, "spoof.fuse.split=deployment"]) != 0
    assert "spoof.fuse.rule=any" in capsys.readouterr().err
    # the tiny world's deployment list holds one item: too few to standardise, said so
    assert main([*fuse, "spoof.fuse.rule=any", "spoof.fuse.split=deployment"]) != 0
    assert "cm_deployment.csv: 1 bona fide item(s)" in capsys.readouterr().err
    # a longer deployment list: the calibration split's bona fide items (its hash pinned again)
    cal = pd.read_csv("data/spoof/cm_calibration.csv", dtype={"utt_id": str, "attack": str})
    cal[cal["label"].astype(bool)].to_csv("data/spoof/cm_deployment.csv", index=False)
    side = Path("data/spoof/cm_deployment.csv.sha256")
    side.write_text(f"{sha256_file('data/spoof/cm_deployment.csv')}  cm_deployment.csv\n")
    assert main([*fuse, "spoof.fuse.rule=any", "spoof.fuse.split=deployment"]) == 0
    fused = Countermeasure.load(tmp_path / "artifacts" / "cm_fused" / "countermeasure_fused.json")
    fit = fused.extras["fit"]
    dep = pd.read_csv("data/spoof/cm_deployment.csv", dtype={"utt_id": str, "attack": str})
    assert len(dep) >= 2
    assert fit["rule"] == "any" and fit["split"] == "deployment" and fit["attacks"] == []
    assert fit["n_bonafide"] == len(dep) and fit["n_spoof"] == 0
    assert fit["cm_deployment_sha256"] == sha256_file("data/spoof/cm_deployment.csv")
    manifest = pd.read_csv("data/spoof/manifest.csv", dtype={"utt_id": str}).set_index("utt_id")
    members = [Countermeasure.load(p) for p in paths]
    s = np.array([[m.score_file(manifest.loc[u, "path"]) for m in members] for u in dep["utt_id"]])
    med = np.median(s, axis=0)
    assert fused.loc == pytest.approx(med.tolist(), rel=1e-5)
    mad = 1.4826 * np.median(np.abs(s - med), axis=0)
    assert [1 / w for w in fused.weights] == pytest.approx(mad.tolist(), rel=1e-5)
    # standardise=cdf keeps each member's sorted deployment scores; it needs rule any
    assert main([*fuse, "spoof.fuse.rule=any", "spoof.fuse.split=deployment", "spoof.fuse.standardise=cdf"]) == 0  # fmt: skip
    cdf = Countermeasure.load(tmp_path / "artifacts" / "cm_fused" / "countermeasure_fused.json")
    assert cdf.standardise == "cdf" and cdf.extras["fit"]["standardise"] == "cdf"
    assert np.allclose(cdf.ref, np.sort(s, axis=0).T, rtol=1e-5)
    assert main([*fuse, "spoof.fuse.split=calibration", "spoof.fuse.standardise=cdf"]) != 0
    assert "cdf only with spoof.fuse.rule=any" in capsys.readouterr().err
    # null split: the policy's operating point's (the default policy's: calibration)
    assert main([*fuse, "spoof.fuse.rule=any"]) == 0
    fit = Countermeasure.load(tmp_path / "artifacts" / "cm_fused" / "countermeasure_fused.json").extras["fit"]  # fmt: skip
    assert fit["split"] == "calibration" and fit["n_bonafide"] == int(cal["label"].sum())
    assert fit["n_spoof"] == 0 and set(fit["attacks"]) == set(cal["attack"]) - {"bonafide"}
    assert main([*fuse, "spoof.fuse.rule=max"]) != 0
    assert "spoof.fuse.rule" in capsys.readouterr().err


def test_spoof_fuse_refuses_a_member_that_failed_on_the_seen_attacks(
    tiny_spoof: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each member's CM EER on cm_calibration.csv (seen attacks), computed by hand here: above
    spoof.fuse.max_member_eer the fusion is refused naming the member and its EER; under it the
    EERs are recorded in the fit."""
    paths = _members(tmp_path / "m")
    cal = pd.read_csv("data/spoof/cm_calibration.csv", dtype={"utt_id": str, "attack": str})
    manifest = pd.read_csv("data/spoof/manifest.csv", dtype={"utt_id": str}).set_index("utt_id")
    eers = []
    for p in paths:
        member = Countermeasure.load(p)
        s = [member.score_file(manifest.loc[u, "path"]) for u in cal["utt_id"]]
        eers.append(cm_eer(s, cal["label"].to_numpy()))
    worst = int(np.argmax(eers))
    fuse = ["spoof", "fuse", f"members={paths[0]},{paths[1]}", *tiny_spoof]
    limit = (eers[worst] + min(eers)) / 2 if eers[worst] > min(eers) else eers[worst] - 1e-3
    assert main([*fuse, f"spoof.fuse.max_member_eer={limit}"]) != 0
    err = capsys.readouterr().err
    assert f"member {paths[worst]} has CM EER {eers[worst]:.3f}" in err
    assert "cm_calibration.csv" in err and "retrain it" in err
    assert main([*fuse, "spoof.fuse.max_member_eer=1.0"]) == 0
    fit = Countermeasure.load(tmp_path / "artifacts" / "cm_fused" / "countermeasure_fused.json").extras["fit"]  # fmt: skip
    assert fit["member_eer_seen"] == pytest.approx(eers)
    # the shipped default refuses an untrained member (chance on the seen attacks)
    assert compose([]).spoof.fuse.max_member_eer < min(eers)
