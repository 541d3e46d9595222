"""A channel condition for evaluation: the eval split copied through a simulated channel.

``data.eval_channels: [telephone]`` makes `prepare` write ``<prepared_dir>/telephone/``: every
eval audio file through the telephone line of augmentation
(:func:`speakerops.data.channel.telephone.telephone_channel`, settings ``data.telephone``),
seeded per file (the draws depend on ``seed`` and the file, not on the order or the number of
workers), written as 16-bit WAV at the file's own rate; a ``manifest.csv`` whose eval rows
point at the copies (same utterance ids, spans, speakers, metadata; train and calibration rows
unchanged); the same trial pairs as the wideband lists (byte-identical ``trials_*.csv``, so
results are paired) with their own input pins (``trials_*.inputs.json``: the copies' sha256);
``prepare.json``. The folder is a prepared folder like its parent: ``evaluate``, ``promote``
and ``gate`` read it with ``data.prepared_dir=<prepared_dir>/telephone``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from speakerops.data.audio import load_audio
from speakerops.data.channel.codec import CODECS
from speakerops.data.channel.telephone import telephone_channel
from speakerops.data.manifest import write_trials
from speakerops.data.pins import write_trial_inputs

CHANNELS = ("telephone",)
_TELEPHONE_KEYS = {"seed", "codecs", "band_hz", "packet_loss", "frame_ms", "channel_rate"}


def telephone_settings(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """``data.telephone`` checked: a clear error naming the key, the value and what is allowed."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"data.telephone must be a mapping {sorted(_TELEPHONE_KEYS)}, got {raw!r}")
    missing, unknown = _TELEPHONE_KEYS - set(raw), set(raw) - _TELEPHONE_KEYS
    if missing or unknown:
        raise ValueError(
            f"data.telephone: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}; "
            f"expected exactly {sorted(_TELEPHONE_KEYS)} (conf/data/synthetic.yaml)"
        )
    seed = raw["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"data.telephone.seed must be an integer >= 0, got {seed!r}")
    codecs = raw["codecs"]
    if isinstance(codecs, str) or not isinstance(codecs, Sequence) or not codecs:
        raise ValueError(
            f"data.telephone.codecs must be a non-empty list from {CODECS}, got {codecs!r}"
        )
    bad = [c for c in codecs if c not in CODECS]
    if bad:
        raise ValueError(f"data.telephone.codecs: {bad} unknown; use names from {CODECS}")
    rate = raw["channel_rate"]
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise ValueError(
            f"data.telephone.channel_rate must be a positive integer (Hz), got {rate!r}"
        )
    band = raw["band_hz"]
    if (
        isinstance(band, str)
        or not isinstance(band, Sequence)
        or len(band) != 2
        or not 0.0 <= float(band[0]) < float(band[1]) < rate / 2
    ):
        raise ValueError(
            f"data.telephone.band_hz must be [low, high] with 0 <= low < high < channel_rate/2 "
            f"= {rate / 2}, got {band!r}"
        )
    loss = float(raw["packet_loss"])
    if not 0.0 <= loss < 1.0:
        raise ValueError(
            f"data.telephone.packet_loss must be in [0, 1), got {raw['packet_loss']!r}"
        )
    frame = float(raw["frame_ms"])
    if frame <= 0:
        raise ValueError(f"data.telephone.frame_ms must be > 0, got {raw['frame_ms']!r}")
    return {
        "seed": int(seed),
        "codecs": [str(c) for c in codecs],
        "band_hz": (float(band[0]), float(band[1])),
        "packet_loss": loss,
        "frame_ms": frame,
        "channel_rate": int(rate),
    }


def eval_channels(data: Mapping[str, Any]) -> list[str]:
    """``data.eval_channels`` checked: a list of names from :data:`CHANNELS` (none: [])."""
    names = data.get("eval_channels") or []
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ValueError(
            f"data.eval_channels must be a list of names from {CHANNELS}, got {names!r}"
        )
    bad = [n for n in names if n not in CHANNELS]
    if bad:
        raise ValueError(f"data.eval_channels: {bad} unknown; known channels: {list(CHANNELS)}")
    return [str(n) for n in names]


def _generator(seed: int, key: str) -> torch.Generator:
    """A generator seeded by ``seed`` and the file (order- and worker-independent)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def telephone_copy(src: str, dst: Path, key: str, settings: Mapping[str, Any]) -> None:
    """``src`` through the telephone line (draws seeded by ``settings['seed']`` and ``key``),
    written to ``dst`` as 16-bit WAV at the source's own rate."""
    wav, rate = load_audio(src, None)
    opts = {k: v for k, v in settings.items() if k != "seed"}
    y = telephone_channel(
        torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)),
        _generator(int(settings["seed"]), key),
        rate,
        **opts,
    ).numpy()
    peak = float(np.abs(y).max()) if y.size else 0.0
    if peak > 0.999:  # the codec works on the peak-normalized signal: keep it inside full scale
        y = y * (0.999 / peak)
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(dst), y, rate, subtype="PCM_16", format="WAV")


def write_channel_copies(
    data: Mapping[str, Any], out: Path, manifest: pd.DataFrame, trials: Mapping[str, pd.DataFrame]
) -> dict[str, dict[str, Any]]:
    """Write ``<out>/<channel>/`` for every name of ``data.eval_channels`` (module docstring);
    returns ``{channel: {dir, settings, trial_hashes, trial_input_hashes}}``."""
    summary: dict[str, dict[str, Any]] = {}
    for name in eval_channels(data):
        settings = telephone_settings(data.get(name))
        folder = out / name
        eval_rows = manifest["split"] == "eval"
        sources = sorted(set(manifest.loc[eval_rows, "path"]))
        if not sources:
            raise ValueError(f"data.eval_channels: {name}: the manifest has no eval split to copy")
        shutil.rmtree(folder / "audio", ignore_errors=True)  # no copy of an earlier prepare stays
        targets = {}
        for i, src in enumerate(sources):
            dst = folder / "audio" / f"{i:05d}_{Path(src).stem}.wav"
            telephone_copy(src, dst, Path(src).name, settings)
            targets[src] = str(dst)
        copied = manifest.copy()
        copied.loc[eval_rows, "path"] = copied.loc[eval_rows, "path"].map(targets)
        copied.to_csv(folder / "manifest.csv", index=False)
        hashes, inputs = {}, {}
        for split, table in trials.items():
            path = folder / f"trials_{split}.csv"
            hashes[split] = write_trials(table, path)
            inputs[split] = write_trial_inputs(table, copied, path)
        info = {
            "channel": name,
            "settings": {**settings, "band_hz": list(settings["band_hz"])},
            "n_files": len(sources),
            "trial_hashes": hashes,
            "trial_input_hashes": inputs,
        }
        (folder / "prepare.json").write_text(json.dumps(info, indent=2))
        summary[name] = {"dir": str(folder), **info}
    return summary
