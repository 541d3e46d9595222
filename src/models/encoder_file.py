"""The encoder file: data, never code. A safetensors container, one file, checked by sha256.

    encoder.safetensors
      tensors   backbone.<name>      the backbone's state_dict
                extras.<key path>    every array or bytes value in `extras` (e.g.
                                     `extras.scoring.cohort_enc`, the AS-norm cohort,
                                     AES-256-GCM encrypted: `speakerops.eval.sealed`),
                                     stored apart from the JSON
      metadata  format = "speakerops-encoder/2"
                speakerops = JSON {"arch", "kwargs", "features", "extras"}; an array in
                `extras` appears there as {"$tensor": "extras.<key path>"}, `bytes` as
                {"$bytes": "extras.<key path>"} (a uint8 tensor)
    encoder.safetensors.sha256       sidecar: "<hex digest>  encoder.safetensors"

`arch` is a name from speakerops' own backbone registry (`speakerops.models.zoo`); nothing in
the file is an import path, nothing is unpickled. Every read checks the file's sha256 against
an expected value (the caller's, e.g. a registry version tag, or the sidecar) before parsing;
a mismatch, a truncated or corrupt file is refused with an error naming the file and both
hashes. Pickled `.pt` files of the old format are refused here; `speakerops models convert`
(`speakerops.models.legacy`) turns them into this format.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from speakerops.core.jsonio import sha256_bytes

FORMAT = "speakerops-encoder/2"
SUFFIX = ".safetensors"
FILENAME = f"encoder{SUFFIX}"
BACKBONE, EXTRAS = "backbone.", "extras."
_MAX_HEADER = 100_000_000  # safetensors' own header limit


class IntegrityError(ValueError):
    """A model file whose bytes are not the ones expected (hash mismatch, truncation)."""


@dataclass
class EncoderFile:
    """What an encoder file holds, in memory."""

    arch: str
    kwargs: dict[str, Any]
    features: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def model_cfg(self) -> dict[str, Any]:
        return {"arch": self.arch, **self.kwargs}


def sidecar(path: str | Path) -> Path:
    """The file holding `path`'s expected sha256 (`<path>.sha256`, sha256sum's layout)."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def write(path: str | Path, content: EncoderFile) -> str:
    """Write the file and its sidecar (atomically: temp file + rename); returns the sha256."""
    path = Path(path)
    if path.suffix != SUFFIX:
        raise ValueError(f"{path}: an encoder file is named *{SUFFIX}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {BACKBONE + k: v.detach().cpu().contiguous() for k, v in content.state_dict.items()}
    extras = _pack(content.extras, EXTRAS.rstrip("."), tensors)
    meta = {
        "arch": content.arch,
        "kwargs": content.kwargs,
        "features": content.features,
        "extras": extras,
    }
    data = save_tensors(
        tensors, metadata={"format": FORMAT, "speakerops": json.dumps(meta, sort_keys=True)}
    )
    digest = sha256_bytes(data)
    _atomic_write(path, data)
    _atomic_write(sidecar(path), f"{digest}  {path.name}\n".encode())
    return digest


def read(path: str | Path, sha256: str | None = None) -> EncoderFile:
    """Read an encoder file, refusing it unless its sha256 is `sha256` (default: the sidecar's).

    Raises FileNotFoundError, or ValueError (IntegrityError for a hash mismatch) naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: encoder file not found")
    data = path.read_bytes()
    if is_pickle(data):
        raise ValueError(
            f"{path}: not a speakerops encoder file ({FORMAT}) but a pickle, which is never "
            "loaded; an old-format encoder.pt is converted once with "
            f"`speakerops models convert {path} <new>{SUFFIX}`"
        )
    check_bytes(path, data, sha256)
    return parse(data, str(path))


def check_bytes(path: str | Path, data: bytes, sha256: str | None = None) -> None:
    """Refuse (IntegrityError naming the file) the bytes read from `path` unless their sha256
    is `sha256` (default: the one `path`'s sidecar records); every model file's one check."""
    expected, source = _expected(Path(path), sha256)
    actual = sha256_bytes(data)
    if actual != expected:
        raise IntegrityError(
            f"{path}: sha256 {actual} does not match the expected {expected} ({source}); "
            "the file is corrupt, truncated or was changed: refused"
        )


def parse(data: bytes, name: str) -> EncoderFile:
    """An `EncoderFile` from the bytes of a safetensors encoder file (already hash-checked)."""
    meta = _header_metadata(data, name)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{name}: not a speakerops encoder (expected format {FORMAT})")
    try:
        info = json.loads(meta["speakerops"])
        tensors = load_tensors(data)
        arch, kwargs, features = info["arch"], info["kwargs"], info["features"]
    except (KeyError, TypeError, json.JSONDecodeError, SafetensorError) as exc:
        raise ValueError(f"{name}: corrupt encoder file ({type(exc).__name__}: {exc})") from None
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{name}: tensor {key} holds NaN or Inf values: refused")
    state = {k[len(BACKBONE) :]: v for k, v in tensors.items() if k.startswith(BACKBONE)}
    extras = _unpack(info.get("extras") or {}, tensors, name)
    return EncoderFile(str(arch), dict(kwargs), dict(features), state, extras)


def weights_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a backbone's weights (each tensor's name, dtype, shape and bytes, names
    sorted): what names one model's weights whatever else its file carries; the AS-norm cohort
    is bound to it (`speakerops.eval.sealed`)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def is_pickle(data: bytes) -> bool:
    """`torch.save` output (a zip archive) or a raw pickle stream, and not safetensors-shaped
    (8-byte header length, then a JSON object: its first byte can be 0x80 too)."""
    if len(data) > 8 and data[8:9] == b"{":
        (size,) = struct.unpack("<Q", data[:8])
        if size <= len(data) - 8:
            return False
    return data[:4] == b"PK\x03\x04" or data[:1] == b"\x80"


def expected_sha256(path: str | Path) -> str:
    """The sha256 `path`'s sidecar records (IntegrityError when it is missing or malformed)."""
    return _expected(Path(path), None)[0]


def _expected(path: Path, sha256: str | None) -> tuple[str, str]:
    if sha256:
        return sha256.strip().lower(), "the expected hash given for it"
    side = sidecar(path)
    if not side.is_file():
        raise IntegrityError(
            f"{path}: no expected sha256 (sidecar {side} is missing); refusing an unchecked "
            "model file"
        )
    text = side.read_text().split()
    if not text or len(text[0]) != 64:
        raise IntegrityError(f"{side}: not a sha256 sidecar (expected '<64 hex digits>  name')")
    return text[0].lower(), f"sidecar {side}"


def _header_metadata(data: bytes, name: str) -> dict[str, str]:
    if len(data) < 8:
        raise ValueError(f"{name}: truncated encoder file ({len(data)} bytes)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(_MAX_HEADER, len(data) - 8):
        raise ValueError(f"{name}: truncated or corrupt encoder file (header of {size} bytes)")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{name}: corrupt encoder file header ({exc})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def _pack(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able copy of `value`; arrays and bytes go into `tensors` under `key`."""
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"encoder extras: key {k!r} at {key} must be a str")
            out[k] = _pack(v, f"{key}.{k}", tensors)
        return out
    if isinstance(value, (list, tuple)):
        return [_pack(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, (bytes, bytearray, np.ndarray, torch.Tensor)) and key in tensors:
        raise ValueError(f"encoder extras: two arrays would both be stored as {key}")
    if isinstance(value, (bytes, bytearray)):
        tensors[key] = torch.frombuffer(bytearray(value), dtype=torch.uint8).clone()
        return {"$bytes": key}
    if isinstance(value, (np.ndarray, torch.Tensor)):
        arr = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.array(value))
        tensors[key] = arr.detach().cpu().contiguous()
        return {"$tensor": key}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ValueError(f"encoder extras: {key} holds a {type(value).__name__}, not JSON data")


def _unpack(value: Any, tensors: Mapping[str, torch.Tensor], name: str) -> Any:
    if isinstance(value, dict):
        ref = value.get("$tensor", value.get("$bytes"))
        if len(value) == 1 and isinstance(ref, str):
            if ref not in tensors:
                raise ValueError(f"{name}: extras refer to a missing tensor {ref}")
            if "$bytes" in value:
                return tensors[ref].numpy().tobytes()
            return tensors[ref].numpy()
        return {k: _unpack(v, tensors, name) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v, tensors, name) for v in value]
    return value


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
