"""Importers: pretrained encoders from other toolkits into the speakerops encoder file.

`speakerops models import source=<name> output=<file.safetensors> [path=<source file/folder>]`
composes `conf/` with the source's model and front end (`SOURCES[name].overrides`), maps the
source's state dict onto speakerops' own backbone, and writes an ordinary encoder file, so
`embed`, `evaluate`, `register`, `promote` and `drift` take it unchanged. The file's
`extras["source"]` records where it came from: the source, the source file and its sha256, the
licence (and the package version when the file came inside one); `register` copies them into
the version's lineage tags (`source_tags`).

Source files are data: the only reader of a torch pickle is `torch.load(weights_only=True)`
(`speakerops.models.legacy.read_checkpoint`); a YAML file is read with a safe loader and
nothing in it is instantiated. Nothing is downloaded.

    resemblyzer   GE2E from the installed resemblyzer wheel (`resemblyzer/pretrained.pt`)
    speechbrain   ECAPA-TDNN from a SpeechBrain pretrained folder (`path=`: `hyperparams.yaml`
                  + `embedding_model.ckpt`; `licence=` unless its README.md card names one)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speakerops.models.encoder import SpeakerEncoder
from speakerops.models.importers import from_resemblyzer, from_speechbrain

SOURCE_KEY = "source"  # the encoder file's extras key


@dataclass(frozen=True)
class Source:
    """An import source: the `conf/` overrides that describe its model, and its converter
    `(path or None, composed model config, features config, licence or None) -> SpeakerEncoder`;
    a packaged source (no path) takes its licence from its package's metadata."""

    overrides: tuple[str, ...]
    convert: Callable[[Path | None, dict[str, Any], dict[str, Any], str | None], SpeakerEncoder]
    needs_path: bool


def sources() -> dict[str, Source]:
    return {
        "resemblyzer": Source(from_resemblyzer.OVERRIDES, from_resemblyzer.convert, False),
        "speechbrain": Source(from_speechbrain.OVERRIDES, from_speechbrain.convert, True),
    }


def source_of(name: str) -> Source:
    known = sources()
    if name not in known:
        raise ValueError(f"source={name!r}: unknown import source (known: {', '.join(known)})")
    return known[name]


def import_encoder(
    name: str,
    output: str | Path,
    model_cfg: Mapping[str, Any],
    features_cfg: Mapping[str, Any],
    path: str | Path | None = None,
    licence: str | None = None,
) -> dict[str, Any]:
    """Convert source `name` into the encoder file `output` (+ sidecar); returns a summary."""
    src = source_of(name)
    output = Path(output)
    if output.suffix != ".safetensors":
        raise ValueError(f"output={output}: an encoder file is named *.safetensors")
    if src.needs_path and not path:
        raise ValueError(f"source={name}: path=<the source's folder or file> is required")
    if not src.needs_path and (path or licence):
        raise ValueError(
            f"source={name}: takes no path= or licence= (the weights and their licence come "
            "from its package)"
        )
    encoder = src.convert(
        Path(path) if path else None, dict(model_cfg), dict(features_cfg), licence
    )
    encoder.save(output)
    return {
        "imported": name,
        "to": str(output),
        "arch": encoder.model_cfg["arch"],
        "embedding_dim": encoder.embedding_dim,
        "parameters": sum(p.numel() for p in encoder.backbone.parameters()),
        **{f"source_{k}": v for k, v in encoder.extras[SOURCE_KEY].items()},
    }


def source_tags(extras: Mapping[str, Any]) -> dict[str, str]:
    """Lineage tags of an imported encoder (`source`, `source_sha256`, `source_licence`, ...);
    empty for a model trained here."""
    info = extras.get(SOURCE_KEY)
    if not isinstance(info, Mapping):
        return {}
    return {("source" if k == "name" else f"source_{k}"): str(v) for k, v in sorted(info.items())}
