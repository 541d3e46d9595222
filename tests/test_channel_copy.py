"""A telephone-band copy of the eval split (`data.eval_channels=[telephone]`): deterministic for a
seed, really band-limited, the same trial pairs as the wideband list with its own input pin, and
a bad channel setting refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from speakerops.core.config import compose
from speakerops.core.jsonio import sha256_file
from speakerops.data.audio import load_audio
from speakerops.data.channel_copy import telephone_copy, telephone_settings
from speakerops.data.prepare import prepare
from speakerops.eval.trials import load_trial_set

from .conftest import MICRO_CORPUS

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _cfg(tmp: Path, name: str, *extra: str):
    return compose([*MICRO_CORPUS, f"data.synthetic_dir={tmp / 'corpus'}",
                    f"data.prepared_dir={tmp / name}", "data.eval_channels=[telephone]",
                    *extra])  # fmt: skip


def _digests(folder: Path) -> dict[str, str]:
    files = sorted((folder / "audio").iterdir()) + [folder / "trials_eval.csv"]
    return {f.name: sha256_file(f) for f in files}


def high_share(w: np.ndarray, rate: int) -> float:
    """Energy above 4 kHz / all energy."""
    power = np.abs(np.fft.rfft(w)) ** 2
    return float(power[np.fft.rfftfreq(w.size, 1 / rate) > 4000].sum() / power.sum())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("channel")
    summary = prepare(_cfg(tmp, "a").data, progress=False)
    assert summary["channels"]["telephone"]["n_files"] > 0
    return tmp


def test_same_seed_same_bytes_other_seed_other_audio(prepared: Path) -> None:
    prepare(_cfg(prepared, "b").data, progress=False)
    a, b = _digests(prepared / "a" / "telephone"), _digests(prepared / "b" / "telephone")
    assert a == b and len(a) > 2
    prepare(_cfg(prepared, "c", "data.telephone.seed=1").data, progress=False)
    c = _digests(prepared / "c" / "telephone")
    assert c["trials_eval.csv"] == a["trials_eval.csv"]  # the same trial pairs
    assert [k for k in a if a[k] != c[k]], "another seed draws other codecs for some files"


def test_the_copy_has_the_wideband_trials_its_own_pin_and_is_band_limited(prepared: Path) -> None:
    wide, tel = prepared / "a", prepared / "a" / "telephone"
    assert (wide / "trials_eval.csv").read_bytes() == (tel / "trials_eval.csv").read_bytes()
    ws, ts = load_trial_set(wide, "eval"), load_trial_set(tel, "eval")  # both pins verify
    assert ws.sha256 == ts.sha256 and ws.inputs_sha256 != ts.inputs_sha256
    pd.testing.assert_series_equal(ws.table["label"], ts.table["label"])
    manifest = pd.read_csv(tel / "manifest.csv")
    original = pd.read_csv(wide / "manifest.csv")
    ev = manifest["split"] == "eval"
    assert manifest.loc[ev, "path"].str.startswith(str(tel / "audio")).all()
    assert manifest.loc[~ev, "path"].tolist() == original.loc[~ev, "path"].tolist()
    wide_share = []
    for src, dst in zip(original.loc[ev, "path"], manifest.loc[ev, "path"], strict=True):
        x, rate = load_audio(src)
        y, rate_y = load_audio(dst)
        assert rate_y == rate and y.size == x.size and sf.info(dst).subtype == "PCM_16"
        wide_share.append(high_share(x, rate))
        assert high_share(y, rate) < 1e-5  # the copy has none (16-bit rounding of quiet audio only)
    assert max(wide_share) > 3e-4  # some originals have energy there (synthetic voices: little)
    info = json.loads((tel / "prepare.json").read_text())
    assert (
        info["settings"]["band_hz"] == [300.0, 3400.0] and info["trial_hashes"]["eval"] == ws.sha256
    )


def test_real_speech_through_the_copy_keeps_nothing_above_4khz(tmp_path: Path) -> None:
    src = SHARED / "librispeech/test-other/1688/1688-142285-0000.flac"
    if not src.is_file():
        pytest.skip(f"{src}: shared LibriSpeech test-other not here (see ../shared/data/README.md)")
    settings = telephone_settings(compose().data.telephone)
    telephone_copy(str(src), tmp_path / "copy.wav", src.name, settings)
    x, rate = load_audio(src)
    y, _ = load_audio(tmp_path / "copy.wav")

    def band_share(w: np.ndarray, lo: float, hi: float) -> float:
        power = np.abs(np.fft.rfft(w)) ** 2
        f = np.fft.rfftfreq(w.size, 1 / rate)
        return float(power[(f > lo) & (f <= hi)].sum() / power.sum())

    assert band_share(x, 4000, 8000) > 0.01  # read speech at 16 kHz: a few % above 4 kHz
    assert band_share(y, 4000, 8000) < 1e-7  # through the line: 16-bit rounding only
    assert band_share(y, 300, 3500) > 0.99


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.eval_channels=[fax]", r"data.eval_channels: \['fax'\] unknown; known channels"),
        ("data.telephone.codecs=[gsm]", r"data.telephone.codecs: \['gsm'\] unknown"),
        ("data.telephone.band_hz=[300,4200]", r"band_hz must be \[low, high\] .* < channel_rate/2"),
        ("data.telephone.seed=-1", r"data.telephone.seed must be an integer >= 0, got -1"),
        ("+data.telephone.gain=2", r"data.telephone: .*unknown keys \['gain'\]"),
    ],
)
def test_bad_channel_settings_are_refused_naming_the_key(
    tmp_path: Path, override: str, message: str
) -> None:
    cfg = _cfg(tmp_path, "prepared", override)
    with pytest.raises(ValueError, match=message):
        prepare(cfg.data, progress=False)
    if "eval_channels" in override:
        assert not (tmp_path / "prepared").exists()  # refused before anything was written
