"""Export an encoder as ONNX or TorchScript: waveform in, embedding out, front end inside.

The exported graph is the encoder's own forward pass without its Python-side input checks:
``wav`` float32 ``[batch, samples]`` (mono, full scale 1, at the model's sample rate) ->
the log Mel front end (STFT, Mel filterbank, log, mean normalization) -> the backbone ->
``embedding`` float32 ``[batch, dim]``. The utterance length is dynamic (at least
``min_samples``). What a runtime needs to use the output travels in the file's metadata
(ONNX ``metadata_props``; TorchScript an extra file ``speakerops.json``): sample rate, front-end
settings, architecture, calibration, operating point, the source encoder's sha256 and
:data:`EXPORT_VERSION` (the metadata's own format).

ONNX goes through ``torch.onnx.export(dynamo=True)`` (``torch.export`` + onnxscript); TorchScript
through ``torch.jit.trace``, checked at a second length so a length baked into the trace is
caught. A model whose forward pass depends on the utterance length in Python (windowed
inference: GE2E's 1.6 s windows) cannot be exported with a dynamic length:
:class:`ExportError` says so before anything is written.

A TorchScript file is a program (loaded with ``torch.jit.load``); load only files you made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speakerops.core.jsonio import sha256_file
from speakerops.models.encoder import SpeakerEncoder

EXPORT_VERSION = "1"  # the exported file's metadata format
FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
TORCHSCRIPT_META = "speakerops.json"
OPSET = 18


class ExportError(ValueError):
    """The model cannot be exported in this format; the message says why."""


class ExportGraph(nn.Module):
    """What is exported: front end + backbone (the encoder's forward without its checks)."""

    def __init__(self, encoder: SpeakerEncoder) -> None:
        super().__init__()
        self.fbank = encoder.fbank
        self.backbone = encoder.backbone

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.fbank(wav))


def metadata(encoder: SpeakerEncoder, source_sha256: str | None = None) -> dict[str, str]:
    """String key -> value: what travels inside the exported file."""
    extras = encoder.extras
    meta: dict[str, Any] = {
        "speakerops.export_version": EXPORT_VERSION,
        "sample_rate": encoder.sample_rate,
        "min_samples": encoder.min_samples,
        "embedding_dim": encoder.embedding_dim,
        "input": "wav: float32 [batch, samples], mono, full scale 1, at sample_rate",
        "output": "embedding: float32 [batch, embedding_dim] (score: cosine, then calibration)",
        "features": json.dumps(encoder.fbank.config.to_dict(), sort_keys=True),
        "model": json.dumps(encoder.model_cfg, sort_keys=True),
        "calibration": json.dumps(extras.get("calibration"), sort_keys=True),
        "operating_point": json.dumps(extras.get("operating_point"), sort_keys=True),
        "encoder_sha256": source_sha256 or "",
    }
    return {k: str(v) for k, v in meta.items()}


def check_exportable(encoder: SpeakerEncoder) -> None:
    if getattr(encoder, "window", None) is not None:
        raise ExportError(
            f"model {encoder.model_cfg.get('arch')}: windowed inference (model.window: the "
            "embedding is the mean over a number of windows that depends on the utterance "
            "length, a Python loop) has no fixed graph for a dynamic length; serve it through "
            "the pyfunc or export it per window length"
        )


def _example(encoder: SpeakerEncoder, seconds: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    n = max(int(seconds * encoder.sample_rate), encoder.min_samples)
    return 0.1 * torch.randn(1, n, generator=gen)


def export_onnx(encoder: SpeakerEncoder, path: Path, meta: dict[str, str]) -> None:
    import onnx  # heavy; only the export needs it

    graph = ExportGraph(encoder).eval()
    samples = torch.export.Dim("samples", min=encoder.min_samples, max=encoder.sample_rate * 3600)
    try:
        program = torch.onnx.export(
            graph,
            (_example(encoder, 2.0),),
            dynamo=True,
            input_names=["wav"],
            output_names=["embedding"],
            dynamic_shapes={"wav": {1: samples}},
            opset_version=OPSET,
            optimize=True,
            verbose=False,
        )
    except Exception as exc:  # torch.export / onnxscript say what did not translate
        raise ExportError(
            f"model {encoder.model_cfg.get('arch')}: ONNX export failed: {exc}"
        ) from None
    model = program.model_proto
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def export_torchscript(encoder: SpeakerEncoder, path: Path, meta: dict[str, str]) -> None:
    graph = ExportGraph(encoder).eval()
    example, other = _example(encoder, 2.0), _example(encoder, 3.3)
    with torch.no_grad():
        try:
            traced = torch.jit.trace(graph, (example,), check_inputs=[(other,)], strict=True)
        except Exception as exc:  # includes the trace check at a second length
            raise ExportError(
                f"model {encoder.model_cfg.get('arch')}: TorchScript trace failed or depends on "
                f"the input length: {str(exc).splitlines()[0]}"
            ) from None
    torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_META: json.dumps(meta)})


def export_encoder(
    encoder: SpeakerEncoder, fmt: str, output: str | Path, source_sha256: str | None = None
) -> dict[str, Any]:
    """Write `output` in `fmt` (onnx | torchscript) and its `.sha256` sidecar; returns
    {format, path, sha256, metadata}."""
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r}: expected one of {', '.join(FORMATS)}")
    check_exportable(encoder)
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = metadata(encoder.eval(), source_sha256)
    (export_onnx if fmt == "onnx" else export_torchscript)(encoder, path, meta)
    sha = sha256_file(path)
    Path(f"{path}.sha256").write_text(f"{sha}  {path.name}\n")
    return {"format": fmt, "path": str(path), "sha256": sha, "metadata": meta}
