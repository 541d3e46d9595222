"""The audio behind the pinned trials is pinned too: redirected manifest rows, replaced or
edited audio and an edited pin are refused, naming what changed (today's main scored a manifest
whose eval paths were redirected and passed the gate with EER 0.0003)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from speakerops.core.config import compose
from speakerops.data.manifest import read_manifest
from speakerops.data.pins import inputs_path
from speakerops.data.prepare import prepare
from speakerops.eval.trials import load_trial_set

from .conftest import MICRO_CORPUS


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("pins")
    cfg = compose([*MICRO_CORPUS, f"data.prepared_dir={tmp_path / 'prepared'}",
                   f"data.synthetic_dir={tmp_path / 'corpus'}"])  # fmt: skip
    summary = prepare(cfg.data, progress=False)
    assert set(summary["trial_input_hashes"]) == set(summary["trial_hashes"])
    return tmp_path / "prepared"


def test_prepare_pins_the_manifest_rows_and_audio_behind_each_trial_list(prepared: Path) -> None:
    ts = load_trial_set(prepared, "eval")
    pin = json.loads(inputs_path(ts.path).read_text())
    assert ts.inputs_sha256 == pin["sha256"] and len(pin["sha256"]) == 64
    assert set(pin["utterances"]) == ts.utterances
    assert set(pin["audio_sha256"]) == {row[0] for row in pin["utterances"].values()}


def test_redirected_rows_replaced_audio_and_edited_pins_are_refused(prepared: Path) -> None:
    ts = load_trial_set(prepared, "eval")
    manifest_path = prepared / "manifest.csv"
    original = manifest_path.read_text()
    manifest = read_manifest(manifest_path)
    target = ts.table[ts.table["label"] == 1].iloc[0]
    # every test utterance redirected to its enrollment's audio: a perfect, fake EER
    paths = manifest.set_index("utt_id")["path"]
    manifest.loc[manifest["utt_id"] == target["test"], "path"] = paths[target["enroll"]]
    manifest.to_csv(manifest_path, index=False)
    with pytest.raises(ValueError, match=f"manifest row of trial utterance '{target['test']}'"):
        load_trial_set(prepared, "eval")
    manifest_path.write_text(original)
    load_trial_set(prepared, "eval")  # restored: accepted

    audio = Path(paths[target["enroll"]])
    before = audio.read_bytes()
    audio.write_bytes(before[:-2] + bytes([before[-2] ^ 1, before[-1]]))  # one flipped bit
    with pytest.raises(ValueError, match="replaced or edited after `prepare`"):
        load_trial_set(prepared, "eval")
    audio.write_bytes(before)

    pin = inputs_path(ts.path)
    doc = json.loads(pin.read_text())
    doc["audio_sha256"][str(audio)] = "0" * 64
    pin.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="pin file was edited"):
        load_trial_set(prepared, "eval")
    pin.unlink()
    with pytest.raises(ValueError, match="is not pinned"):
        load_trial_set(prepared, "eval")
    assert isinstance(pd.read_csv(ts.path), pd.DataFrame)
