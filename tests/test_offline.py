"""Offline forever: importing every module and embedding audio opens no network connection,
and no code path fetches pretrained weights or data."""

from __future__ import annotations

import re
import subprocess
import sys

from .conftest import REPO

# Calls that fetch weights or data from the internet in the libraries we use.
DOWNLOADERS = re.compile(
    r"torch\.hub|hf_hub_download|snapshot_download|from_pretrained|urlretrieve|"
    r"torchaudio\.pipelines|download_asset|fetch_openml|datasets\.load_dataset"
)

PROBE = r"""
import importlib, pkgutil, socket, sys
attempts = []
def refuse(self, address, *a, **k):
    attempts.append(address)
    raise OSError(f"network access attempted: {address}")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = lambda address, *a, **k: refuse(None, address)

import numpy as np
import speakerops
for m in pkgutil.walk_packages(speakerops.__path__, "speakerops."):
    if m.name.startswith("speakerops.serve.migrations."):
        continue  # Alembic's scripts: they run inside Alembic's migration context only
    importlib.import_module(m.name)

from omegaconf import OmegaConf
from speakerops.core.config import compose
from speakerops.models.encoder import SpeakerEncoder, build_backbone
from speakerops.models.features import FeatureConfig

cfg = compose([])
model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
enc = SpeakerEncoder(build_backbone(model_cfg), FeatureConfig(**cfg.features), model_cfg)
e = enc.embed(np.random.default_rng(0).standard_normal(16000).astype("float32") * 0.1, 16000)
assert e.shape == (192,), e.shape
print("modules imported, embedded; network attempts:", attempts)
sys.exit(1 if attempts else 0)
"""


def test_no_module_or_embedding_touches_the_network() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "network attempts: []" in proc.stdout


def test_no_source_file_calls_a_downloader() -> None:
    hits = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in sorted((REPO / "src").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if DOWNLOADERS.search(line)
    ]
    assert hits == []
