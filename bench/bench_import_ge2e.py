"""Parity of the imported GE2E with resemblyzer on every test-other and FSDD file.

    .venv/bin/python bench/bench_import_ge2e.py [--every N]

Imports the GE2E of the installed resemblyzer wheel (`speakerops models import
source=resemblyzer`), then for every file of `../shared/data/librispeech/test-other` (100) and
`../shared/data/fsdd/recordings` (3000) embeds the same preprocessed input both ways:
resemblyzer's `preprocess_wav` (resampling to 16 kHz, volume normalization to -30 dBFS,
webrtcvad trimming of long silences), then resemblyzer's `VoiceEncoder.embed_utterance` and
the imported encoder's `embed`. Prints the cosine's minimum, 1st percentile and median per
corpus and the file of the minimum; exits 1 when a cosine is below 0.999 (the acceptance
bound). A file that `preprocess_wav` trims to nothing (webrtcvad finds no speech in 28 FSDD
digits) is compared on resemblyzer's preprocessing without the trimming (resampling and volume
normalization only) and counted as `untrimmed`; one still shorter than the encoder's minimum
would be refused by speakerops (no decision on audio too short) and is named, not compared. The test suite checks a seeded sample of the same files
(tests/test_import_resemblyzer.py). One torch thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from speakerops.cli import main as speakerops
from speakerops.data.audio import AudioError
from speakerops.models.encoder import SpeakerEncoder

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import librosa
    from resemblyzer import VoiceEncoder, normalize_volume, preprocess_wav
    from resemblyzer.hparams import audio_norm_target_dBFS, sampling_rate

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CORPORA = {
    "test-other": ("librispeech/test-other", "*/*.flac"),
    "fsdd": ("fsdd/recordings", "*.wav"),
}
BOUND = 0.999


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--every", type=int, default=1, help="every N-th file (1: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ge2e.safetensors"
        if speakerops(["models", "import", "source=resemblyzer", f"output={out}"]) != 0:
            return 2
        enc = SpeakerEncoder.load(out)
    reference = VoiceEncoder("cpu", verbose=False)
    report, worst = {}, 1.0
    for name, (folder, pattern) in CORPORA.items():
        files = sorted((DATA / folder).glob(pattern))[:: args.every]
        if not files:
            print(f"{DATA / folder}: no files", file=sys.stderr)
            return 2
        start, cosines, refused, untrimmed = time.perf_counter(), [], {}, []
        for path in files:
            wav = preprocess_wav(path)
            if wav.size == 0:  # webrtcvad found no speech: the same steps without the trimming
                wav, _ = librosa.load(str(path), sr=sampling_rate)
                wav = normalize_volume(wav, audio_norm_target_dBFS, increase_only=True)
                untrimmed.append(path.name)
            try:
                ours = enc.embed(wav, 16000, str(path))
            except AudioError as exc:
                refused[path.name] = f"{len(wav)} samples after preprocess_wav: {exc}"
                continue
            ref = reference.embed_utterance(wav)
            cosines.append(float(ref @ ours / np.linalg.norm(ref) / np.linalg.norm(ours)))
        arr = np.array(cosines)
        report[name] = {
            "files": len(files),
            "compared": len(cosines),
            "min_cosine": float(arr.min()),
            "p1_cosine": float(np.percentile(arr, 1)),
            "median_cosine": float(np.median(arr)),
            "min_file": files[int(arr.argmin())].name,
            "below_bound": int((arr < BOUND).sum()),
            "untrimmed": untrimmed,
            "not_compared": refused,
            "seconds": round(time.perf_counter() - start, 1),
        }
        worst = min(worst, float(arr.min()))
    print(json.dumps({"bound": BOUND, "input": "resemblyzer.preprocess_wav", **report}, indent=2))
    return 0 if worst >= BOUND else 1


if __name__ == "__main__":
    sys.exit(main())
