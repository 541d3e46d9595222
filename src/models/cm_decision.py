"""What every countermeasure offers the evaluation, registry and service, whatever it is made of
(one network: :class:`speakerops.models.countermeasure.Countermeasure`; several fused:
:class:`speakerops.models.cm_fusion.FusedCountermeasure`): a bona fide score per waveform, the
operating point stored with it by ``speakerops spoof evaluate``, and the decision at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from speakerops.data.audio import load_audio


class CountermeasureDecision:
    """Mixin: ``score_file``, ``operating_point``, ``threshold`` and ``assess`` on top of a
    subclass's ``score(wav) -> float`` (higher = more bona fide), ``sample_rate`` and
    ``extras`` (the file's extras, ``operating_point`` among them once evaluated)."""

    label = "countermeasure"  # names the system in errors
    extras: dict[str, Any]
    min_samples: int
    sample_rate: int

    def score(self, wav: np.ndarray | torch.Tensor) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def score_file(self, path: str | Path) -> float:
        return self.score(load_audio(path, self.sample_rate)[0])

    @property
    def operating_point(self) -> dict[str, Any] | None:
        """``{"threshold", "rule", ...}`` stored with the CM, or None (never evaluated)."""
        op = self.extras.get("operating_point")
        return dict(op) if op is not None else None

    @property
    def threshold(self) -> float:
        op = self.operating_point
        if op is None or "threshold" not in op:
            raise ValueError(
                f"{self.label}: the file carries no operating point (extras.operating_point); "
                "run `speakerops spoof evaluate` and use the countermeasure file it writes"
            )
        return float(op["threshold"])

    def assess(self, wav: np.ndarray | torch.Tensor) -> dict[str, Any]:
        """``{score, threshold, spoof_suspected}`` of one waveform at ``sample_rate``."""
        threshold = self.threshold
        score = self.score(wav)
        return {"score": score, "threshold": threshold, "spoof_suspected": bool(score < threshold)}
