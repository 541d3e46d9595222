"""The evaluation input behind a pinned trial list, pinned too.

A trial list names utterance ids; what is scored is the audio the manifest maps them to. NIST
evaluations pin both: here `prepare` writes, beside ``trials_<split>.csv`` and its ``.sha256``,
``trials_<split>.inputs.json``: for every utterance of the list its manifest row (path and
segment span) and the sha256 of every audio file behind them, with one digest over all of it.
:func:`check_trial_inputs` recomputes the same from the current manifest and the files' bytes
and refuses, naming the utterance or file, when anything moved: a manifest row redirected to
other audio, a file replaced or edited, a pin file edited.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from speakerops.core.jsonio import sha256_file
from speakerops.data.manifest import row_spans

PIN_FORMAT = 1


def inputs_path(trials_path: str | Path) -> Path:
    """``trials_<split>.csv`` -> ``trials_<split>.inputs.json``."""
    p = Path(trials_path)
    return p.with_name(p.name.removesuffix(".csv") + ".inputs.json")


def _rows(trials: pd.DataFrame, manifest: pd.DataFrame) -> dict[str, list[Any]]:
    utts = set(trials["enroll"]) | set(trials["test"])
    rows = manifest[manifest["utt_id"].isin(utts)].drop_duplicates("utt_id")
    missing = utts - set(rows["utt_id"])
    if missing:
        raise ValueError(
            f"{len(missing)} trial utterances are not in the manifest, e.g. {sorted(missing)[:3]}"
        )
    return {
        str(u): [str(p), a, b]
        for u, p, (a, b) in zip(rows["utt_id"], rows["path"], row_spans(rows), strict=True)
    }


def trial_inputs(trials: pd.DataFrame, manifest: pd.DataFrame) -> dict[str, Any]:
    """The pin of a trial list: its utterances' manifest rows and their audio files' sha256."""
    utterances = dict(sorted(_rows(trials, manifest).items()))
    audio = {p: sha256_file(p) for p in sorted({row[0] for row in utterances.values()})}
    body = {"utterances": utterances, "audio_sha256": audio}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return {"format": PIN_FORMAT, "sha256": digest, **body}


def write_trial_inputs(trials: pd.DataFrame, manifest: pd.DataFrame, trials_path: Path) -> str:
    """Write the pin beside the trial list; returns its digest."""
    pin = trial_inputs(trials, manifest)
    inputs_path(trials_path).write_text(json.dumps(pin, indent=1, sort_keys=True) + "\n")
    return str(pin["sha256"])


def check_trial_inputs(trials_path: Path, trials: pd.DataFrame, manifest: pd.DataFrame) -> str:
    """The pin's digest when the current manifest rows and audio bytes behind `trials` match the
    pin `prepare` wrote; else a ``ValueError`` naming what changed."""
    pin_file = inputs_path(trials_path)
    if not pin_file.is_file():
        raise ValueError(
            f"{pin_file}: the evaluation input behind {Path(trials_path).name} is not pinned "
            "(prepared by an older speakerops?): run `speakerops prepare` again"
        )
    pinned = json.loads(pin_file.read_text())
    body = {k: pinned.get(k) for k in ("utterances", "audio_sha256")}
    if hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest() != pinned.get(
        "sha256"
    ):
        raise ValueError(f"{pin_file}: the pin file was edited (its digest does not match)")
    now = _rows(trials, manifest)
    for utt, row in sorted(now.items()):
        want = pinned["utterances"].get(utt)
        if want != row:
            raise ValueError(
                f"manifest row of trial utterance {utt!r} is {row}, pinned {want} in "
                f"{pin_file.name}: the evaluation input changed after `prepare`"
            )
    for path, want in sorted(pinned["audio_sha256"].items()):
        have = sha256_file(path) if Path(path).is_file() else "missing"
        if have != want:
            raise ValueError(
                f"{path}: audio behind the pinned trials has sha256 {have[:12]}…, pinned "
                f"{want[:12]}… in {pin_file.name}: the file was replaced or edited after `prepare`"
            )
    return str(pinned["sha256"])
