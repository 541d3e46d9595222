"""Two promotions started at the same moment: one waits for the other's lock, reads the champion
the first left and is compared with it; the audit log verifies and `rollback` goes to the right
version. On the embedded sqlite store (file lock) and on an MLflow tracking server whose backend
store is PostgreSQL (advisory lock)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .promote_world import two_model_world as _world

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _promote_both_at_once(root: Path, params: Path, env: dict[str, str]) -> list[dict]:
    env = dict(env, PATH=f"{BIN}{os.pathsep}{env['PATH']}", OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [
                "speakerops",
                "promote",
                "--config",
                str(params),
                "--candidate",
                f"models:/speaker-encoder/{v}",
                "--out",
                str(root / "out" / f"v{v}"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for v in (1, 2)
    ]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=900)
        out.append({"rc": p.returncode, "stdout": stdout, "stderr": stderr})
    return out


def _check_serialized(root: Path, params: Path, results: list[dict], env: dict) -> None:
    from speakerops.core.keys import open_keyring
    from speakerops.registry.audit import read_audit_log, verify_audit_log

    assert all(r["rc"] in (0, 1) for r in results), [r["stderr"][-2000:] for r in results]
    log = root / "registry" / "audit.jsonl"
    assert verify_audit_log(log, keyring=open_keyring(root / "registry")) == 2
    first, second = read_audit_log(log)
    # the first saw no champion; the second was compared with the first one's result
    assert first["champion_before"] is None and first["verdict"] == "pass"
    assert second["champion_before"] == first["champion_after"] == first["candidate_version"]
    second_verdict = json.loads(
        (root / "out" / f"v{second['candidate_version']}" / "verdict.json").read_text()
    )
    assert second_verdict["champion"]["version"] == first["candidate_version"]
    env = dict(env, PATH=f"{BIN}{os.pathsep}{env['PATH']}")
    rb = subprocess.run(
        ["speakerops", "rollback", "--config", str(params), "--reason", "concurrency test"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if second["verdict"] == "pass":  # rollback restores the first champion, not a stale one
        assert rb.returncode == 0, rb.stderr[-2000:]
        assert f"to v{first['candidate_version']}" in rb.stdout
    else:  # only one champion was ever made: nothing earlier to roll back to
        assert rb.returncode != 0 and "no champion before" in rb.stderr


def test_two_promotions_at_once_on_the_embedded_store(tmp_path: Path) -> None:
    params, _ = _world(tmp_path)
    results = _promote_both_at_once(tmp_path, params, dict(os.environ))
    _check_serialized(tmp_path, params, results, dict(os.environ))
    assert (tmp_path / "registry" / "locks" / "speaker-encoder.promote.lock").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_promotions_at_once_against_a_postgresql_backed_server(
    postgres_db: str, tmp_path: Path, monkeypatch
) -> None:
    port = _free_port()
    store = postgres_db.replace("postgresql://", "postgresql+psycopg://", 1)
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
         "--artifacts-destination", str(tmp_path / "mlartifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"),
    )  # fmt: skip
    try:
        uri = f"http://127.0.0.1:{port}"
        for attempt in range(181):  # polls 1 s apart until /health answers or the server exits
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                if attempt == 180 or server.poll() is not None:
                    log = (tmp_path / "server.log").read_text()[-2000:]
                    pytest.fail("mlflow server did not start: " + log)
                time.sleep(1)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        params, _ = _world(tmp_path, {"register.lock_url": postgres_db})
        env = dict(os.environ, MLFLOW_TRACKING_URI=uri)
        results = _promote_both_at_once(tmp_path, params, env)
        _check_serialized(tmp_path, params, results, env)
        # the advisory lock, not a lock file (the folder holds the promotion journal while a
        # promotion runs; both promotions finished, so no journal is left either)
        locks = tmp_path / "registry" / "locks"
        assert not list(locks.glob("*.promote.lock")) and not list(locks.glob("*.journal.json"))
        # the versions live in the server's PostgreSQL store
        import psycopg

        with psycopg.connect(postgres_db) as conn:
            n = conn.execute("SELECT count(*) FROM model_versions").fetchone()[0]
        assert n == 2
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(tmp_path / "mlartifacts", ignore_errors=True)
