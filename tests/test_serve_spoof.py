"""The countermeasure in the verification service (real FastAPI app, a small trained CM of
tests/cm_world.py): verify and identify answer the CM score beside the LLR; an LPC
resynthesis of the claimed speaker's own audio (a spoof the CM scores under its operating
point) is refused by verify, identify and enroll with a 422 naming the check, the score and
the threshold, or answered and flagged with `serve.refuse_spoof=false`; /metrics counts both;
the production log carries each request's CM score; a tampered CM file or one without an
operating point stops the service at start-up."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from speakerops.core.jsonio import sha256_file
from speakerops.data.audio import load_audio
from speakerops.drift.log import read_production_log
from speakerops.serve.app import create_app
from speakerops.serve.tokens import issue_token

from .cm_world import lpc_spoof, train_countermeasure
from .serve_world import MODEL_NAME, SR, build_encoder, librispeech_test_other, make_cfg, wav_bytes

SPEAKER = "carol-5512"


@pytest.fixture(scope="module")
def encoder():
    return build_encoder()


@pytest.fixture(scope="module")
def cm_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cm") / "countermeasure.safetensors"
    train_countermeasure(path)
    return path


@pytest.fixture(scope="module")
def audio(cm_path):
    """Bona fide files of one test-other speaker the CM passes, and an LPC spoof of one of
    them that it scores under the threshold (checked here: the test's precondition)."""
    from speakerops.models.countermeasure import Countermeasure

    cm = Countermeasure.load(cm_path)
    for files in librispeech_test_other().values():
        wavs = {f: load_audio(f, SR)[0] for f in files}
        bona = sorted((f for f, w in wavs.items() if cm.score(w) > cm.threshold + 0.05),
                      key=lambda f: -cm.score(wavs[f]))  # fmt: skip
        spoofs = [lpc_spoof(wavs[f]) for f in files[:4]]
        low = [s for s in spoofs if cm.score(s) < cm.threshold - 0.05]
        if len(bona) >= 3 and low:
            return {"bona": bona[:3], "spoof": low[0], "cm": cm}
    pytest.fail(
        "no test-other speaker with 3 bona fide files above and a spoof below the CM threshold"
    )


def _world(project: Path, encoder, *overrides: str):
    cfg = make_cfg(project, *overrides)
    app = create_app(cfg, encoder=encoder, model_name=MODEL_NAME, model_version="1")
    token = issue_token(cfg.serve.tokens, "acme")[1]
    app.state.tokens.reload()
    return cfg, app, TestClient(app), {"Authorization": f"Bearer {token}"}


def _flac(path: Path):
    return (path.name, path.read_bytes(), "audio/flac")


def _spoof(audio):
    return ("spoof.wav", wav_bytes(audio["spoof"]), "audio/wav")


def _metric(client, endpoint: str, action: str) -> float:
    text = client.get("/metrics").text
    m = re.search(
        rf'speakerops_spoof_flags_total\{{action="{action}",endpoint="{endpoint}"\}} (\S+)', text
    )
    return float(m.group(1)) if m else 0.0


def test_spoof_suspected_audio_is_refused_and_bona_fide_gets_its_cm_score(
    tmp_path, encoder, cm_path, audio
):
    cfg, app, client, h = _world(tmp_path, encoder, f"serve.countermeasure={cm_path}")
    cm, (e1, e2, probe) = audio["cm"], audio["bona"]
    r = client.post(f"/v1/acme/speakers/{SPEAKER}/enroll",
                    files=[("files", _flac(e1)), ("files", _flac(e2))], headers=h)  # fmt: skip
    assert r.status_code == 200, r.text

    ok = client.post("/v1/acme/verify", files={"file": _flac(probe)},
                     data={"speaker_id": SPEAKER}, headers=h).json()  # fmt: skip
    want = cm.score(load_audio(probe, SR)[0])
    assert ok["countermeasure"]["spoof_suspected"] is False
    assert ok["countermeasure"]["score"] == pytest.approx(want, abs=1e-5)
    assert ok["countermeasure"]["threshold"] == cm.threshold and "llr" in ok
    ident = client.post("/v1/acme/identify", files={"file": _flac(probe)}, headers=h).json()
    assert ident["countermeasure"]["score"] == pytest.approx(want, abs=1e-5)

    for endpoint, call in (
        ("verify", lambda: client.post("/v1/acme/verify", files={"file": _spoof(audio)},
                                       data={"speaker_id": SPEAKER}, headers=h)),
        ("identify", lambda: client.post("/v1/acme/identify", files={"file": _spoof(audio)},
                                         headers=h)),
        ("enroll", lambda: client.post("/v1/acme/speakers/mallory/enroll",
                                       files=[("files", _spoof(audio))], headers=h)),
    ):  # fmt: skip
        r = call()
        assert r.status_code == 422, (endpoint, r.text)
        err = r.json()["error"]
        assert err["code"] == "spoof.suspected" and err["check"] == "countermeasure"
        assert err["value"] < err["limit"] == pytest.approx(cm.threshold)
        assert f"{cm.threshold:.3f}" in err["message"] and "spoof.wav" in err["message"]
        assert _metric(client, endpoint, "refused") == 1.0
    # nothing stored for the refused enrollment, nothing logged for any refusal
    r = client.post("/v1/acme/verify", files={"file": _flac(probe)},
                    data={"speaker_id": "mallory"}, headers=h)  # fmt: skip
    assert r.status_code == 404
    log = read_production_log(cfg.serve.production_log, keyring=app.state.service.keyring)
    assert len(log) == 4  # 2 enrollment utterances, the accepted verify, the identify
    assert np.isfinite(log["cm_score"]).all() and (log["cm_score"] >= cm.threshold).all()
    assert np.isclose(log["cm_score"], want, atol=1e-5).sum() == 2
    # each score names the countermeasure file that gave it (the drift check compares like with like)
    assert (log["cm_sha256"] == sha256_file(cm_path)).all()


def test_flag_mode_answers_and_counts_and_no_cm_is_the_old_behaviour(
    tmp_path, encoder, cm_path, audio
):
    cfg, app, client, h = _world(tmp_path / "flag", encoder, f"serve.countermeasure={cm_path}",
                                 "serve.refuse_spoof=false")  # fmt: skip
    e1, e2, _ = audio["bona"]
    client.post(f"/v1/acme/speakers/{SPEAKER}/enroll",
                files=[("files", _flac(e1)), ("files", _flac(e2))], headers=h)  # fmt: skip
    r = client.post("/v1/acme/verify", files={"file": _spoof(audio)},
                    data={"speaker_id": SPEAKER}, headers=h)  # fmt: skip
    assert r.status_code == 200 and r.json()["countermeasure"]["spoof_suspected"] is True
    assert _metric(client, "verify", "flagged") == 1.0 and _metric(client, "verify", "refused") == 0

    cfg, app, client, h = _world(tmp_path / "none", encoder)
    client.post(f"/v1/acme/speakers/{SPEAKER}/enroll",
                files=[("files", _flac(e1)), ("files", _flac(e2))], headers=h)  # fmt: skip
    r = client.post("/v1/acme/verify", files={"file": _spoof(audio)},
                    data={"speaker_id": SPEAKER}, headers=h)  # fmt: skip
    assert r.status_code == 200 and r.json()["countermeasure"] is None
    log = read_production_log(cfg.serve.production_log, keyring=app.state.service.keyring)
    assert len(log) == 3 and log["cm_score"].isna().all() and log["cm_sha256"].isna().all()


def test_a_tampered_countermeasure_or_one_without_operating_point_stops_the_service(
    tmp_path, encoder, cm_path
):
    with pytest.raises(ValueError, match=r"serve.countermeasure=.*does not match"):
        _world(tmp_path / "sha", encoder, f"serve.countermeasure={cm_path}",
               "serve.countermeasure_sha256=" + "0" * 64)  # fmt: skip
    from speakerops.models.countermeasure import Countermeasure

    bare = Countermeasure.load(cm_path)
    bare.extras.pop("operating_point")
    bare.save(tmp_path / "bare.safetensors")
    with pytest.raises(ValueError, match="no operating point.*spoof evaluate"):
        _world(tmp_path / "bare", encoder, f"serve.countermeasure={tmp_path / 'bare.safetensors'}")


def test_verify_audio_returns_the_cm_score_and_never_accepts_a_spoof(encoder, audio):
    from speakerops.core.config import compose
    from speakerops.data.quality import QualitySettings
    from speakerops.eval.scoring import Scorer, verify_audio

    cm, (e1, _, probe) = audio["cm"], audio["bona"]
    scorer, quality = Scorer.from_encoder(encoder), QualitySettings.from_config(compose([]).quality)
    enroll = (load_audio(e1, SR)[0], SR)
    for test, suspected in (((load_audio(probe, SR)[0], SR), False), ((audio["spoof"], SR), True)):
        plain = verify_audio(encoder, scorer, enroll, test, quality, p_target=0.5)
        out = verify_audio(encoder, scorer, enroll, test, quality, p_target=0.5, countermeasure=cm)
        assert "countermeasure" not in plain and out["llr"] == plain["llr"]
        assert out["countermeasure"]["spoof_suspected"] is suspected
        assert out["countermeasure"]["score"] == pytest.approx(cm.score(test[0]), abs=1e-6)
        assert out["accept"] is (plain["accept"] and not suspected)
    # the spoof of the speaker's own voice: accepted by the speaker model alone at this point
    assert plain["accept"] and not out["accept"]


def _pair_in_registry(project: Path, cm_path: Path) -> dict:
    """Speaker version 1 (real MLflow store of `project`) and `cm_path` registered as its pair
    by `spoof register`'s code: what registered_cm.json holds."""
    from speakerops.registry.champion import client_for
    from speakerops.registry.pair import register_countermeasure

    cfg = make_cfg(project)
    client = client_for(cfg)
    (project / "src").mkdir(parents=True)
    client.create_registered_model(MODEL_NAME)
    client.create_model_version(MODEL_NAME, str(project / "src"))
    return register_countermeasure(cfg, cm_path, f"models:/{MODEL_NAME}/1")


def test_the_countermeasure_comes_from_the_registry_hash_checked_or_follows_the_pair(
    tmp_path, encoder, cm_path, audio
):
    """serve.countermeasure=models:/spoof-countermeasure/1, @challenger and `pair` (the served
    speaker version's paired CM) all serve the registered file: the same scores and threshold
    as the local file; a registered version whose bytes no longer match its cm_sha256 tag, or
    `pair` for a speaker version without a countermeasure, stops the service at start-up."""
    from speakerops.registry.champion import client_for

    project = tmp_path / "reg"
    reg = _pair_in_registry(project, cm_path)
    assert reg["model_uri"] == "models:/spoof-countermeasure/1"
    cm, (e1, e2, probe) = audio["cm"], audio["bona"]
    want = cm.score(load_audio(probe, SR)[0])
    checks = {}
    for spec in ("models:/spoof-countermeasure/1", "models:/spoof-countermeasure@challenger", "pair"):  # fmt: skip
        _, app, client, h = _world(project, encoder, f"serve.countermeasure={spec}")
        check = checks[spec] = app.state.service.spoof
        assert check.version == "models:/spoof-countermeasure/1" and check.sha256 == reg["cm_sha256"]  # fmt: skip
        client.post(f"/v1/acme/speakers/{SPEAKER}-{len(spec)}/enroll",
                    files=[("files", _flac(e1)), ("files", _flac(e2))], headers=h)  # fmt: skip
        ok = client.post("/v1/acme/verify", files={"file": _flac(probe)},
                         data={"speaker_id": f"{SPEAKER}-{len(spec)}"}, headers=h).json()  # fmt: skip
        assert ok["countermeasure"]["score"] == pytest.approx(want, abs=1e-5), spec
        assert ok["countermeasure"]["threshold"] == cm.threshold
        r = client.post("/v1/acme/verify", files={"file": _spoof(audio)},
                        data={"speaker_id": f"{SPEAKER}-{len(spec)}"}, headers=h)  # fmt: skip
        assert r.status_code == 422 and r.json()["error"]["code"] == "spoof.suspected", spec

    with pytest.raises(ValueError, match=r"serve.countermeasure=models:/spoof-countermeasure/1: .*does not match"):  # fmt: skip
        _world(project, encoder, "serve.countermeasure=models:/spoof-countermeasure/1",
               "serve.countermeasure_sha256=" + "0" * 64)  # fmt: skip
    client = client_for(make_cfg(project))
    client.set_model_version_tag("spoof-countermeasure", "1", "cm_sha256", "0" * 64)
    with pytest.raises(ValueError, match=r"serve.countermeasure=pair: .*does not match"):
        _world(project, encoder, "serve.countermeasure=pair")
    client.create_model_version(MODEL_NAME, str(project / "src"))  # v2: no countermeasure
    # a reload to v2 (Reloader: SpoofCheck.following): `pair` fails it, a named CM stays as is
    from speakerops.core.paths import tracking_uri

    settings, uri = app.state.service.settings, tracking_uri(project / "registry")
    with pytest.raises(ValueError, match=r"models:/speaker-encoder/2 has no countermeasure"):
        checks["pair"].following(settings, uri, (MODEL_NAME, "2"))
    named = checks["models:/spoof-countermeasure/1"]
    assert named.following(settings, uri, (MODEL_NAME, "2")) is named
    with pytest.raises(ValueError, match=r"models:/speaker-encoder/2 has no countermeasure.*spoof register"):  # fmt: skip
        cfg = make_cfg(project, "serve.countermeasure=pair")
        create_app(cfg, encoder=encoder, model_name=MODEL_NAME, model_version="2")
    with pytest.raises(ValueError, match=r"serve.countermeasure=pair: .*local file"):
        cfg = make_cfg(project, "serve.countermeasure=pair")
        create_app(cfg, encoder=encoder, model_name=MODEL_NAME, model_version="local")


def test_a_fused_countermeasure_is_served_as_one(tmp_path, encoder, cm_path, audio):
    """serve.countermeasure takes a fused CM file (src/models/cm_fusion.py), hash-checked: here
    the CM twice at weights 0.5 + 0.5, so its scores and decisions are the single CM's."""
    from speakerops.core.jsonio import sha256_file
    from speakerops.models.cm_fusion import FusedCountermeasure

    cm = audio["cm"]
    op = {"rule": "eer", "threshold": cm.threshold}
    fused = FusedCountermeasure([cm, cm], [0.5, 0.5], 0.0, [cm_path, cm_path], {"operating_point": op})  # fmt: skip
    path = fused.save(tmp_path / "fused" / "countermeasure_fused.json")
    _, _, client, h = _world(tmp_path / "w", encoder, f"serve.countermeasure={path}",
                             f"serve.countermeasure_sha256={sha256_file(path)}")  # fmt: skip
    e1, e2, probe = audio["bona"]
    r = client.post(f"/v1/acme/speakers/{SPEAKER}/enroll",
                    files=[("files", _flac(e1)), ("files", _flac(e2))], headers=h)  # fmt: skip
    assert r.status_code == 200, r.text
    ok = client.post("/v1/acme/verify", files={"file": _flac(probe)},
                     data={"speaker_id": SPEAKER}, headers=h).json()  # fmt: skip
    assert ok["countermeasure"]["score"] == pytest.approx(cm.score(load_audio(probe, SR)[0]), abs=1e-5)  # fmt: skip
    r = client.post("/v1/acme/verify", files={"file": _spoof(audio)},
                    data={"speaker_id": SPEAKER}, headers=h)  # fmt: skip
    assert r.status_code == 422 and r.json()["error"]["code"] == "spoof.suspected"
    with pytest.raises(ValueError, match="does not match the expected"):
        _world(tmp_path / "bad", encoder, f"serve.countermeasure={path}",
               f"serve.countermeasure_sha256={'0' * 64}")  # fmt: skip
