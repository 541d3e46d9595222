"""The assessment gates use: figures of one or two systems on the same trial list, with
speaker-bootstrap percentile intervals (paired for two systems).

For each system: :func:`speakerops.eval.metrics.verification_metrics`, FMR/FNMR at the
shipped LLR threshold θ, and per metadata column the bias engine's figures
(:mod:`speakerops.eval.bias`: worst group ratio, GARBE, FDR over the groups that are "ok" on
the full list) with their aggregates over the columns. Every replicate draws the same
enrollment speakers for both systems (:func:`speakerops.eval.bootstrap.speaker_resamples`
with ``settings.seed``), so the interval of first − second is a paired one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from speakerops.eval import bias as _bias
from speakerops.eval.bootstrap import percentile_interval, speaker_resamples
from speakerops.eval.metrics import bayes_threshold, verification_metrics
from speakerops.eval.trials import TrialSet

__all__ = ["Assessment", "AssessSettings", "assess"]


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class AssessSettings:
    """What an assessment computes: the `evaluate:` section of the composed config and the
    policy's operating point (:meth:`from_config`; no value here has a second default)."""

    p_targets: tuple[float, ...]
    operating_point: Mapping[str, float]
    bias_columns: tuple[str, ...]
    same_group_pairs: bool
    min_trials: int
    min_targets: int
    min_nontargets: int
    ratio_metrics: tuple[str, ...]
    garbe_alpha: float
    n_boot: int
    seed: int
    confidence: float

    @property
    def cost(self) -> tuple[float, float, float]:
        """(P_target, C_miss, C_fa) of the operating point (C_miss = C_fa = 1 unless given)."""
        op = self.operating_point
        return float(op["p_target"]), float(op.get("c_miss", 1.0)), float(op.get("c_fa", 1.0))

    @property
    def threshold(self) -> float:
        """θ = log(C_fa·(1−P) / (C_miss·P)) on LLRs."""
        op = self.operating_point
        return bayes_threshold(op["p_target"], op.get("c_miss", 1.0), op.get("c_fa", 1.0))

    @classmethod
    def from_config(
        cls, ev: Mapping | DictConfig, operating_point: Mapping[str, float] | None = None
    ) -> AssessSettings:
        """From the composed `evaluate:` section (every key required) and the policy's
        operating point (required)."""
        b = ev.get("bias") or {}
        ratios = b.get("ratio_metrics")
        if ratios is not None and (not ratios or set(ratios) - set(_bias.RATIO_METRICS)):
            raise ValueError(
                f"evaluate.bias.ratio_metrics={list(ratios)}: choose from {list(_bias.RATIO_METRICS)}"
            )
        pairing = b.get("pairing")
        if pairing is not None and pairing not in ("same_group", "test_side"):
            raise ValueError(f"evaluate.bias.pairing={pairing!r}: expected same_group or test_side")
        if operating_point is None:
            raise ValueError("an assessment needs the policy's operating_point (p_target)")
        op = dict(operating_point)
        bayes_threshold(op.get("p_target", 0.0), op.get("c_miss", 1.0), op.get("c_fa", 1.0))

        def need(section: Mapping | DictConfig, key: str, where: str) -> Any:
            if section.get(key) is None:
                raise ValueError(f"evaluate.{where}{key} is not set in the composed config")
            return section[key]

        boot = need(ev, "bootstrap", "")
        return cls(
            p_targets=tuple(float(p) for p in need(ev, "p_targets", "")),
            operating_point=op,
            bias_columns=tuple(str(c) for c in need(b, "columns", "bias.")),
            same_group_pairs=need(b, "pairing", "bias.") == "same_group",
            min_trials=int(need(b, "min_trials", "bias.")),
            min_targets=int(need(b, "min_targets", "bias.")),
            min_nontargets=int(need(b, "min_nontargets", "bias.")),
            ratio_metrics=tuple(str(r) for r in need(b, "ratio_metrics", "bias.")),
            garbe_alpha=float(need(b, "alpha", "bias.")),
            n_boot=int(need(boot, "n", "bootstrap.")),
            seed=int(need(boot, "seed", "bootstrap.")),
            confidence=float(need(boot, "confidence", "bootstrap.")),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "operating_point": dict(self.operating_point),
            "llr_threshold": self.threshold,
            "bias": {
                "columns": list(self.bias_columns),
                "pairing": "same_group" if self.same_group_pairs else "test_side",
                "min_trials": self.min_trials,
                "min_targets": self.min_targets,
                "min_nontargets": self.min_nontargets,
                "ratio_metrics": list(self.ratio_metrics),
                "alpha": self.garbe_alpha,
            },
            "bootstrap": {
                "unit": "enrollment speaker",
                "n": self.n_boot,
                "seed": self.seed,
                "confidence": self.confidence,
            },
        }


# --------------------------------------------------------------------------- results


@dataclass
class Assessment:
    """Figures of one system with intervals, and its per-group tables."""

    name: str
    figures: dict[str, dict[str, float]]  # name -> {value, low, high, n_replicates}
    bias: dict[str, dict[str, Any]]  # column -> summary (table as records) or a status
    scores: np.ndarray
    llrs: np.ndarray | None

    def values(self) -> dict[str, float]:
        return {k: v["value"] for k, v in self.figures.items()}

    def details(self) -> dict[str, str]:
        """A short note per bias figure: which group is the worst, with its figures."""
        notes: dict[str, str] = {}
        worst_cols = []
        for col, b in self.bias.items():
            if b.get("status") != "ok":
                for k in _bias.BIAS_FIGURES:
                    notes[f"bias.{col}.{k}"] = b.get("status", "")
                continue
            if b["worst_group"] is None:
                msg = f"{col}: fewer than 2 groups with enough trials"
                for k in _bias.BIAS_FIGURES:
                    notes[f"bias.{col}.{k}"] = msg
                continue
            metric = b["worst_metric"][: -len("_ratio")]
            row = next(r for r in b["table"] if r["group"] == b["worst_group"])
            o = b["overall"]
            name = "DCF at θ" if metric == "dcf" else metric.upper()
            notes[f"bias.{col}.worst_ratio"] = (
                f"worst group {col}={b['worst_group']!r}: {name} {row[metric]:.4f} vs overall "
                f"{o[metric]:.4f} (group EER {row['eer']:.4f}, FMR {row['fmr']:.4f}, FNMR "
                f"{row['fnmr']:.4f}; overall {o['eer']:.4f}, {o['fmr']:.4f}, {o['fnmr']:.4f})"
            )
            if b["n_groups_ok"] >= 2:
                fm = ", ".join(
                    f"{r['group']} {r['fmr']:.3f}/{r['fnmr']:.3f}"
                    for r in b["table"]
                    if r["status"] == _bias.STATUS_OK
                )
                notes[f"bias.{col}.garbe"] = f"{col} FMR/FNMR by group: {fm}"
                notes[f"bias.{col}.fdr"] = notes[f"bias.{col}.garbe"]
                worst_cols.append(col)
            else:
                msg = f"{col}: only {b['n_groups_ok']} group with enough trials"
                notes[f"bias.{col}.garbe"] = notes[f"bias.{col}.fdr"] = msg
        if worst_cols:
            for k, pick in (("worst_ratio", max), ("garbe", max), ("fdr", min)):
                vals = [(v, c) for c in worst_cols if not math.isnan(v := self.bias[c][k])]
                if vals:
                    notes[f"bias.{k}"] = notes[f"bias.{pick(vals)[1]}.{k}"]
        else:
            msg = "no column has two groups with enough trials (evaluate.bias.min_*)"
            for k in _bias.BIAS_FIGURES:
                notes[f"bias.{k}"] = msg
        return notes


# --------------------------------------------------------------------------- assessment


@dataclass
class _Column:
    """One bias column of one system: its group codes and the groups "ok" on the full list."""

    groups: _bias.GroupCodes
    ok: list[str]


def _bias_tables(
    table: pd.DataFrame, llrs: np.ndarray, settings: AssessSettings
) -> tuple[dict[str, dict[str, Any]], dict[str, _Column]]:
    """Per configured column: the bias engine's table and summary on the LLRs (or a status
    saying why there is none), and what the bootstrap needs to recompute it."""
    out: dict[str, dict[str, Any]] = {}
    columns: dict[str, _Column] = {}
    df = table.assign(score=llrs)
    for col in settings.bias_columns:
        if col not in df.columns:
            out[col] = {"status": f"column {col!r} is not in the manifest"}
            continue
        enroll_col = f"enroll_{col}" if settings.same_group_pairs else None
        try:
            s = _bias.bias_summary(
                df,
                [col],
                settings.threshold,
                enroll_columns={col: enroll_col} if enroll_col else None,
                alpha=settings.garbe_alpha,
                ratio_metrics=settings.ratio_metrics,
                cost=settings.cost,
                min_trials=settings.min_trials,
                min_targets=settings.min_targets,
                min_nontargets=settings.min_nontargets,
            )[col]
        except ValueError as exc:
            out[col] = {"status": f"not assessable: {exc}"}
            continue
        tab = s.pop("table")
        out[col] = {"status": "ok", "table": tab.to_dict("records"), **s}
        ok = tab.loc[tab["status"] == _bias.STATUS_OK, "group"].astype(str).tolist()
        columns[col] = _Column(_bias.group_codes(df, col, enroll_col), ok)
    return out, columns


@dataclass
class _System:
    """One model's per-trial scores/LLRs and its figures on a resample (row indices)."""

    scores: np.ndarray
    llrs: np.ndarray | None
    labels: np.ndarray
    settings: AssessSettings
    columns: dict[str, _Column]

    def figures(self, rows: np.ndarray) -> dict[str, float]:
        st = self.settings
        y = self.labels[rows]
        llr = None if self.llrs is None else self.llrs[rows]
        out = dict(verification_metrics(self.scores[rows], y, llr, st.p_targets))
        if llr is None:
            return out
        theta = st.threshold
        out["fmr"] = float(np.count_nonzero(llr[~y] >= theta) / np.count_nonzero(~y))
        out["fnmr"] = float(np.count_nonzero(llr[y] < theta) / np.count_nonzero(y))
        for col, c in self.columns.items():
            _, per = _bias.column_figures(
                self.llrs, self.labels, c.groups, theta, cost=st.cost, rows=rows, only=c.ok
            )
            d = _bias.disparity(per, c.ok, st.ratio_metrics, st.garbe_alpha)
            out.update({f"bias.{col}.{k}": d[k] for k in _bias.BIAS_FIGURES})
        assessable = [col for col, c in self.columns.items() if len(c.ok) >= 2]
        out.update(_bias.across_columns(out, assessable))
        return out


def assess(
    trials: TrialSet,
    systems: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
    settings: AssessSettings,
) -> tuple[dict[str, Assessment], dict[str, dict[str, float]] | None]:
    """Assess one or two systems (name -> (scores, LLRs)) on the same trial list.

    Returns ({name: Assessment}, difference) where difference (two systems only) holds, per
    figure, first − second with its paired speaker-bootstrap interval. All intervals use the
    same speaker resamples; a replicate where a figure is undefined (NaN) is left out of that
    figure's percentiles. The point of every figure is the bias engine's value on the full
    list (the same computation the replicates run on their rows).
    """
    if not 1 <= len(systems) <= 2:
        raise ValueError(f"assess takes one or two systems, got {len(systems)}")
    y = trials.labels
    n = y.size
    built: dict[str, _System] = {}
    tables: dict[str, dict] = {}
    for name, (scores, llrs) in systems.items():
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (n,):
            raise ValueError(f"{name}: {scores.shape} scores for {n} trials")
        columns: dict[str, _Column] = {}
        if llrs is not None:
            llrs = np.asarray(llrs, dtype=np.float64)
            tables[name], columns = _bias_tables(trials.table, llrs, settings)
        else:
            tables[name] = {
                c: {"status": "not assessable: the model has no calibration (no LLRs)"}
                for c in settings.bias_columns
            }
        built[name] = _System(scores, llrs, y, settings, columns)

    speakers = trials.table["enroll_speaker"].to_numpy().astype(str)
    resamples = speaker_resamples(y, speakers, settings.n_boot, settings.seed)
    everything = np.arange(n)
    recorded = {name: [sys.figures(everything)] for name, sys in built.items()}
    for rows in resamples:
        for name, sys in built.items():
            recorded[name].append(sys.figures(rows))
    series = {
        name: {fig: [r[fig] for r in reps] for fig in reps[0]} for name, reps in recorded.items()
    }
    out = {
        name: Assessment(
            name,
            {fig: percentile_interval(v, settings.confidence) for fig, v in series[name].items()},
            tables[name],
            sys.scores,
            sys.llrs,
        )
        for name, sys in built.items()
    }
    diff = None
    if len(built) == 2:
        a, b = list(built)
        diff = {
            fig: percentile_interval(
                np.asarray(series[a][fig]) - np.asarray(series[b][fig]), settings.confidence
            )
            for fig in series[a]
            if fig in series[b]
        }
    return out, diff
