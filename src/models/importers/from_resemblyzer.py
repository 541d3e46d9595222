"""GE2E from the installed resemblyzer wheel (0.1.4): `resemblyzer/pretrained.pt`.

The file is a torch pickle `{"step", "model_state", "optimizer_state"}`, read with
`torch.load(weights_only=True)`. `model_state` holds the LSTM (`lstm.*`) and the projection
(`linear.*`), named as in `speakerops.models.ge2e.GE2E`, plus the GE2E loss's similarity scale
and bias (`similarity_weight`, `similarity_bias`: training only, not part of the encoder, left
out and listed). The package is located without importing it (its import loads librosa).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

from speakerops.core.jsonio import sha256_file
from speakerops.models.encoder import SpeakerEncoder
from speakerops.models.features import FeatureConfig
from speakerops.models.legacy import read_checkpoint
from speakerops.models.zoo import build_backbone

PACKAGE = "resemblyzer"
WEIGHTS = "pretrained.pt"
OVERRIDES = ("model=ge2e", "features=mel40_power")
TRAINING_ONLY = ("similarity_weight", "similarity_bias")
# the wheel's licence (its LICENSE file is the Apache License 2.0; classifier "License :: OSI
# Approved :: Apache Software License"; its METADATA's License field says UNKNOWN)
LICENCE = {"Apache Software License": "Apache-2.0"}


def weights_file() -> Path:
    """`pretrained.pt` inside the installed resemblyzer package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "source=resemblyzer: the resemblyzer package is not installed (`bash "
            "scripts/install.sh` installs it: the [pretrained] extra + resemblyzer --no-deps)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the resemblyzer package has no {WEIGHTS}")
    return path


def licence() -> str:
    meta = importlib.metadata.metadata(PACKAGE)
    for classifier in meta.get_all("Classifier") or []:
        name = classifier.rsplit("::", 1)[-1].strip()
        if classifier.startswith("License ::") and name in LICENCE:
            return LICENCE[name]
    raise ValueError(f"{PACKAGE} {meta['Version']}: no known licence in its metadata: refused")


def convert(
    path: Path | None, model_cfg: dict[str, Any], features: dict[str, Any], licence_: str | None
) -> SpeakerEncoder:
    """The GE2E encoder of the installed wheel (`path` and `licence_` are None: both come from
    the package)."""
    source = weights_file()
    blob = read_checkpoint(source)
    state = blob.get("model_state") if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{source}: no model_state (not a resemblyzer checkpoint)")
    backbone = build_backbone(model_cfg)
    wanted = set(backbone.state_dict())
    unknown = sorted(set(state) - wanted - set(TRAINING_ONLY))
    missing = sorted(wanted - set(state))
    if unknown or missing:
        raise ValueError(
            f"{source}: does not map onto {model_cfg['arch']}: unknown {unknown}, missing {missing}"
        )
    try:
        backbone.load_state_dict({k: state[k] for k in wanted})
    except RuntimeError as exc:
        raise ValueError(f"{source}: weights do not fit {model_cfg}: {exc}") from None
    extras = {
        "source": {
            "name": PACKAGE,
            "package": f"{PACKAGE} {importlib.metadata.version(PACKAGE)}",
            "file": f"{PACKAGE}/{WEIGHTS}",
            "sha256": sha256_file(source),
            "licence": licence(),
            "training_step": int(blob.get("step", -1)),
            "left_out": ", ".join(k for k in TRAINING_ONLY if k in state),
        }
    }
    return SpeakerEncoder(backbone, FeatureConfig(**features), model_cfg, extras).eval()
