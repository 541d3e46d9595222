"""ECAPA-TDNN from a SpeechBrain pretrained folder: `hyperparams.yaml` + `embedding_model.ckpt`.

The layout of SpeechBrain's pretrained speaker models (e.g. `spkrec-ecapa-voxceleb`):
`hyperparams.yaml` describes `compute_features` (`speechbrain.lobes.features.Fbank`),
`mean_var_norm` (`InputNormalization`, sentence mean) and `embedding_model`
(`speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN`); `embedding_model.ckpt` is that model's
`state_dict` written by `torch.save`. The YAML is read as data: SpeechBrain's tags (`!new:`,
`!name:`, `!ref <key>`) are parsed, never instantiated; a class or an argument this importer does
not reproduce exactly is refused with its key. The checkpoint is read with
`torch.load(weights_only=True)`. `mean_var_norm_emb` and the classifier are not part of the
embedding (SpeechBrain's `encode_batch` without `normalize=True`) and are not imported.

The licence: `licence=<SPDX id>` given to the import, else the `license:` of the folder's
`README.md` front matter (a Hugging Face model card); without either the import is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from speakerops.core.jsonio import sha256_file
from speakerops.models.encoder import SpeakerEncoder
from speakerops.models.features import FeatureConfig
from speakerops.models.legacy import read_checkpoint
from speakerops.models.zoo import build_backbone

OVERRIDES = ("model=ecapa_speechbrain", "features=sb_fbank80")
HYPERPARAMS, CHECKPOINT, README = "hyperparams.yaml", "embedding_model.ckpt", "README.md"
FBANK = "speechbrain.lobes.features.Fbank"
NORM = "speechbrain.processing.features.InputNormalization"
ECAPA = "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
# SpeechBrain argument -> speakerops key: (config, key); None: accepted only at its default
FBANK_ARGS = {
    "n_mels": ("features", "n_mels"),
    "sample_rate": ("features", "sample_rate"),
    "f_min": ("features", "f_min"),
    "f_max": ("features", "f_max"),
    "win_length": ("features", "win_ms"),
    "hop_length": ("features", "hop_ms"),
}
FBANK_FIXED = {"deltas": False, "context": False, "requires_grad": False, "n_fft": None,
               "filter_shape": "triangular", "param_change_factor": 1.0,
               "param_rand_factor": 0.0}  # fmt: skip
ECAPA_ARGS = {
    "input_size": "n_mels",
    "channels": "layer_channels",
    "kernel_sizes": "kernel_sizes",
    "dilations": "dilations",
    "attention_channels": "attention_channels",
    "res2net_scale": "res2net_scale",
    "se_channels": "se_channels",
    "global_context": "global_context",
    "groups": "groups",
    "lin_neurons": "embedding_dim",
}
ECAPA_FIXED = {"device": None, "dropout": 0.0, "activation": "speechbrain-tag:!name:torch.nn.ReLU"}


class _Tag(dict):
    """A SpeechBrain-tagged YAML node, kept as data: `tag` plus its arguments."""

    def __init__(self, tag: str, args: Any) -> None:
        super().__init__(args if isinstance(args, dict) else {})
        self.tag = tag
        self.value = args


class _Loader(yaml.SafeLoader):
    """The safe loader, with every `!...` tag kept as a `_Tag` (nothing is constructed)."""


def _tagged(loader: _Loader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        value: Any = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return _Tag("!" + suffix, value)


_Loader.add_multi_constructor("!", _tagged)


def read_hyperparams(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: not readable YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top")
    return data


def _resolve(value: Any, top: Mapping[str, Any], where: str, depth: int = 0) -> Any:
    """Plain values of a node: `!ref <key>` of a top-level key is followed, any other tag kept
    as the string `speechbrain-tag:<tag>:<value>` (so a comparison names it)."""
    if isinstance(value, _Tag):
        match = re.fullmatch(r"<([A-Za-z_][\w]*)>", str(value.value).strip())
        if value.tag == "!ref" and match and depth < 10:
            key = match.group(1)
            if key not in top:
                raise ValueError(f"{where}: !ref <{key}> names no top-level key")
            return _resolve(top[key], top, where, depth + 1)
        if value.tag.startswith("!new:"):
            return value
        return f"speechbrain-tag:{value.tag}:{value.value}".rstrip(":")
    if isinstance(value, list):
        return [_resolve(v, top, where, depth) for v in value]
    return value


def _node(top: Mapping[str, Any], key: str, cls: str, where: Path) -> dict[str, Any]:
    node = top.get(key)
    if not isinstance(node, _Tag) or node.tag != f"!new:{cls}":
        got = node.tag if isinstance(node, _Tag) else type(node).__name__
        raise ValueError(f"{where}: {key} must be `!new:{cls}`, found {got}: refused")
    return {k: _resolve(v, top, f"{where}: {key}.{k}") for k, v in node.items()}


def convert(
    path: Path | None,
    model_cfg: dict[str, Any],
    features: dict[str, Any],
    licence: str | None = None,
) -> SpeakerEncoder:
    """The ECAPA-TDNN of a SpeechBrain pretrained folder `path`."""
    if path is None or not path.is_dir():
        raise FileNotFoundError(f"source=speechbrain: path={path} is not a folder")
    hparams_file, ckpt_file = path / HYPERPARAMS, path / CHECKPOINT
    for required in (hparams_file, ckpt_file):
        if not required.is_file():
            raise FileNotFoundError(f"{required}: missing (a SpeechBrain pretrained folder)")
    top = read_hyperparams(hparams_file)
    fbank = _node(top, "compute_features", FBANK, hparams_file)
    norm = _node(top, "mean_var_norm", NORM, hparams_file)
    ecapa = _node(top, "embedding_model", ECAPA, hparams_file)
    features, model_cfg = dict(features), dict(model_cfg)
    for key, value in fbank.items():
        if key in FBANK_ARGS:
            features[FBANK_ARGS[key][1]] = value
        elif key not in FBANK_FIXED or (FBANK_FIXED[key] is not None and value != FBANK_FIXED[key]):
            raise ValueError(f"{hparams_file}: compute_features.{key}={value!r} is not supported")
    win = round(features["sample_rate"] * features["win_ms"] / 1000)
    if fbank.get("n_fft", win) != win:
        raise ValueError(
            f"{hparams_file}: compute_features.n_fft={fbank['n_fft']} must equal the window "
            f"({win} samples)"
        )
    if "f_max" not in fbank:
        features["f_max"] = float(features["sample_rate"] // 2)
    if norm.get("norm_type", "global") != "sentence" or norm.get("std_norm", True) is not False:
        raise ValueError(
            f"{hparams_file}: mean_var_norm must be norm_type: sentence, std_norm: False "
            f"(found {norm}): refused"
        )
    for key, value in ecapa.items():
        if key in ECAPA_ARGS:
            model_cfg[ECAPA_ARGS[key]] = value
        elif key not in ECAPA_FIXED or (ECAPA_FIXED[key] is not None and value != ECAPA_FIXED[key]):
            raise ValueError(f"{hparams_file}: embedding_model.{key}={value!r} is not supported")
    if model_cfg["n_mels"] != features["n_mels"]:
        raise ValueError(
            f"{hparams_file}: embedding_model.input_size={model_cfg['n_mels']} but "
            f"compute_features.n_mels={features['n_mels']}"
        )
    state = read_checkpoint(ckpt_file)
    if not isinstance(state, dict):
        raise ValueError(f"{ckpt_file}: not a state dict")
    backbone = build_backbone(model_cfg)
    ours = backbone.state_dict()
    unknown, missing = sorted(set(state) - set(ours)), sorted(set(ours) - set(state))
    if unknown or missing:
        raise ValueError(f"{ckpt_file}: does not map: unknown {unknown}, missing {missing}")
    try:
        backbone.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{ckpt_file}: weights do not fit {hparams_file}: {exc}") from None
    extras = {
        "source": {
            "name": "speechbrain",
            "file": f"{path.name}/{CHECKPOINT}",
            "sha256": sha256_file(ckpt_file),
            "hyperparams_sha256": sha256_file(hparams_file),
            "licence": licence or _card_licence(path / README),
        }
    }
    return SpeakerEncoder(backbone, FeatureConfig(**features), model_cfg, extras).eval()


def _card_licence(readme: Path) -> str:
    """`license:` of a model card's YAML front matter."""
    if readme.is_file():
        text = readme.read_text(errors="replace")
        match = re.match(r"---\n(.*?)\n---", text, re.S)
        if match:
            card = yaml.safe_load(match.group(1)) or {}
            if isinstance(card, dict) and card.get("license"):
                return str(card["license"])
    raise ValueError(
        f"source=speechbrain: the licence is unknown ({readme} has no `license:`): pass "
        "licence=<SPDX id, e.g. apache-2.0> to the import"
    )
