"""`speakerops serve` with serve.workers=2 (real uvicorn worker processes, one SQLite store):
an enroll or delete served by one worker is seen by the next identify of every worker, each
worker's in-memory index following the store's per-tenant generation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from speakerops.serve.process import ServerProcess
from speakerops.serve.tokens import issue_token

from .serve_world import build_encoder, librispeech_test_other, make_cfg

pytestmark = pytest.mark.realdata


def _overrides(tmp_path, model):
    return [
        f"paths.registry_dir={tmp_path / 'registry'}",
        f"paths.artifacts_dir={tmp_path / 'artifacts'}",
        f"drift.log_dir={tmp_path / 'production_log'}",
        f"serve.policy={make_cfg(tmp_path).serve.policy}",
        f"serve.model={model}",
        "serve.workers=2",
    ]


def _identify_everywhere(url, token, path, rounds=20):
    """Identify `path` on fresh connections, 4 at a time, until both workers have answered
    (bounded); returns [(worker pid, response json)]."""
    data = path.read_bytes()

    def one(_):
        with httpx.Client(timeout=120) as http:  # a new connection: any worker may accept it
            r = http.post(
                f"{url}/v1/acme/identify",
                files={"file": (path.name, data, "audio/flac")},
                data={"top_k": "5"},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert r.status_code == 200, r.text
        return r.headers["x-speakerops-worker"], r.json()

    out = []
    with ThreadPoolExecutor(4) as pool:
        for _ in range(rounds):
            out += list(pool.map(one, range(4)))
            if len({pid for pid, _ in out}) >= 2:
                break
    return out


def test_two_workers_follow_each_others_enrollments_and_deletions(tmp_path):
    speakers = librispeech_test_other()
    a, b = sorted(speakers)[:2]
    model = tmp_path / "encoder.safetensors"
    build_encoder().save(model)
    overrides = _overrides(tmp_path, model)
    token = issue_token(make_cfg(tmp_path).serve.tokens, "acme")[1]
    auth = {"Authorization": f"Bearer {token}"}

    def enroll(name):
        files = [("files", (p.name, p.read_bytes(), "audio/flac")) for p in speakers[name][:2]]
        r = httpx.post(
            f"{server.url}/v1/acme/speakers/{name}/enroll", files=files, headers=auth, timeout=120
        )
        assert r.status_code == 200, r.text
        return r.headers["x-speakerops-worker"]

    with ServerProcess(overrides, log_file=tmp_path / "server.log", threads=1) as server:
        enroll(a)  # one request, served by one worker
        seen = _identify_everywhere(server.url, token, speakers[a][5])
        assert len({pid for pid, _ in seen}) == 2, "both workers answered"
        for _, body in seen:  # every worker knows the speaker the other enrolled
            assert body["enrolled"] == 1
            assert body["candidates"][0]["speaker_id"] == a
        enroll(b)
        seen = _identify_everywhere(server.url, token, speakers[b][5])
        assert len({pid for pid, _ in seen}) == 2
        for _, body in seen:
            assert body["enrolled"] == 2
            assert {c["speaker_id"] for c in body["candidates"]} == {a, b}
        d = httpx.delete(f"{server.url}/v1/acme/speakers/{a}", headers=auth, timeout=120)
        assert d.status_code == 200, d.text
        seen = _identify_everywhere(server.url, token, speakers[a][5])
        assert len({pid for pid, _ in seen}) == 2
        for _, body in seen:  # erased in one worker: no worker proposes the speaker again
            assert body["enrolled"] == 1
            assert [c["speaker_id"] for c in body["candidates"]] == [b]
        # verify reads the store: the deleted speaker is unknown to every worker at once
        for _ in range(4):
            with httpx.Client(timeout=120) as http:
                r = http.post(
                    f"{server.url}/v1/acme/verify",
                    files={
                        "file": (speakers[a][5].name, speakers[a][5].read_bytes(), "audio/flac")
                    },
                    data={"speaker_id": a},
                    headers=auth,
                )
            assert r.status_code == 404 and r.json()["error"]["code"] == "speaker.unknown"
    log = (tmp_path / "server.log").read_text()
    assert log.count("Started server process") == 2, log[-2000:]
