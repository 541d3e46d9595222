"""Identification at scale (src/serve/index.py): exact search up to
``serve.identify.index.exact_max`` templates, a faiss IVF index above it whose candidates are
re-scored exactly. The approximate path gives the exact top-1 on a seeded set above the
threshold, follows enroll and delete, and is rebuilt from the store when the service starts."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from speakerops.eval.calibration import LinearCalibration
from speakerops.eval.scoring import ScoreNormalization, Scorer
from speakerops.serve.app import create_app
from speakerops.serve.index import IndexSettings, TemplateIndex
from speakerops.serve.store import Template
from speakerops.serve.tokens import issue_token

from .serve_world import MODEL_NAME, build_encoder, librispeech_test_other, make_cfg

APPROX = [
    "serve.identify.index.exact_max=50",
    "serve.identify.index.candidates=20",
    "serve.identify.index.nprobe=3",
]


@pytest.fixture(scope="module")
def encoder():
    return build_encoder()


def _synthetic(n: int, dim: int, seed: int) -> np.ndarray:
    """Clustered unit vectors (16 groups, like channels or accents), seeded."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((16, dim))
    x = centres[rng.integers(0, 16, n)] + 0.8 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _template(tenant: str, i: int, vec: np.ndarray, version: str = "1") -> Template:
    return Template(tenant, f"key-{i}", MODEL_NAME, version, 1, vec[None], 8.0, (), f"spk-{i}")


def _asnorm_index(n: int, seed: int) -> tuple[np.ndarray, TemplateIndex]:
    """``n`` templates and an index (exact_max 500) whose AS-norm cohort is 300 more speakers
    of the same population (as a model's training speakers are)."""
    population = _synthetic(n + 300, 32, seed=seed)
    scorer = Scorer(
        ScoreNormalization("asnorm", top_n=20, cohort=population[n:]),
        LinearCalibration(p_eff=0.5, a=8.0, b=-2.0),
    )
    return population[:n], TemplateIndex(IndexSettings(500, 30, 0, 8), scorer, MODEL_NAME, "1")


def test_approximate_top1_matches_exact_and_follows_updates():
    # a population and an AS-norm cohort drawn from it (as a model's training speakers are)
    vecs, index = _asnorm_index(3000, seed=1)
    stale = _template("acme", 99999, vecs[0], version="0")
    assert index.rebuild([_template("acme", i, v) for i, v in enumerate(vecs)] + [stale]) == 3000
    assert index.approximate("acme") and index.counts("acme") == (3000, 1)
    rng = np.random.default_rng(2)
    picks = rng.choice(3000, 60, replace=False)
    noise = rng.standard_normal((60, 32)).astype(np.float32)
    probes = vecs[picks] + 0.6 * noise / np.sqrt(32)
    planted = 0
    for pick, probe in zip(picks, probes, strict=True):
        approx = index.search("acme", probe, 6.0, 5)
        exact = index.search("acme", probe, 6.0, 5, exact=True)
        assert approx[0].speaker_id == exact[0].speaker_id
        assert approx[0].llr == pytest.approx(exact[0].llr)  # re-scored as exact scores it
        assert [h.llr for h in exact] == sorted((h.llr for h in exact), reverse=True)
        planted += exact[0].speaker_id == f"spk-{pick}"
    assert planted >= 50  # the probes mostly find their own speaker: the check is not vacuous
    # delete: the speaker is never proposed again; re-enroll: the new vector is found
    top = index.search("acme", probes[0], 6.0, 1)[0]
    assert index.remove("acme", top.speaker_key) and not index.remove("acme", top.speaker_key)
    assert top.speaker_id not in {h.speaker_id for h in index.search("acme", probes[0], 6.0, 50)}
    moved = Template("acme", "key-7", MODEL_NAME, "1", 2, probes[0][None], 8.0, (), "spk-7")
    index.upsert(moved)
    assert index.search("acme", probes[0], 6.0, 1)[0].speaker_id == "spk-7"
    assert index.counts("acme") == (2999, 1) and index.counts("beta") == (0, 0)
    assert index.search("beta", probes[0], 6.0, 5) == []  # another tenant sees nothing


def _identify(client, token, path):
    r = client.post(
        "/v1/acme/identify",
        files={"file": (path.name, path.read_bytes(), "audio/flac")},
        data={"top_k": "5"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_service_identifies_through_the_index_rebuilt_from_the_store(tmp_path, encoder):
    speakers = librispeech_test_other()
    names = sorted(speakers)[:4]
    cfg = make_cfg(tmp_path, *APPROX)
    app = create_app(cfg, encoder=encoder, model_name=MODEL_NAME, model_version="1")
    token = issue_token(cfg.serve.tokens, "acme")[1]
    app.state.tokens.reload()
    client = TestClient(app)
    auth = {"Authorization": f"Bearer {token}"}
    for name in names:  # real speakers through the API
        files = [("files", (p.name, p.read_bytes(), "audio/flac")) for p in speakers[name][:2]]
        r = client.post(f"/v1/acme/speakers/{name}/enroll", files=files, headers=auth)
        assert r.status_code == 200, r.text
    # ... and 200 more templates written straight into the store (encrypted rows, as enrolled)
    store = app.state.service.store
    cohort = Scorer.from_encoder(encoder).normalization.cohort  # pad near the model's speakers
    rng = np.random.default_rng(3)
    pads = cohort.mean(0) + cohort.std(0) * rng.standard_normal((200, cohort.shape[1]))
    for i, v in enumerate(pads.astype(np.float32)):
        store.put("acme", f"pad-{i:03d}", v[None], model_name=MODEL_NAME, model_version="1",
                  durations_s=[8.0], audio_keys=[], mode="replace")  # fmt: skip
    # a fresh service rebuilds its index from the store: the approximate path, above 50
    app = create_app(cfg, encoder=encoder, model_name=MODEL_NAME, model_version="1")
    client = TestClient(app)
    exact_cfg = make_cfg(tmp_path, "serve.identify.index.exact_max=100000")
    exact_app = create_app(exact_cfg, encoder=encoder, model_name=MODEL_NAME, model_version="1")
    exact_client = TestClient(exact_app)
    for name in names[:2]:
        probe = speakers[name][5]
        approx, exact = _identify(client, token, probe), _identify(exact_client, token, probe)
        assert approx["search"] == "approximate" and exact["search"] == "exact"
        assert approx["enrolled"] == exact["enrolled"] == 204
        assert approx["candidates"][0] == exact["candidates"][0]
        assert (
            approx["decision"] == exact["decision"] and approx["speaker_id"] == exact["speaker_id"]
        )
    # delete through the API: the speaker leaves the results at once
    probe = speakers[names[0]][5]
    top = _identify(client, token, probe)["candidates"][0]["speaker_id"]
    assert client.delete(f"/v1/acme/speakers/{top}", headers=auth).status_code == 200
    after = _identify(client, token, probe)
    assert top not in {c["speaker_id"] for c in after["candidates"]}
    assert after["enrolled"] == 203 and after["search"] == "approximate"


def test_crossing_exact_max_trains_the_lists_off_the_request_path(monkeypatch):
    vecs, index = _asnorm_index(1000, seed=5)
    assert index.rebuild([_template("acme", i, v) for i, v in enumerate(vecs[:500])]) == 500
    assert not index.approximate("acme")
    gate, fit = threading.Event(), TemplateIndex._fit  # k-means waits until the test says so

    def held_fit(self, train, nlist):
        assert gate.wait(120)
        return fit(self, train, nlist)

    monkeypatch.setattr(TemplateIndex, "_fit", held_fit)
    started = time.monotonic()
    index.upsert(_template("acme", 500, vecs[500]))  # crosses exact_max: no training here
    assert time.monotonic() - started < 5.0
    assert not index.approximate("acme") and index.counts("acme") == (501, 0)
    probe = vecs[500] + 0.1 * np.random.default_rng(6).standard_normal(32).astype(np.float32)
    assert index.search("acme", probe, 6.0, 1)[0].speaker_id == "spk-500"  # exact answers
    # enroll and delete while the lists are trained: replayed onto them before the swap
    for i in range(501, 520):
        index.upsert(_template("acme", i, vecs[i]))
    assert index.remove("acme", "key-3") and index.remove("acme", "key-510")
    gate.set()
    assert index.wait_builds(120)
    assert index.approximate("acme") and index.counts("acme") == (518, 0)
    for i in (3, 510):  # deleted during the build: never proposed by the new lists
        found = {h.speaker_id for h in index.search("acme", vecs[i], 6.0, 30)}
        assert f"spk-{i}" not in found
    for i in (505, 519, 42):  # enrolled during the build, and from before it
        assert index.search("acme", vecs[i], 6.0, 1)[0].speaker_id == f"spk-{i}"
        a, e = (
            index.search("acme", vecs[i], 6.0, 5),
            index.search("acme", vecs[i], 6.0, 5, exact=True),
        )
        assert a[0].speaker_id == e[0].speaker_id and a[0].llr == pytest.approx(e[0].llr)
