"""A tiny real world for the verification service tests: a packaged encoder built cheaply
(random ECAPA convolutions, an AS-norm cohort and a calibration fitted with the eval code on
LibriSpeech train-clean-100, disjoint from the test-other speakers the tests enroll), a
composed config in a temporary project and tokens for two tenants."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

from speakerops.core.config import compose
from speakerops.data.audio import audio_info, load_audio
from speakerops.eval.calibration import LinearCalibration
from speakerops.eval.scoring import ScoreNormalization

from .conftest import REPO, shared
from .promote_world import random_encoder

SR = 16000
MODEL_NAME = "speaker-encoder"


def librispeech_test_other() -> dict[str, list[Path]]:
    """LibriSpeech test-other: speaker -> its 10 utterances (sorted)."""
    root = shared("librispeech", "test-other")
    return {d.name: sorted(d.glob("*.flac")) for d in sorted(root.iterdir()) if d.is_dir()}


def _clip(path: Path, seconds: float, offset: float = 0.0) -> np.ndarray:
    wav, _ = load_audio(path, SR)
    a = int(offset * SR)
    return wav[a : a + int(seconds * SR)]


def build_encoder(n_cohort: int = 24, n_calibration: int = 40, seed: int = 0):
    """random_encoder + packaged scoring: AS-norm over `n_cohort` train-clean-100 speakers and
    a linear calibration fitted (LinearCalibration, p_eff 0.5) on half-utterance target pairs
    and cross-speaker non-target pairs of `n_calibration` other speakers."""
    files = [
        p
        for p in sorted(shared("librispeech", "train-clean-100").glob("*.flac"))
        if audio_info(p).duration >= 6.5
    ]
    enc = random_encoder(32, 32, seed)
    cohort = np.stack([enc.embed(_clip(p, 4.0), SR) for p in files[:n_cohort]])
    norm = ScoreNormalization("asnorm", top_n=10, cohort=cohort)
    cal_files = files[n_cohort : n_cohort + n_calibration]
    first = np.stack([enc.embed(_clip(p, 3.0, 0.0), SR) for p in cal_files])
    second = np.stack([enc.embed(_clip(p, 3.0, 3.0), SR) for p in cal_files])
    n = len(cal_files)
    e_idx, t_idx, labels = [], [], []
    for i in range(n):
        for j in range(n):
            if i == j or (j - i) % n <= 4:  # every target, 4 non-targets per speaker
                e_idx.append(i)
                t_idx.append(j)
                labels.append(int(i == j))
    scores = norm.score_pairs(first[e_idx], second[t_idx])
    cal = LinearCalibration(p_eff=0.5).fit(scores, np.asarray(labels))
    enc.extras = {**enc.extras, "scoring": norm.to_dict(), "calibration": cal.to_dict()}
    return enc


def make_cfg(project: Path, *overrides: str):
    items = [
        f"paths.registry_dir={project / 'registry'}",
        f"paths.artifacts_dir={project / 'artifacts'}",
        f"drift.log_dir={project / 'production_log'}",
        f"serve.policy={REPO / 'registry' / 'policy.yaml'}",
        *overrides,
    ]
    return compose(items)


def wav_bytes(
    wav: np.ndarray, rate: int = SR, fmt: str = "WAV", subtype: str | None = None
) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wav, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def audio(name: str, data: bytes, ctype: str = "audio/wav") -> tuple[str, bytes, str]:
    return (name, data, ctype)
