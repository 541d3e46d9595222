"""The Evidently HTML report as a user sees it: rendered by headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from speakerops.drift.checks import check_drift
from speakerops.drift.report import render_report
from speakerops.drift.simulated_traffic import synthetic_population, synthetic_window
from speakerops.registry.reference import Reference

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _chromium() -> str | None:
    if os.environ.get("CHROMIUM_BIN"):
        return os.environ["CHROMIUM_BIN"]
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


@pytest.fixture(scope="module")
def drifted_report(tmp_path_factory) -> Path:
    emb, meta = synthetic_population(3000, n_speakers=1000, p_phone=0.1, seed=1000)
    ref = Reference(
        emb, meta, pd.DataFrame({"score": [0.5]}), model_name="speaker-encoder", model_version="7"
    )
    window = synthetic_window(1200, n_speakers=400, p_phone=0.9, seed=11, model_version="7")
    cfg = {"report": {"max_rows": 150}}
    result = check_drift(window, ref, cfg)
    assert result.drifted
    out = tmp_path_factory.mktemp("report") / "report.html"
    ctx = {"window": {"start": "2025-03-02T00:00:00+00:00", "end": "2025-03-09T00:00:00+00:00"}}
    return render_report(result, cfg, out, context=ctx)


def test_report_html_is_self_contained_and_states_the_verdict(drifted_report):
    html = drifted_report.read_text()
    assert "DRIFT DETECTED" in html and "Checks fired: embedding" in html
    assert "Drift in embeddings 'speaker_embedding'" in html  # Evidently's own panel
    assert "Data drift detected. Drift detection method: model" in html
    assert "Value drift for channel" in html or "Drift in column 'channel'" in html
    assert (
        "window.drawDashboard" in html and "<script src=" not in html
    )  # JS inlined: opens offline


def test_report_screenshot_in_headless_chromium(drifted_report):
    browser = _chromium()
    if browser is None:
        pytest.skip(
            f"no Chromium binary ({', '.join(BROWSERS)} or $CHROMIUM_BIN): install it, e.g. apt-get install -y chromium"
        )
    png = drifted_report.with_suffix(".png")
    profile = drifted_report.parent / "chromium-profile"
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--screenshot={png}",
        "--window-size=1280,2200", "--virtual-time-budget=20000", drifted_report.as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(profile)}
    )
    assert png.is_file() and png.stat().st_size > 10_000, (
        f"no screenshot: rc={proc.returncode} {proc.stderr[-2000:]}"
    )

    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB")).astype(np.int16)
    assert img.shape[:2] == (2200, 1280)
    assert img.std() > 20, "screenshot is (nearly) blank"
    # the rendered dashboard draws the current window in Evidently's red
    red = (img[..., 0] > 180) & (img[..., 1] < 120) & (img[..., 2] < 120)
    assert red.sum() > 2_000, f"only {red.sum()} red pixels: Evidently's charts did not render"
    # the verdict counter at the top is text on white: dark pixels in the top band
    top = img[:300]
    assert ((top.sum(axis=2) < 200).sum()) > 500, "no verdict text at the top of the page"
