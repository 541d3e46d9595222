"""The service follows the champion, on a real registry (promote_world: real `evaluate`,
`register` and `promote` on a tiny synthetic corpus; the service enrolls LibriSpeech speakers).

One story, in order: two registered versions, v1 promoted as champion; the service serves
`models:/speaker-encoder@champion` with retention on, a second service instance polls the alias;
enrollments (one made with retention off); v2 is promoted; `POST /admin/reload` (admin token)
swaps the model while requests keep flowing (none dropped), the poller follows by itself;
templates of v1 are refused naming both versions and counted stale in /metrics;
`speakerops templates migrate` re-embeds every retained template with v2 and lists the one
whose speaker must re-enroll; verification works again. Then erasure: DELETE removes the
speaker's template, retained audio and production-log rows, and the drift job still reads
the log. Last, every service record (enroll, reload, migrate, delete) is on the audit chain
with its head anchored: an edited or a removed service line fails `speakerops audit verify`.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from omegaconf import OmegaConf

from speakerops.core.keys import keyring_from_cfg
from speakerops.core.mlflow import client as mlflow_client
from speakerops.core.paths import tracking_uri
from speakerops.drift.log import read_production_log, speaker_pseudonym
from speakerops.drift.run import main as drift_main
from speakerops.registry.audit import read_audit_log
from speakerops.registry.package import load_encoder
from speakerops.serve.app import create_app
from speakerops.serve.engine import log_speaker
from speakerops.serve.intake import intake
from speakerops.serve.settings import ServeSettings
from speakerops.serve.tokens import ADMIN, issue_token

from .promote_world import UNTRAINED_POLICY as POLICY
from .promote_world import cli, make_cfg, random_encoder, register_model, write_corpus
from .serve_world import librispeech_test_other

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


@pytest.fixture(scope="module")
def world(tmp_path_factory, one_torch_thread):
    root = tmp_path_factory.mktemp("champion")
    (root / "policy.yaml").write_text(POLICY)
    corpus = write_corpus(root / "corpus", 20, 4)
    cfg = make_cfg(
        root,
        root / "prepared",
        corpus,
        **{
            "drift.log_dir": root / "production_log",
            "serve.retain_enrollment_audio": "true",
            "serve.enroll.consistency_min_llr": "-1e9",  # untrained models: LLRs say little
            "evaluate.bootstrap.n": 50,
        },
    )
    from speakerops.data.prepare import prepare

    prepare(cfg.data, progress=False)
    for tag, seed in (("v1", 0), ("v2", 1)):
        register_model(cfg, random_encoder(seed=seed), tag)
    params = root / "params.yaml"
    OmegaConf.save(cfg, params, resolve=True)
    return {"root": root, "cfg": cfg, "params": str(params)}


def promote(world, version: int) -> None:
    rc, out, err = cli(
        "promote",
        f"config={world['params']}",
        "--candidate",
        f"models:/speaker-encoder/{version}",
        "--out",
        str(world["root"] / "promote" / str(version)),
    )
    assert rc == 0, out + err


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _files(paths) -> list:
    return [("files", (p.name, p.read_bytes(), "audio/flac")) for p in paths]


def _verify(c: TestClient, token: str, speaker: str, path: Path):
    return c.post(
        "/v1/acme/verify",
        files={"file": (path.name, path.read_bytes(), "audio/flac")},
        data={"speaker_id": speaker},
        headers=_h(token),
    )


def _wait(cond, what: str) -> None:
    for _ in range(600):  # polls 50 ms apart
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_templates_follow_the_champion_erasure_and_audit(world):
    cfg, root = world["cfg"], world["root"]
    promote(world, 1)
    spk = librispeech_test_other()
    names = sorted(spk)
    alice, bob, carol = names[0], names[1], names[2]
    tokens = {t: issue_token(cfg.serve.tokens, t)[1] for t in ("acme", ADMIN)}

    app = create_app(cfg)
    # a second instance polls the alias; it keeps no enrollment audio
    poller = create_app(
        OmegaConf.merge(
            cfg, {"serve": {"retain_enrollment_audio": False, "reload": {"poll_s": 0.2}}}
        )
    )
    c = TestClient(app)
    # carol enrolls where retention is off: nothing to re-embed her from later
    assert TestClient(poller).post(
        f"/v1/acme/speakers/{carol}/enroll", files=_files(spk[carol][:2]), headers=_h(tokens["acme"])
    ).status_code == 200  # fmt: skip
    for s in (alice, bob):
        r = c.post(
            f"/v1/acme/speakers/{s}/enroll", files=_files(spk[s][:2]), headers=_h(tokens["acme"])
        )
        assert r.status_code == 200 and r.json()["model_version"] == "1", r.text
    assert _verify(c, tokens["acme"], alice, spk[alice][5]).json()["model_version"] == "1"
    # the retained uploads are encrypted: no 64-byte run of a FLAC file is in the store file
    db = Path(cfg.serve.store.url.removeprefix("sqlite:///")).read_bytes()
    raw = spk[alice][0].read_bytes()
    assert all(raw[i : i + 64] not in db for i in range(0, len(raw) - 64, len(raw) // 16))

    with TestClient(poller) as pc:  # its lifespan runs the poll thread
        statuses: list[int] = []
        stop = threading.Event()

        def traffic() -> None:  # requests in flight while the model is swapped
            while not stop.is_set():
                statuses.append(_verify(pc, tokens["acme"], bob, spk[bob][6]).status_code)

        t = threading.Thread(target=traffic)
        t.start()
        promote(world, 2)
        _wait(lambda: poller.state.service.model_version == "2", "the poller to follow")
        n = len(statuses)
        _wait(lambda: len(statuses) > n + 1, "requests after the swap")
        stop.set()
        t.join()
    assert statuses[0] == 200 and statuses[-1] == 409 and set(statuses) <= {200, 409}

    # the admin route: 401 without a token, 403 with a tenant's, then the swap
    assert c.post("/admin/reload").status_code == 401
    assert c.post("/admin/reload", headers=_h(tokens["acme"])).status_code == 403
    r = c.post(
        f"/v1/{ADMIN}/verify",
        files={"file": ("a.flac", spk[alice][5].read_bytes(), "audio/flac")},
        data={"speaker_id": alice},
        headers=_h(tokens[ADMIN]),
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "tenant.invalid"
    assert _verify(c, tokens[ADMIN], alice, spk[alice][5]).status_code == 403
    r = c.post("/admin/reload", headers=_h(tokens[ADMIN])).json()
    assert r == {
        "model_name": "speaker-encoder", "model_version": "2", "changed": True,
        "model_version_before": "1", "stale_templates": 3,
    }  # fmt: skip
    again = c.post("/admin/reload", headers=_h(tokens[ADMIN])).json()
    assert again["changed"] is False and again["model_version"] == "2"
    stale = _verify(c, tokens["acme"], alice, spk[alice][5])
    assert stale.status_code == 409
    assert "version 1" in stale.json()["error"]["message"]
    assert "version 2" in stale.json()["error"]["message"]
    metrics = c.get("/metrics").text
    assert "speakerops_stale_templates 3.0" in metrics
    assert 'speakerops_model_info{model_name="speaker-encoder",model_version="2"} 1.0' in metrics

    rc, out, err = cli("templates", "migrate", f"config={world['params']}")
    assert rc == 0, err
    report = json.loads(out)
    assert (report["model_version"], report["templates"], report["migrated"]) == ("2", 3, 2)
    store = app.state.service.store
    carol_key = store.speaker_key("acme", carol)
    assert [(m["speaker_key"], m["model_version"]) for m in report["must_reenroll"]] == [
        (carol_key, "1")
    ]
    assert "covers 0 of the template's 2 utterances" in report["must_reenroll"][0]["reason"]
    assert carol not in out and "must re-enroll" in err
    assert store.counts_by_version() == {("speaker-encoder", "2"): 2, ("speaker-encoder", "1"): 1}
    # the migrated template is the new model's embedding of the retained audio
    v2 = load_encoder("models:/speaker-encoder/2", tracking_uri=tracking_uri(root / "registry"))
    s = ServeSettings.from_cfg(cfg)
    expect = [
        intake(v2, p.name, p.read_bytes(), quality=s.quality, min_sample_rate=8000).embedding
        for p in spk[alice][:2]
    ]
    tpl = store.get("acme", store.speaker_key("acme", alice))
    assert tpl.model_version == "2" and np.allclose(tpl.embeddings, np.stack(expect), atol=1e-5)
    v = _verify(c, tokens["acme"], alice, spk[alice][5])
    assert v.status_code == 200 and v.json()["model_version"] == "2"
    assert v.json()["decision"] == (
        "accept" if v.json()["llr"] >= v.json()["threshold"] else "reject"
    )
    replay = _verify(c, tokens["acme"], alice, spk[alice][0]).json()
    assert "same audio as an enrollment utterance" in replay["flags"]["replay_suspected"]
    assert "speakerops_stale_templates 1.0" in c.get("/metrics").text
    assert _verify(c, tokens["acme"], bob, spk[bob][7]).status_code == 200  # v2 traffic
    # the migration ran in another process: an admin reload re-reads the store into the index
    r = c.post("/admin/reload", headers=_h(tokens[ADMIN])).json()
    assert r["changed"] is False and r["stale_templates"] == 1 and r["indexed"] == 2
    ident = c.post(
        "/v1/acme/identify",
        files={"file": (spk[bob][8].name, spk[bob][8].read_bytes(), "audio/flac")},
        headers=_h(tokens["acme"]),
    ).json()
    assert (ident["enrolled"], ident["stale_templates"]) == (2, 1)

    # erasure: the template, the retained audio and every production-log row of the speaker
    ring = keyring_from_cfg(cfg)
    log_key = speaker_pseudonym(log_speaker("acme", alice), ring.pseudonym_key())
    before = read_production_log(cfg.drift.log_dir, keyring=ring)
    mine = int((before["speaker_key"] == log_key).sum())
    assert mine >= 5 and len(store.retained_audio("acme", store.speaker_key("acme", alice))) == 2
    d = c.delete(f"/v1/acme/speakers/{alice}", headers=_h(tokens["acme"])).json()
    assert d["erased"] == {"templates": 1, "retained_audio": 2, "production_log_rows": mine}
    after = read_production_log(cfg.drift.log_dir, keyring=ring)
    assert len(after) == len(before) - mine and not (after["speaker_key"] == log_key).any()
    assert store.retained_audio("acme", store.speaker_key("acme", alice)) == []
    runs = root / "drift"
    rc = drift_main(
        OmegaConf.merge(
            cfg,
            {
                "drift": {
                    "output_dir": str(runs), "run_name": "after-erasure", "progress": False,
                    "window": {"model_version": "champion", "min_rows": 1},
                    "report": {"enabled": False}, "retrain": {"enabled": False},
                    "tickets": {"dir": str(root / "tickets")},
                }
            },
        )
    )  # fmt: skip
    summary = json.loads((runs / "after-erasure" / "summary.json").read_text())
    assert rc in (0, 1), summary.get("reason")
    assert summary["window"]["n_rows"] == int((after["model_version"] == "2").sum())

    # audit: the service's records on the one keyed chain, the head anchored on the model
    log = Path(cfg.serve.audit_log)
    actions = [r["action"] for r in read_audit_log(log)]
    for action in ("serve.enroll", "serve.reload", "serve.migrate", "serve.delete"):
        assert action in actions
    assert actions[-1] == "serve.delete"
    head = mlflow_client(cfg.paths.registry_dir).get_registered_model("speaker-encoder")
    assert head.tags["audit.head"].startswith(f"{len(actions)}:")
    assert cli("audit", "verify", f"config={world['params']}")[0] == 0
    text = log.read_text()
    shutil.copy(log, root / "audit.good")
    edited = text.replace('"mode": "replace"', '"mode": "add"', 1)  # an enroll record
    assert edited != text
    log.write_text(edited)
    rc, _, err = cli("audit", "verify", f"config={world['params']}")
    assert rc == 1 and "audit chain broken" in err
    lines = text.splitlines(keepends=True)
    last = lines[-1].replace(f'"production_log_rows": {mine}', '"production_log_rows": 0')
    assert last != lines[-1]
    log.write_text("".join(lines[:-1]) + last)  # the delete record, edited in place
    rc, _, err = cli("audit", "verify", f"config={world['params']}")
    assert rc == 1 and "MAC does not verify" in err
    log.write_text("".join(text.splitlines(keepends=True)[:-1]))  # the delete record removed
    rc, _, err = cli("audit", "verify", f"config={world['params']}")
    assert rc == 1 and "the tail was deleted" in err
    shutil.copy(root / "audit.good", log)
