"""The one place a torch pickle is read, and only with `torch.load(weights_only=True)`.

* `read_checkpoint`: a Lightning checkpoint (resume, fine-tuning from `train.init_from`, the best
  checkpoint after fit). `weights_only=True` rebuilds tensors, containers and primitives only;
  the allow-list adds numpy arrays and scalars, nothing that can run code.
* `convert`: an old-format `encoder.pt` (`speakerops-encoder/1`, written by `torch.save`) into
  the safetensors encoder file. `speakerops models convert <old.pt> <new.safetensors>` is the
  only command that reads one; `embed`, `evaluate`, `register` and the registry refuse them.
  Its `_target_` is accepted only when it names a registered backbone class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from speakerops.models.encoder import SpeakerEncoder
from speakerops.models.encoder_file import SUFFIX, EncoderFile
from speakerops.models.zoo import model_spec

LEGACY_FORMAT = "speakerops-encoder/1"

# numpy arrays and scalars inside old `extras` (the AS-norm cohort, metrics)
ALLOWED_GLOBALS: list[Any] = [
    np._core.multiarray._reconstruct,
    np._core.multiarray.scalar,
    np.ndarray,
    np.dtype,
    *(
        type(np.dtype(t))
        for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_)
    ),
]


def read_checkpoint(path: str | Path) -> Any:
    """`torch.load(path, weights_only=True)` with the numpy allow-list; a file holding any other
    object (a crafted pickle) is refused before anything runs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, zip errors, EOF: all mean "not loadable data"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(
            f"{path}: refused by torch.load(weights_only=True): {type(exc).__name__}: {first}"
        ) from None


def convert(old: str | Path, new: str | Path) -> dict[str, str]:
    """Convert an old-format `encoder.pt` to `new` (`*.safetensors` + sidecar); returns a summary.

    The converted encoder gives the same embeddings as the original (same weights, bit for bit).
    """
    old, new = Path(old), Path(new)
    if new.suffix != SUFFIX:
        raise ValueError(f"{new}: the converted encoder file must be named *{SUFFIX}")
    blob = read_checkpoint(old)
    if not isinstance(blob, dict) or blob.get("format") != LEGACY_FORMAT:
        raise ValueError(f"{old}: not an old-format speakerops encoder ({LEGACY_FORMAT})")
    extras, dropped = _without_plaintext_biometrics(dict(blob.get("extras") or {}))
    try:
        arch, kwargs = model_spec(blob["model"])
        content = EncoderFile(
            arch, kwargs, dict(blob["features"]), dict(blob["state_dict"]), extras
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{old}: incomplete old-format encoder ({exc})") from None
    encoder = SpeakerEncoder.from_file(content, str(old))  # the weights fit the architecture
    encoder.save(new)
    return {
        "converted": str(old),
        "to": str(new),
        "arch": arch,
        "read_with": "torch.load(weights_only=True), allow-list: numpy arrays/scalars",
        **({"dropped": "; ".join(dropped)} if dropped else {}),
    }


def _without_plaintext_biometrics(extras: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """An old file's extras less what is biometric data in plaintext (its AS-norm cohort: the
    training speakers' ids and mean embeddings; its list of training speaker ids). A new file
    carries the cohort only encrypted, which needs the keyring: `evaluate` + `register` make it."""
    dropped = []
    scoring = extras.get("scoring")
    if isinstance(scoring, dict) and "cohort" in scoring and "cohort_enc" not in scoring:
        del extras["scoring"]
        dropped.append(
            "scoring: a plaintext AS-norm cohort (run `speakerops evaluate` and `register` on "
            "the converted file to package an encrypted one; until then it scores by cosine)"
        )
    if "train_speakers" in extras:
        extras.setdefault("n_train_speakers", len(extras.pop("train_speakers")))
        dropped.append("train_speakers: raw speaker ids (their number is kept)")
    return extras, dropped
