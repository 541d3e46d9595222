"""`speakerops demo`: the whole lifecycle through the DVC pipeline, then a summary.

compose conf/ -> params.yaml -> `dvc repro` (prepare, baseline, train, evaluate, register,
gate) -> LibriSpeech test-other evaluation when `../shared/data` is present -> a summary of
the baseline and model EERs, the registered version with its aliases and the gate verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from speakerops.core.config import compose, write_params
from speakerops.core.env import child_env
from speakerops.core.mlflow import client as store_client
from speakerops.core.names import CHAMPION
from speakerops.eval.evaluate import evaluate_corpus
from speakerops.models.encoder import FILENAME, SpeakerEncoder


def shared_data_dir() -> Path:
    """`$SPEAKEROPS_SHARED_DATA`, else `../shared/data` beside the project."""
    return Path(os.environ.get("SPEAKEROPS_SHARED_DATA", Path.cwd().parent / "shared" / "data"))


def run_pipeline(overrides: list[str]) -> int:
    """Compose params.yaml and run `dvc repro`; returns DVC's exit code."""
    write_params(compose(overrides))
    return subprocess.call([sys.executable, "-m", "dvc", "repro"], env=child_env())


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:6.2f} %"


def run_demo(overrides: list[str]) -> int:
    if not Path("dvc.yaml").is_file():
        print("speakerops demo: run it from the project root (where dvc.yaml is)", file=sys.stderr)
        return 2
    start = time.time()
    rc = run_pipeline(overrides)
    cfg = compose(overrides)
    art = Path(cfg.paths.artifacts_dir)
    base, ev = _read(art / "baseline/metrics.json"), _read(art / "eval/metrics.json")
    reg, gate = _read(art / "register/registered.json"), _read(art / "register/gate.json")
    if not ev:
        print(
            f"speakerops demo: the pipeline stopped (dvc repro exit {rc}); see the messages above",
            file=sys.stderr,
        )
        return 2

    lines = ["", "=" * 72, "speakerops demo summary", "=" * 72]
    lines.append(f"Held-out synthetic speakers (eval split, {ev.get('n_trials', 0)} trials):")
    lines.append(
        f"  mean-MFCC cosine baseline  EER {_pct(base.get('eer'))}   minDCF(0.01) {base.get('min_dcf_0.01', float('nan')):.3f}"
    )
    lines.append(
        f"  trained model              EER {_pct(ev.get('eer'))}   minDCF(0.01) {ev['min_dcf_0.01']:.3f}   minDCF(0.05) {ev['min_dcf_0.05']:.3f}"
    )
    if base.get("eer"):
        lines.append(f"  model EER / baseline EER = {ev['eer'] / base['eer']:.2f} (target <= 0.33)")
    if "cllr" in ev:
        lines.append(
            f"  calibrated: Cllr {ev['cllr']:.3f}  minCllr {ev['min_cllr']:.3f}  actDCF(0.01) {ev['act_dcf_0.01']:.3f}"
        )
    lines.append(f"  trial list sha256 {ev['trials_sha256'][:16]}...")

    libri = shared_data_dir() / "librispeech" / "test-other"
    if libri.is_dir() and reg:
        real = evaluate_corpus(
            SpeakerEncoder.load(art / "register" / FILENAME), "librispeech", libri
        )
        (art / "eval/librispeech_test_other.json").write_text(json.dumps(real, indent=2))
        lines.append(
            f"LibriSpeech test-other ({real['n_speakers']} speakers, {real['n_utterances']} utts, {real['n_trials']} trials; "
            "a model trained on synthetic speech only):"
        )
        lines.append(
            f"  trained model              EER {_pct(real['eer'])}   minDCF(0.01) {real['min_dcf_0.01']:.3f}   minDCF(0.05) {real['min_dcf_0.05']:.3f}"
        )
    else:
        lines.append(f"LibriSpeech test-other: skipped ({libri} not found)")

    if reg:
        lines.append(
            f"Registry: {reg['model_name']} version {reg['version']}  ({reg['model_uri']})"
        )
        client = store_client(cfg.paths.registry_dir)
        mv = client.get_model_version(reg["model_name"], reg["version"])
        lines.append(f"  aliases of this version: {', '.join(sorted(mv.aliases)) or '(none)'}")
        champ = client.get_registered_model(reg["model_name"]).aliases.get(CHAMPION)
        lines.append(f"  current champion: {'version ' + str(champ) if champ else '(none)'}")
    if gate:
        verdict = "PASSED" if gate["passed"] else "REFUSED"
        lines.append(f"Gate ({cfg.register.policy}): {verdict}")
        lines += [f"  [{'ok' if c['passed'] else 'FAIL'}] {c['reason']}" for c in gate["checks"]]
    lines.append(
        f"Finished in {time.time() - start:.0f} s. MLflow UI: `speakerops ui`, then http://127.0.0.1:5000"
    )
    print("\n".join(lines))
    return 0 if gate.get("passed") else 1
