"""The countermeasure (CM): waveform → front end → a zoo backbone → one bona fide logit.

Two front ends, by ``features.kind``: ``lfcc`` (below; with the LCNN backbone) and ``raw``
(:class:`RawWave`: the waveform itself, optionally scaled to unit RMS per utterance, for a
backbone that learns its own filters, e.g. the RawNet2 of :mod:`speakerops.models.rawnet`).

LFCC (the ASVspoof 2019 baseline front end): power spectrum (``n_fft``, Hann ``win_ms`` /
``hop_ms``) → ``n_filters`` linear-frequency triangular filters in [``f_min``, ``f_max``] →
dB → DCT-II (orthonormal) → ``n_lfcc`` coefficients, with Δ and ΔΔ (``deltas``: 3 × n_lfcc
features); ``torchaudio.transforms.LFCC`` and ``torchaudio.functional.compute_deltas``.

The score is the logit of P(bona fide): higher = more likely bona fide (the convention of
:mod:`speakerops.eval.spoof_metrics`). The file is an encoder file
(:mod:`speakerops.models.encoder_file`: safetensors + JSON, sha256-checked, no pickle) with
``features.kind`` (``lfcc`` or ``raw``) and ``extras.task = "countermeasure"``.

The operating point travels in the file, as the speaker model's calibration does:
``extras.operating_point = {"threshold", "rule", ...}`` (written by `speakerops spoof evaluate`
with the policy's rule on the CM calibration split, :func:`speakerops.eval.spoof_metrics.cm_threshold`).
:meth:`Countermeasure.assess` decides on it: spoof-suspected iff score < threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio
from torch import nn

from speakerops.models import encoder_file
from speakerops.models.cm_decision import CountermeasureDecision
from speakerops.models.encoder_file import EncoderFile
from speakerops.models.zoo import arch_of, build_backbone, model_spec

TASK = "countermeasure"
FILENAME = f"countermeasure{encoder_file.SUFFIX}"
LFCC_KEYS = (
    "sample_rate",
    "n_fft",
    "win_ms",
    "hop_ms",
    "n_filters",
    "n_lfcc",
    "f_min",
    "f_max",
    "deltas",
)
RAW_KEYS = ("sample_rate", "rms_normalize")


class LFCC(nn.Module):
    """Waveforms ``[B, N]`` (or ``[N]``) → LFCC features ``[B, T, n_features]``."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        missing = [k for k in LFCC_KEYS if k not in config]
        if missing:
            raise ValueError(f"countermeasure features: missing {missing}")
        self.config = {k: config[k] for k in LFCC_KEYS}
        c = self.config
        sr = int(c["sample_rate"])
        self.win = int(round(float(c["win_ms"]) * sr / 1000))
        self.hop = int(round(float(c["hop_ms"]) * sr / 1000))
        self.lfcc = torchaudio.transforms.LFCC(
            sample_rate=sr,
            n_filter=int(c["n_filters"]),
            f_min=float(c["f_min"]),
            f_max=float(c["f_max"]),
            n_lfcc=int(c["n_lfcc"]),
            speckwargs={
                "n_fft": int(c["n_fft"]),
                "win_length": self.win,
                "hop_length": self.hop,
                "center": False,
            },  # fmt: skip
        )
        self.n_features = int(c["n_lfcc"]) * (3 if c["deltas"] else 1)

    spectral = True  # SpecAugment applies to its output

    def min_samples(self, frames: int) -> int:
        """Samples for ``frames`` frames (uncentred STFT: each frame spans ``n_fft``)."""
        return int(self.config["n_fft"]) + (frames - 1) * self.hop

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.ndim == 1:
            wav = wav.unsqueeze(0)
        x = self.lfcc(wav.float())  # [B, n_lfcc, T]
        if self.config["deltas"]:
            d1 = torchaudio.functional.compute_deltas(x)
            x = torch.cat([x, d1, torchaudio.functional.compute_deltas(d1)], dim=1)
        return x.transpose(1, 2)


class RawWave(nn.Module):
    """Waveforms ``[B, N]`` (or ``[N]``) → ``[B, N]``; with ``rms_normalize`` each row is
    scaled to unit RMS (the level of a recording says nothing about whether it is spoofed, and
    a backbone should not learn it as a cue)."""

    spectral = False

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        missing = [k for k in RAW_KEYS if k not in config]
        if missing:
            raise ValueError(f"countermeasure features (kind raw): missing {missing}")
        self.config = {k: config[k] for k in RAW_KEYS}
        self.n_features = 1

    def min_samples(self, frames: int) -> int:
        return frames  # one frame = one sample

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.ndim == 1:
            wav = wav.unsqueeze(0)
        wav = wav.float()
        if self.config["rms_normalize"]:
            wav = wav / wav.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-5)
        return wav


FRONTS: dict[str, type[nn.Module]] = {"lfcc": LFCC, "raw": RawWave}


def build_front(features: Mapping[str, Any]) -> nn.Module:
    """The front end named by ``features.kind`` (``lfcc`` when absent: files before ``raw``)."""
    kind = features.get("kind", "lfcc")
    if kind not in FRONTS:
        raise ValueError(f"countermeasure features.kind={kind!r}: expected one of {sorted(FRONTS)}")
    return FRONTS[kind](features)


class Countermeasure(CountermeasureDecision, nn.Module):
    """Front end (LFCC or raw) → backbone → linear → bona fide logit ``[B]``."""

    filename = FILENAME  # what `spoof evaluate` names the file it writes

    def __init__(
        self, backbone: nn.Module, features: Mapping[str, Any], model_cfg: Mapping[str, Any]
    ) -> None:
        super().__init__()
        self.front = build_front(features)
        self.kind = str(features.get("kind", "lfcc"))
        if getattr(backbone, "n_mels", self.front.n_features) != self.front.n_features:
            raise ValueError(
                f"countermeasure: model n_mels={backbone.n_mels} but the {self.kind.upper()} "
                f"front end gives {self.front.n_features} features"
            )
        if int(getattr(backbone, "sample_rate", self.sample_rate)) != self.sample_rate:
            raise ValueError(
                f"countermeasure: model sample_rate={backbone.sample_rate} but features "
                f"sample_rate={self.sample_rate}"
            )
        self.net = nn.ModuleDict(
            {"backbone": backbone, "head": nn.Linear(backbone.embedding_dim, 1)}
        )
        self.model_cfg = dict(model_cfg)
        self.extras: dict[str, Any] = {}

    @classmethod
    def build(cls, model_cfg: Mapping[str, Any], features: Mapping[str, Any]) -> Countermeasure:
        arch, kwargs = model_spec(model_cfg)
        return cls(build_backbone({"arch": arch, **kwargs}), features, {"arch": arch, **kwargs})

    @property
    def sample_rate(self) -> int:
        return int(self.front.config["sample_rate"])

    @property
    def min_samples(self) -> int:
        return self.front.min_samples(int(getattr(self.net["backbone"], "MIN_FRAMES", 1)))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.net["head"](self.net["backbone"](self.front(wav))).squeeze(-1)

    @torch.no_grad()
    def score(self, wav: np.ndarray | torch.Tensor) -> float:
        """The bona fide logit of one waveform at ``sample_rate`` (eval mode)."""
        x = torch.as_tensor(wav, dtype=torch.float32).flatten()
        if x.numel() < self.min_samples:
            raise ValueError(
                f"countermeasure: {x.numel()} samples, need >= {self.min_samples} "
                f"({self.min_samples / self.sample_rate:.2f} s)"
            )
        was = self.training
        self.eval()
        try:
            return float(self(x[None]).item())
        finally:
            self.train(was)

    def to_file(self) -> EncoderFile:
        arch, kwargs = model_spec(self.model_cfg)
        if arch_of(self.net["backbone"]) != arch:
            raise ValueError(f"countermeasure: backbone is not a {arch}")
        return EncoderFile(
            arch,
            kwargs,
            {"kind": self.kind, **self.front.config},
            dict(self.net.state_dict()),
            {**self.extras, "task": TASK},
        )

    def save(self, path: str | Path) -> Path:
        encoder_file.write(path, self.to_file())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, sha256: str | None = None) -> CountermeasureDecision:
        """A countermeasure file, or a fused one (``.json``: :mod:`speakerops.models.cm_fusion`,
        the same API), checked against ``sha256`` (default: its sidecar)."""
        from speakerops.models.cm_fusion import FusedCountermeasure, is_fused

        if is_fused(path):
            return FusedCountermeasure.load(path, sha256)
        content = encoder_file.read(path, sha256)
        if content.extras.get("task") != TASK or content.features.get("kind") not in FRONTS:
            raise ValueError(
                f"{path}: not a countermeasure file (task {content.extras.get('task')!r})"
            )
        cm = cls.build(content.model_cfg, content.features)
        try:
            cm.net.load_state_dict(content.state_dict)
        except RuntimeError as exc:
            raise ValueError(f"{path}: weights do not fit {content.arch}: {exc}") from None
        cm.extras = {k: v for k, v in content.extras.items() if k != "task"}
        return cm.eval()
