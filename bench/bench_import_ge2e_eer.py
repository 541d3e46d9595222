"""EER of the imported GE2E beside resemblyzer itself, on speakerops' pinned test-other trials.

    .venv/bin/python bench/bench_import_ge2e_eer.py

Prepares `experiment=librispeech_small` into a temporary folder (its seeded test-other trial
list, whose sha256 is printed: the pin), imports the GE2E of the installed resemblyzer wheel, and
scores the same trials with cosine scoring three ways:

- `resemblyzer`: resemblyzer itself, `VoiceEncoder.embed_utterance(preprocess_wav(file))`
  (its volume normalization and webrtcvad trimming of long silences);
- `imported, resemblyzer input`: the imported encoder on the same preprocessed waveforms;
- `imported, speakerops input`: the imported encoder as `speakerops evaluate` / `embed` run it
  (the file as decoded and resampled by speakerops, no trimming or gain).

EER with the speaker-bootstrap 95 % interval (enrollment speakers resampled, 1000 replicates,
seed 0) and minDCF(0.01). One torch thread.
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from speakerops.cli import main as speakerops
from speakerops.data.audio import load_audio
from speakerops.data.manifest import read_manifest, read_trials
from speakerops.eval.bootstrap import speaker_bootstrap, verification_metric_fns
from speakerops.eval.metrics import min_dcf
from speakerops.eval.scoring import cosine_scores
from speakerops.models.encoder import SpeakerEncoder

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from resemblyzer import VoiceEncoder, preprocess_wav


def metrics(emb: dict[str, np.ndarray], trials, speakers) -> dict[str, float]:
    scores = cosine_scores(emb, trials)
    labels = trials["label"].to_numpy().astype(bool)
    eer = speaker_bootstrap(
        scores, labels, speakers, {"eer": verification_metric_fns()["eer"]}, n_boot=1000, seed=0
    )["eer"]
    return {
        "eer_pct": round(100 * eer.point, 2),
        "eer_ci95_pct": [round(100 * eer.low, 2), round(100 * eer.high, 2)],
        "min_dcf_0.01": round(float(min_dcf(scores, labels, 0.01)), 3),
    }


def main() -> int:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        prepared, out = Path(tmp) / "prepared", Path(tmp) / "ge2e.safetensors"
        args = ["prepare", "experiment=librispeech_small", f"data.prepared_dir={prepared}"]
        if speakerops(args) != 0:
            return 2
        if speakerops(["models", "import", "source=resemblyzer", f"output={out}"]) != 0:
            return 2
        enc = SpeakerEncoder.load(out)
        manifest = read_manifest(prepared / "manifest.csv").set_index("utt_id")
        trials, sha = read_trials(prepared / "trials_eval.csv")
    utts = sorted(set(trials["enroll"]) | set(trials["test"]))
    reference = VoiceEncoder("cpu", verbose=False)
    systems: dict[str, dict[str, np.ndarray]] = {k: {} for k in ("resemblyzer", "pre", "raw")}
    for utt in utts:
        path = manifest.loc[utt, "path"]
        wav = preprocess_wav(path)
        systems["resemblyzer"][utt] = reference.embed_utterance(wav)
        systems["pre"][utt] = enc.embed(wav, 16000, utt)
        raw, _ = load_audio(path, enc.sample_rate)
        systems["raw"][utt] = enc.embed(raw, enc.sample_rate, utt)
    speakers = manifest.loc[trials["enroll"], "speaker"].astype(str).to_numpy()
    report = {
        "trials": "librispeech_small test-other (trials_eval.csv)",
        "trials_sha256": sha,
        "n_trials": len(trials),
        "n_utterances": len(utts),
        "resemblyzer": metrics(systems["resemblyzer"], trials, speakers),
        "imported, resemblyzer input": metrics(systems["pre"], trials, speakers),
        "imported, speakerops input": metrics(systems["raw"], trials, speakers),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
