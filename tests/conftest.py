"""Shared fixtures: where the real audio lives, small audio files, a tiny project copy."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SPEAKEROPS_SHARED_DATA", REPO.parent / "shared" / "data"))

for key, value in {
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}.items():
    os.environ.setdefault(key, value)
os.environ.pop("MLFLOW_TRACKING_URI", None)  # tests use their own temporary stores
# one random master key for the whole run (subprocesses inherit it); each store (registry dir)
# keeps its own keyring of wrapped data keys, as in production
os.environ["SPEAKEROPS_DATA_KEY"] = secrets.token_hex(32)
os.environ.pop("SPEAKEROPS_KEYRING", None)
os.environ.pop("SPEAKEROPS_DATA_KEY_FILE", None)
# never the user's own key file (~/.config/speakerops/master.key): a config home of the run's own
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="speakerops-test-config-")


def import_ge2e(folder: Path) -> Path:
    """`speakerops models import source=resemblyzer` into ``folder``: the imported GE2E's file."""
    from speakerops.cli import main

    imported = folder / "ge2e.safetensors"
    assert main(["models", "import", "source=resemblyzer", f"output={imported}"]) == 0
    return imported


def shared(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real audio absent: {path} not found (../shared/data sits beside the clone)")
    return path


def tone(seconds: float = 1.5, rate: int = 16000, freq: float = 220.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a little noise: speech-like enough for I/O tests."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wav = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 6))
    return (0.3 * wav / np.max(np.abs(wav)) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write_wav(path: Path, wav: np.ndarray, rate: int = 16000, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav, rate, format=fmt)
    return path


# The slowest test files (one `dvc repro`, a SIGKILLed promote per journal step, a PostgreSQL-
# backed server, ...) run first: `scripts/test.sh` hands whole files to two pytest-xdist workers
# (`--dist loadfile`, in this order), so the run does not end on one of them alone.
SLOW_FIRST = (
    "test_pipeline.py",
    "test_promote_journal.py",
    "test_promote_concurrency.py",
    "test_drift_api.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole


@pytest.fixture
def audio_folder(tmp_path: Path) -> Path:
    """`root/<speaker>/*.wav|flac` for 6 speakers at 8, 16 and 22.05 kHz, plus bad files."""
    root = tmp_path / "corpus"
    rates = [16000, 8000, 22050]
    for s in range(6):
        for u in range(3):
            rate = rates[(s + u) % 3]
            ext = "flac" if u == 1 else "wav"
            write_wav(
                root / f"spk{s}" / f"utt{u}.{ext}", tone(1.5, rate, 120 + 40 * s, seed=u), rate
            )
    (root / "spk0" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    write_wav(root / "spk1" / "empty.wav", np.zeros(0, np.float32))
    sf.write(
        str(root / "spk2" / "nan.wav"), np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT"
    )
    write_wav(root / "spk3" / "short.wav", tone(0.2))
    return root


@pytest.fixture
def keyring(tmp_path: Path):
    """A store's keyring under the run's master key (see SPEAKEROPS_DATA_KEY above)."""
    from speakerops.core.keys import open_keyring

    return open_keyring(tmp_path / "registry")


@pytest.fixture(autouse=True)
def _isolated_mlflow_env():
    """`mlflow.set_tracking_uri` exports MLFLOW_TRACKING_URI; keep each test's store its own."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


# A micro synthetic corpus for training tests: 12 speakers x 3 short recordings.
MICRO_CORPUS = [
    "data.synthetic.n_speakers=12",
    "data.synthetic.utts_per_speaker=3",
    "data.synthetic.min_duration=1.5",
    "data.synthetic.max_duration=2.0",
    "data.calibration_fraction=0.25",
    "data.eval_fraction=0.2",
    "data.loader.batch_size=8",
    "data.loader.num_workers=0",
]


@pytest.fixture(scope="session")
def micro_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The micro synthetic corpus prepared once per session: its manifest (absolute paths).
    Read-only: a test that needs changed audio writes its own files and manifest."""
    from speakerops.core.config import compose
    from speakerops.data.prepare import prepare

    root = tmp_path_factory.mktemp("micro-prepared")
    prepare(compose([*MICRO_CORPUS, f"data.synthetic_dir={root}/synthetic",
                     f"data.prepared_dir={root}/prepared"]).data, progress=False)  # fmt: skip
    return root / "prepared" / "manifest.csv"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """A PostgreSQL server URL: `SPEAKEROPS_TEST_POSTGRES_URL` (`.ci/run` starts one with
    `scripts/postgres.sh start`), else the same script starts a local cluster now."""
    import subprocess

    url = os.environ.get("SPEAKEROPS_TEST_POSTGRES_URL")
    if not url:
        proc = subprocess.run(
            ["bash", str(REPO / "scripts" / "postgres.sh"), "start"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            pytest.skip(f"PostgreSQL could not be started: {proc.stderr.strip()[-500:]}")
        url = proc.stdout.strip().splitlines()[-1].split("=", 1)[1]
    return url


@pytest.fixture
def postgres_db(postgres_server: str, request) -> str:
    """A fresh, empty database on the test server for one test (dropped afterwards)."""
    import re

    import psycopg

    name = (
        "t_"
        + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]
        + "_"
        + os.urandom(3).hex()
    )
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_server.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests, restored afterwards: on a shared 2-core machine
    OpenMP threads that wait for each other cost far more than they bring for small inputs."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
