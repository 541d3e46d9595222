"""The verification service over its real FastAPI app (TestClient drives the ASGI app in
process: routing, multipart parsing, middleware and exception handlers are the real ones).

Every bad input of the acceptance gets a 4xx naming the problem and stores nothing; tenants
cannot reach each other's speakers; templates are encrypted at rest (the SQLite file and the
PostgreSQL rows are grepped for the embedding bytes and the raw speaker id), survive a master
key rotation, refuse a wrong key and a row moved to another speaker; cross-version comparison
is refused; replays are flagged; traffic reaches the production log and enroll/delete the audit
chain."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient

from speakerops.core.keys import KeyMaterialError, keyring_from_cfg, new_key_text, parse_key
from speakerops.data.audio import load_audio
from speakerops.drift.log import read_production_log
from speakerops.registry.audit import read_audit_log, verify_audit_log
from speakerops.serve.app import create_app
from speakerops.serve.store import TemplateStore
from speakerops.serve.tokens import issue_token

from .serve_world import MODEL_NAME, SR, build_encoder, librispeech_test_other, make_cfg, wav_bytes

SPEAKER = "alice-7731"  # a distinctive raw id to grep for


@pytest.fixture(scope="module")
def encoder():
    return build_encoder()


@pytest.fixture(scope="module")
def speakers():
    return librispeech_test_other()


def _world(
    project: Path,
    encoder,
    speakers,
    *overrides: str,
    version: str = "1",
    tenants: tuple[str, ...] = ("acme",),
) -> SimpleNamespace:
    """A service on `encoder` in `project` (a config of its own), a token per tenant."""
    cfg = make_cfg(project, *overrides)
    app = create_app(cfg, encoder=encoder, model_name=MODEL_NAME, model_version=version)
    tokens = {t: issue_token(cfg.serve.tokens, t)[1] for t in tenants}
    app.state.tokens.reload()
    spk = sorted(speakers)
    return SimpleNamespace(
        cfg=cfg,
        app=app,
        client=TestClient(app),
        tokens=tokens,
        store=app.state.service.store,
        a=speakers[spk[0]],
        b=speakers[spk[1]],
        project=project,
    )


@pytest.fixture
def world(tmp_path, encoder, speakers):
    return _world(
        tmp_path, encoder, speakers, "serve.upload.max_bytes=3000000", tenants=("acme", "beta")
    )


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _file(path: Path) -> tuple[str, bytes, str]:
    return (path.name, path.read_bytes(), "audio/flac")


def _enroll(w, paths, tenant="acme", speaker=SPEAKER, token=None, mode="replace"):
    return w.client.post(
        f"/v1/{tenant}/speakers/{speaker}/enroll",
        files=[("files", _file(p)) for p in paths],
        data={"mode": mode},
        headers=_h(token or w.tokens[tenant]),
    )


def _verify(w, path_or_file, tenant="acme", speaker=SPEAKER, token=None, **data):
    f = _file(path_or_file) if isinstance(path_or_file, Path) else path_or_file
    return w.client.post(
        f"/v1/{tenant}/verify",
        files={"file": f},
        data={"speaker_id": speaker, **data},
        headers=_h(token or w.tokens[tenant]),
    )


def _identify(w, path, tenant="acme", token=None):
    return w.client.post(
        f"/v1/{tenant}/identify", files={"file": _file(path)}, headers=_h(token or w.tokens[tenant])
    )


def test_enroll_verify_identify_delete_roundtrip(world):
    w = world
    r = _enroll(w, w.a[:2])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["template_version"] == 1 and body["utterances"] == 2
    assert all(f["speech_s"] >= 1.0 for f in body["files"])
    assert _enroll(w, w.b[:2], speaker="bob-5520").status_code == 200

    v = _verify(w, w.a[5]).json()
    assert set(v) >= {"raw_score", "normalized_score", "llr", "threshold", "decision", "flags"}
    assert v["model_version"] == "1" and v["model_name"] == MODEL_NAME
    assert v["threshold"] == pytest.approx(np.log(99.0))  # registry/policy.yaml: P_target 0.01
    assert v["decision"] == ("accept" if v["llr"] >= v["threshold"] else "reject")
    other = _verify(w, w.b[5]).json()
    assert v["llr"] > other["llr"]  # the claimed speaker scores above an impostor

    ident = _identify(w, w.a[6]).json()
    assert ident["enrolled"] == 2 and len(ident["candidates"]) == 2
    assert ident["candidates"][0]["llr"] >= ident["candidates"][1]["llr"]
    expect = (
        ident["candidates"][0]["speaker_id"]
        if ident["candidates"][0]["llr"] >= ident["threshold"]
        else "unknown"
    )
    assert ident["speaker_id"] == expect

    # add mode extends the template, replace starts over
    r = _enroll(w, [w.a[3]], mode="add").json()
    assert (r["template_version"], r["utterances"]) == (2, 3)
    r = _enroll(w, [w.a[3], w.a[4]]).json()
    assert (r["template_version"], r["utterances"]) == (3, 2)

    # traffic fed the production log: 2+2+1+2 enroll utterances, 2 verify, 1 identify
    ring = keyring_from_cfg(w.cfg)
    df = read_production_log(w.cfg.drift.log_dir, keyring=ring)
    assert len(df) == 10
    assert set(df["model_version"]) == {"1"}
    assert df["speaker_key"].notna().sum() == 9  # identify has no claimed speaker

    d = w.client.delete(f"/v1/acme/speakers/{SPEAKER}", headers=_h(w.tokens["acme"]))
    assert d.status_code == 200 and d.json()["deleted"] is True
    # erasure: the 5 enrollment and 2 claimed-verify rows of the speaker left the log
    assert d.json()["erased"] == {"templates": 1, "retained_audio": 0, "production_log_rows": 7}
    left = read_production_log(w.cfg.drift.log_dir, keyring=ring)
    assert len(left) == 3 and left["speaker_key"].notna().sum() == 2
    gone = _verify(w, w.a[5])
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "speaker.unknown"
    assert (
        w.client.delete(f"/v1/acme/speakers/{SPEAKER}", headers=_h(w.tokens["acme"])).status_code
        == 404
    )

    # audit: enroll x5 + delete, chained and keyed, who = tenant + token id, no raw id
    log = Path(w.cfg.serve.audit_log)
    assert verify_audit_log(log, keyring=keyring_from_cfg(w.cfg)) == 5
    actions = [r["action"] for r in read_audit_log(log)]
    assert actions == ["serve.enroll"] * 4 + ["serve.delete"]
    assert all(r["tenant"] == "acme" and r["token_id"] for r in read_audit_log(log))
    assert SPEAKER not in log.read_text()


BAD_INPUTS = {
    # case: (build the upload from a real utterance, status, error code, words in the message)
    "empty": (lambda wav: ("e.wav", b"", "audio/wav"), 422, "audio.empty", "empty"),
    "silent": (
        lambda wav: ("s.wav", wav_bytes(np.zeros(3 * SR, np.float32)), "audio/wav"),
        422,
        "audio.silent",
        "silent",
    ),
    "too_short": (
        lambda wav: ("t.wav", wav_bytes(wav[: SR // 2]), "audio/wav"),
        422,
        "quality.speech",
        "min_speech_s",
    ),
    "clipped": (
        lambda wav: ("c.wav", wav_bytes(np.clip(wav * 40, -1, 1)), "audio/wav"),
        422,
        "quality.clipping",
        "clipped",
    ),
    "corrupt": (
        lambda wav: ("x.wav", b"RIFF" + os.urandom(5000), "audio/wav"),
        422,
        "audio.corrupt",
        "not decodable",
    ),
    "wrong_content_type": (
        lambda wav: ("n.txt", b"hello, this is not audio", "text/plain"),
        415,
        "upload.content_type",
        "text/plain",
    ),
    "huge": (
        lambda wav: ("h.wav", wav_bytes(np.tile(wav, 20)[: 100 * SR]), "audio/wav"),
        413,
        "upload.too_large",
        "max_bytes",
    ),
    "low_rate": (
        lambda wav: ("l.wav", wav_bytes(wav[::4][: 4000 * 4], 4000), "audio/wav"),
        422,
        "quality.sample_rate",
        "min_sample_rate",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_naming_the_problem_and_nothing_is_stored(world, case):
    w = world
    make, status, code, words = BAD_INPUTS[case]
    wav, _ = load_audio(w.a[0], SR)
    upload = make(wav)
    r = w.client.post(
        f"/v1/acme/speakers/{SPEAKER}/enroll",
        files=[("files", _file(w.a[1])), ("files", upload)],
        headers=_h(w.tokens["acme"]),
    )
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code
    assert words in err["message"]
    if status != 413:
        assert upload[0] in err["message"]  # names the file
    assert w.store.templates("acme") == []
    assert not Path(w.cfg.drift.log_dir).exists()  # nothing reached the production log either
    # the same input as a verification probe is refused the same way (after a good enrollment)
    assert _enroll(w, w.a[:2]).status_code == 200
    v = _verify(w, upload)
    assert v.status_code == status and v.json()["error"]["code"] == code


def test_refusals_are_counted_and_the_service_reports_health(world):
    w = world
    wav, _ = load_audio(w.a[0], SR)
    short = ("t.wav", wav_bytes(wav[: SR // 2]), "audio/wav")
    r = w.client.post(
        f"/v1/acme/speakers/{SPEAKER}/enroll",
        files=[("files", short)],
        headers=_h(w.tokens["acme"]),
    )
    assert r.status_code == 422
    assert _enroll(w, w.a[:2]).status_code == 200
    assert _verify(w, w.a[4]).status_code == 200
    assert w.client.get("/healthz").json() == {"status": "ok"}
    ready = w.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_version"] == "1"
    text = w.client.get("/metrics").text
    assert 'speakerops_enroll_refusals_total{reason="quality.speech"} 1.0' in text
    assert (
        'speakerops_request_seconds_count{endpoint="/v1/{tenant}/verify",status="200"} 1.0' in text
    )
    assert 'speakerops_templates{model_name="speaker-encoder",model_version="1"} 1.0' in text
    assert 'speakerops_model_info{model_name="speaker-encoder",model_version="1"} 1.0' in text
    assert "speakerops_decisions_total" in text
    paths = w.client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/{tenant}/verify",
        "/v1/{tenant}/identify",
        "/v1/{tenant}/speakers/{speaker_id}/enroll",
    } <= set(paths)


def test_tokens_and_tenants(world):
    w = world
    assert _enroll(w, w.a[:2]).status_code == 200
    # no token, a wrong token: 401; another tenant's token: 403 -- never an empty result
    no = w.client.post(
        "/v1/acme/verify", files={"file": _file(w.a[4])}, data={"speaker_id": SPEAKER}
    )
    assert no.status_code == 401 and no.json()["error"]["code"] == "auth.missing"
    bad = _verify(w, w.a[4], token="not-a-token")
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "auth.invalid"
    cross = _verify(w, w.a[4], token=w.tokens["beta"])
    assert cross.status_code == 403 and "another tenant" in cross.json()["error"]["message"]
    assert _identify(w, w.a[4], token=w.tokens["beta"]).status_code == 403
    assert (
        w.client.delete(f"/v1/acme/speakers/{SPEAKER}", headers=_h(w.tokens["beta"])).status_code
        == 403
    )
    # beta under its own tenant cannot see, match or delete acme's speaker
    v = _verify(w, w.a[4], tenant="beta")
    assert v.status_code == 404 and v.json()["error"]["code"] == "speaker.unknown"
    ident = _identify(w, w.a[4], tenant="beta").json()
    assert ident["enrolled"] == 0 and ident["speaker_id"] == "unknown"
    assert (
        w.client.delete(f"/v1/beta/speakers/{SPEAKER}", headers=_h(w.tokens["beta"])).status_code
        == 404
    )
    assert len(w.store.templates("acme")) == 1
    assert _verify(w, w.a[4]).status_code == 200


def test_unknown_speaker_and_laxer_operating_point_are_refused(world):
    w = world
    r = _verify(w, w.a[4], speaker="nobody-0000")
    assert r.status_code == 404 and "nobody-0000" in r.json()["error"]["message"]
    assert _enroll(w, w.a[:2]).status_code == 200
    lax = _verify(w, w.a[4], p_target="0.5")
    assert lax.status_code == 422 and "stricter" in lax.json()["error"]["message"]
    strict = _verify(w, w.a[4], p_target="0.001")
    assert strict.status_code == 200
    assert strict.json()["threshold"] == pytest.approx(np.log(999.0))


def test_replay_is_flagged_and_refused_when_configured(world, tmp_path, encoder, speakers):
    w = world
    assert _enroll(w, w.a[:2]).status_code == 200
    first = _verify(w, w.a[5]).json()
    assert first["flags"]["replay_suspected"] == []
    again = _verify(w, w.a[5]).json()
    assert "same audio as a recent attempt" in again["flags"]["replay_suspected"]
    enrolled = _verify(w, w.a[0]).json()
    assert "same audio as an enrollment utterance" in enrolled["flags"]["replay_suspected"]
    # re-encoded audio (FLAC -> WAV, same samples): a new hash, the same embedding
    wav, _ = load_audio(w.a[6], SR)
    _verify(w, w.a[6])
    reencoded = _verify(w, ("r.wav", wav_bytes(wav), "audio/wav")).json()
    assert "near-identical embedding to a recent attempt" in reencoded["flags"]["replay_suspected"]

    w2 = _world(tmp_path / "refuse", encoder, speakers, "serve.replay.action=refuse")
    assert _enroll(w2, w.a[:2]).status_code == 200
    r = _verify(w2, w.a[0])
    assert r.status_code == 409 and r.json()["error"]["code"] == "replay"


def test_templates_of_another_model_version_are_not_compared(world, encoder):
    w = world
    assert _enroll(w, w.a[:2]).status_code == 200
    app2 = create_app(w.cfg, encoder=encoder, model_name=MODEL_NAME, model_version="2")
    w2 = SimpleNamespace(**{**vars(w), "app": app2, "client": TestClient(app2)})
    r = _verify(w2, w.a[4])
    assert r.status_code == 409
    msg = r.json()["error"]["message"]
    assert "version 1" in msg and "version 2" in msg
    ident = _identify(w2, w.a[4]).json()
    assert (
        ident["stale_templates"] == 1
        and ident["enrolled"] == 0
        and ident["speaker_id"] == "unknown"
    )
    assert "speakerops_stale_templates 1.0" in w2.client.get("/metrics").text
    add = _enroll(w2, [w.a[3]], mode="add")
    assert add.status_code == 409 and add.json()["error"]["code"] == "template.version"


def _stored_embeddings(store: TemplateStore) -> list[np.ndarray]:
    return [t.embeddings for t in store.templates("acme")]


def _assert_unreadable(blob: bytes, embeddings: list[np.ndarray]) -> None:
    assert SPEAKER.encode() not in blob
    for emb in embeddings:
        for row in emb:
            for dtype in (np.float32, np.float64):
                raw = row.astype(dtype).tobytes()
                assert raw[:16] not in blob and raw[-16:] not in blob


def test_sqlite_store_holds_no_plaintext_embedding_or_speaker_id(world):
    w = world
    assert _enroll(w, w.a[:2]).status_code == 200
    embs = _stored_embeddings(w.store)
    assert embs and embs[0].shape == (2, 32)
    path = Path(w.cfg.serve.store.url.removeprefix("sqlite:///"))
    w.store.dispose()
    blob = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    with sqlite3.connect(path) as db:  # the layout is the Alembic head
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0003",)]
    assert len(blob) > 0
    _assert_unreadable(blob, embs)


def test_postgres_store_holds_no_plaintext_and_serves(world, postgres_db, encoder, speakers):
    w = world
    url = postgres_db.replace("postgresql://", "postgresql+psycopg://", 1)
    pg = _world(w.project / "pg", encoder, speakers, f"serve.store.url={url}")
    assert _enroll(pg, w.a[:2]).status_code == 200
    v = _verify(pg, w.a[4])
    assert v.status_code == 200, v.text
    import psycopg

    with psycopg.connect(postgres_db) as conn:
        rows = conn.execute("SELECT * FROM templates").fetchall()
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0003",)]
    assert len(rows) == 1
    blob = b"".join(
        bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode() for v in rows[0]
    )
    _assert_unreadable(blob, _stored_embeddings(pg.store))


def test_rotation_keeps_templates_usable_and_a_wrong_key_refuses(
    world, encoder, speakers, monkeypatch
):
    w = world
    assert _enroll(w, w.a[:2]).status_code == 200
    before = _verify(w, w.a[4]).json()["llr"]
    new = new_key_text()
    rotated = keyring_from_cfg(w.cfg).rotate_master(parse_key(new), retire_old=True)
    assert rotated >= 2  # at least the pseudonym and the tenant keys
    monkeypatch.setenv("SPEAKEROPS_DATA_KEY", new)
    w2 = _world(w.project, encoder, speakers, tenants=())
    after = _verify(w2, w.a[4], token=w.tokens["acme"])
    assert after.status_code == 200 and after.json()["llr"] == pytest.approx(before)
    monkeypatch.setenv("SPEAKEROPS_DATA_KEY", new_key_text())
    with pytest.raises(KeyMaterialError, match="not wrapped for this master key"):
        _world(w.project, encoder, speakers, tenants=())


def test_a_template_row_moved_to_another_speaker_does_not_decrypt(world):
    w = world
    assert _enroll(w, w.a[:2]).status_code == 200
    assert _enroll(w, w.b[:2], speaker="bob-5520").status_code == 200
    path = w.cfg.serve.store.url.removeprefix("sqlite:///")
    w.store.dispose()
    with sqlite3.connect(path) as db:
        (blob_b,) = db.execute(
            "SELECT embeddings_enc FROM templates ORDER BY id DESC LIMIT 1"
        ).fetchone()
        db.execute("UPDATE templates SET embeddings_enc = ? WHERE id = 1", (blob_b,))
    r = _verify(w, w.a[4])
    assert r.status_code == 500
    assert "does not authenticate" in r.json()["error"]["message"]


def test_an_enrollment_set_that_does_not_match_itself_is_refused(tmp_path, encoder, speakers):
    w = _world(tmp_path, encoder, speakers, "serve.enroll.consistency_min_llr=1000")
    a = w.a
    r = _enroll(w, a[:2])
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "enroll.consistency" and err["check"] == "consistency"
    assert err["limit"] == 1000 and err["value"] < 1000
    assert a[0].name in err["message"] and "consistency_min_llr=1000" in err["message"]
    assert w.store.templates("acme") == []
    # one utterance has nothing to be consistent with
    one = _enroll(w, a[:1])
    assert one.status_code == 200
