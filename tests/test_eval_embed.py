"""The evaluate stage embeds each manifest row's own audio: a segment of a segmented corpus,
not the whole file it was cut from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from speakerops.eval.embed import embed_files
from speakerops.eval.evaluate import embed_split

from .conftest import tone, write_wav
from .promote_world import random_encoder


def test_embed_split_embeds_each_segment_not_the_whole_file(tmp_path: Path) -> None:
    first, second = tone(2.0, freq=140.0, seed=1), tone(2.0, freq=260.0, seed=2)
    whole = write_wav(tmp_path / "reader.wav", np.concatenate([first, second]))
    cut = write_wav(tmp_path / "second.wav", second)
    manifest = pd.DataFrame(
        {
            "utt_id": ["seg0", "seg1", "file"],
            "path": [str(whole)] * 3,
            "speaker": ["r"] * 3,
            "start": [0.0, 2.0, np.nan],  # NaN: the row is the whole file
            "end": [2.0, 4.0, np.nan],
        }
    )
    enc = random_encoder()
    got = embed_split(enc, manifest, {"seg0", "seg1", "file"}, "test", False).as_dict()
    assert not np.allclose(got["seg0"], got["seg1"])
    ref = embed_files(enc, [cut, whole], ["second", "whole"], progress=False).as_dict()
    np.testing.assert_allclose(got["seg1"], ref["second"], atol=1e-5)
    np.testing.assert_allclose(got["file"], ref["whole"], atol=1e-5)
