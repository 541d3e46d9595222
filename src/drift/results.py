"""What a drift check returns: one :class:`CheckResult` per test, the :class:`DriftResult`
of a window, and :class:`DriftRefusal` for a window that must not be compared."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd


class DriftRefusal(ValueError):
    """The window cannot be compared with the reference (the message says why)."""


@dataclass
class CheckResult:
    """One drift test: its statistic, threshold and verdict (or why it was skipped)."""

    name: str
    kind: str  # embedding | metadata | score
    method: str
    score: float | None
    threshold: float | None
    drifted: bool
    n_current: int
    n_reference: int
    skipped: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        if self.skipped:
            return f"{self.name}: skipped ({self.skipped})"
        verdict = "DRIFT" if self.drifted else "ok"
        return (
            f"{self.name}: {verdict} ({self.method} = {self.score:.4g}, threshold {self.threshold:g}, "
            f"n = {self.n_current} vs {self.n_reference})"
        )


@dataclass
class DriftResult:
    """The verdict and every check; ``current``/``reference`` are the prepared frames
    (metadata, score columns, embedding columns, speaker group) the report draws from."""

    drifted: bool
    checks: list[CheckResult]
    model_name: str | None
    model_version: str | None
    n_current: int
    n_reference: int
    dim: int
    warnings: list[str]
    decision_basis: dict[str, Any]
    current: pd.DataFrame = field(repr=False)
    reference: pd.DataFrame = field(repr=False)
    emb_columns: list[str] = field(repr=False)

    @property
    def fired(self) -> list[str]:
        return [c.name for c in self.checks if c.drifted and not c.skipped]

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "fired": self.fired,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "n_current": self.n_current,
            "n_reference": self.n_reference,
            "embedding_dim": self.dim,
            "checks": [asdict(c) for c in self.checks],
            "warnings": list(self.warnings),
            "decision_basis": self.decision_basis,
        }
