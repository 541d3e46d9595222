"""The `evaluate` stage and the assessment shared with promotion.

Stage: embeddings -> scores (cosine, or AS-norm against a cohort of training-speaker means)
-> calibration fitted on the calibration split's trials (linear, or quality-aware with a
duration term) and applied to the eval trials -> metrics with speaker-bootstrap intervals,
per-group bias at the shipped threshold -> plots -> MLflow.

Outputs in `evaluate.out_dir`: `metrics.json` (DVC metrics; flat), `evaluation.json` (every
figure with its interval, the per-group tables), `scores_eval.csv`, `calibration.json`,
`scoring.json` (normalization settings), `cohort.npz` (AS-norm cohort), `embeddings.npz`
(eval + calibration utterances, the drift reference), `det.png`, `calibration.png`,
`bias.png`.

The assessment (:func:`assess`) is what gates use: for one or two systems scored on the same
trial list it computes the figures (:func:`speakerops.eval.metrics.verification_metrics`,
FMR/FNMR at the shipped LLR threshold θ, :func:`speakerops.eval.bias.bias_summary` per
metadata column) and their speaker-bootstrap percentile intervals. With two systems every
replicate draws the same speakers for both, so the interval of candidate − champion is a
paired one.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from speakerops.data.manifest import file_sha256, make_trials, read_manifest, read_trials
from speakerops.eval import bias as _bias
from speakerops.eval import metrics as _m
from speakerops.eval.bootstrap import speaker_bootstrap
from speakerops.eval.calibration import LinearCalibration, QualityCalibration, log_min_duration
from speakerops.eval.embed import EmbeddingBatch, embed_files
from speakerops.eval.metrics import verification_metrics
from speakerops.eval.scoring import ScoreNormalization, Scorer, cosine_scores, speaker_means
from speakerops.models.encoder import SpeakerEncoder

BIAS_FIGURES = ("worst_ratio", "garbe", "fdr")
RATIO_METRICS = ("eer_ratio", "fmr_ratio", "fnmr_ratio", "dcf_ratio")
DEFAULT_RATIO_METRICS = ("eer_ratio", "dcf_ratio")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class AssessSettings:
    """What an assessment computes (from `evaluate:` in the config and the policy's
    operating point)."""

    p_targets: tuple[float, ...] = (0.01, 0.05)
    operating_point: Mapping[str, float] = field(
        default_factory=lambda: {"p_target": 0.01, "c_miss": 1.0, "c_fa": 1.0}
    )
    bias_columns: tuple[str, ...] = ("gender", "age_band", "accent", "channel")
    same_group_pairs: bool = True
    min_trials: int = 100
    min_targets: int = 30
    min_nontargets: int = 30
    ratio_metrics: tuple[str, ...] = DEFAULT_RATIO_METRICS
    garbe_alpha: float = 0.5
    n_boot: int = 1000
    seed: int = 0
    confidence: float = 0.95

    @property
    def threshold(self) -> float:
        """θ = log(C_fa·(1−P) / (C_miss·P)) on LLRs."""
        op = self.operating_point
        return _m.bayes_threshold(op["p_target"], op.get("c_miss", 1.0), op.get("c_fa", 1.0))

    @classmethod
    def from_config(
        cls, ev: Mapping | DictConfig, operating_point: Mapping[str, float] | None = None
    ) -> AssessSettings:
        b = ev.get("bias") or {}
        boot = ev.get("bootstrap") or {}
        pairing = str(b.get("pairing", "same_group"))
        if pairing not in ("same_group", "test_side"):
            raise ValueError(f"evaluate.bias.pairing={pairing!r}: expected same_group or test_side")
        ratios = tuple(b.get("ratio_metrics", DEFAULT_RATIO_METRICS))
        bad = set(ratios) - set(RATIO_METRICS)
        if bad or not ratios:
            raise ValueError(
                f"evaluate.bias.ratio_metrics={list(ratios)}: choose from {list(RATIO_METRICS)}"
            )
        out = cls(
            p_targets=tuple(float(p) for p in ev.get("p_targets", (0.01, 0.05))),
            operating_point=dict(operating_point or cls().operating_point),
            bias_columns=tuple(str(c) for c in b.get("columns", cls.bias_columns)),
            same_group_pairs=pairing == "same_group",
            min_trials=int(b.get("min_trials", 100)),
            min_targets=int(b.get("min_targets", 30)),
            min_nontargets=int(b.get("min_nontargets", 30)),
            ratio_metrics=ratios,
            garbe_alpha=float(b.get("alpha", 0.5)),
            n_boot=int(boot.get("n", 1000)),
            seed=int(boot.get("seed", 0)),
            confidence=float(boot.get("confidence", 0.95)),
        )
        out.threshold  # noqa: B018 - validates the operating point
        return out

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


# --------------------------------------------------------------------------- data


@dataclass
class TrialSet:
    """A pinned trial list with both sides' speakers, durations and metadata."""

    name: str
    path: Path
    sha256: str
    table: pd.DataFrame  # enroll, test, label, enroll_speaker, speaker, enroll_duration, duration, <col>, enroll_<col>

    @property
    def labels(self) -> np.ndarray:
        return self.table["label"].to_numpy().astype(bool)

    @property
    def utterances(self) -> set[str]:
        return set(self.table["enroll"]) | set(self.table["test"])


def load_trial_set(
    prepared_dir: str | Path, split: str, manifest: pd.DataFrame | None = None
) -> TrialSet:
    """`trials_<split>.csv` joined with the manifest; refuses a list whose bytes no longer
    match the `.sha256` written beside it by `prepare`."""
    prepared = Path(prepared_dir)
    path = prepared / f"trials_{split}.csv"
    trials, sha = read_trials(path)
    recorded = path.with_suffix(".csv.sha256")
    if recorded.is_file():
        want = recorded.read_text().split()[0]
        if want != sha:
            raise ValueError(
                f"{path}: sha256 {sha[:12]}… differs from {recorded.name} ({want[:12]}…): "
                "the trial list changed after `prepare`"
            )
    if manifest is None:
        manifest = read_manifest(prepared / "manifest.csv")
    return TrialSet(split, path, sha, trial_table(trials, manifest))


def trial_table(trials: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Trials with, for each manifest column, the test side as `<col>` and the enrollment
    side as `enroll_<col>` (`speaker`, `duration`, metadata columns)."""
    meta = manifest.drop_duplicates("utt_id").set_index("utt_id")
    missing = (set(trials["enroll"]) | set(trials["test"])) - set(meta.index)
    if missing:
        raise ValueError(
            f"{len(missing)} trial utterances are not in the manifest, e.g. {sorted(missing)[:3]}"
        )
    cols = [c for c in meta.columns if c not in ("path", "split", "sample_rate")]
    out = trials[["enroll", "test", "label"]].reset_index(drop=True).copy()
    test_side = meta.loc[out["test"], cols].reset_index(drop=True)
    enroll_side = meta.loc[out["enroll"], cols].reset_index(drop=True)
    for c in cols:
        out[c] = test_side[c].to_numpy()
        out[f"enroll_{c}"] = enroll_side[c].to_numpy()
    return out


# --------------------------------------------------------------------------- embedding


def embed_split(
    encoder: SpeakerEncoder, manifest: pd.DataFrame, utt_ids: set[str], desc: str, progress: bool
) -> EmbeddingBatch:
    rows = manifest[manifest["utt_id"].isin(utt_ids)]
    batch = embed_files(encoder, rows["path"].tolist(), rows["utt_id"].tolist(), progress, desc)
    if batch.failures:
        raise ValueError(
            f"{len(batch.failures)} prepared files failed to load, e.g. {batch.failures[0]}"
        )
    return batch


def score_trials(
    encoder: SpeakerEncoder, manifest: pd.DataFrame, trials: pd.DataFrame, desc: str, progress: bool
) -> tuple[np.ndarray, EmbeddingBatch]:
    """Cosine scores of a trial list (embedding each utterance once)."""
    batch = embed_split(
        encoder, manifest, set(trials["enroll"]) | set(trials["test"]), desc, progress
    )
    return cosine_scores(batch.as_dict(), trials), batch


def build_cohort(
    encoder: SpeakerEncoder,
    manifest: pd.DataFrame,
    utts_per_speaker: int = 3,
    max_speakers: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """AS-norm cohort: the unit-norm mean embedding of each training speaker (its first
    ``utts_per_speaker`` utterances by id; at most ``max_speakers`` seeded speakers)."""
    train = manifest[manifest["split"] == "train"]
    speakers = sorted(train["speaker"].astype(str).unique())
    if len(speakers) < 2:
        raise ValueError(
            f"AS-norm needs a cohort of training speakers: the manifest's train split has "
            f"{len(speakers)}; use evaluate.scoring.method=cosine"
        )
    if len(speakers) > max_speakers:
        rng = np.random.default_rng(seed)
        speakers = sorted(rng.choice(speakers, int(max_speakers), replace=False).tolist())
    rows = (
        train[train["speaker"].astype(str).isin(speakers)]
        .sort_values(["speaker", "utt_id"])
        .groupby("speaker", sort=True)
        .head(int(utts_per_speaker))
    )
    batch = embed_split(encoder, rows, set(rows["utt_id"]), "embedding AS-norm cohort", progress)
    spk_of = dict(zip(rows["utt_id"], rows["speaker"].astype(str), strict=True))
    return speaker_means(batch.embeddings, [spk_of[u] for u in batch.utt_ids])


def system_scores(
    scorer: Scorer, embeddings: Mapping[str, np.ndarray], trials: TrialSet
) -> tuple[np.ndarray, np.ndarray | None]:
    """(normalized scores, LLRs or None without calibration) with the packaged scorer."""
    scores = scorer.score(embeddings, trials.table)
    if scorer.calibration is None:
        return scores, None
    t = trials.table
    if scorer.needs_durations:
        return scores, scorer.to_llr(
            scores, t["enroll_duration"].to_numpy(float), t["duration"].to_numpy(float)
        )
    return scores, scorer.to_llr(scores)


# --------------------------------------------------------------------------- assessment


class _ColumnGroups:
    """Per-trial group codes of one metadata column (−1 = cross-group) and the groups whose
    point-estimate status is "ok" (the ones that enter ratios, GARBE and FDR)."""

    def __init__(self, table: pd.DataFrame, column: str, enroll_column: str | None, ok: list[str]):
        groups = _bias.assign_groups(table, column, enroll_column).to_numpy()
        self.names = list(ok)
        lookup = {g: i for i, g in enumerate(self.names)}
        self.codes = np.array([lookup.get(g, -2) for g in groups], dtype=np.int64)
        self.codes[groups == _bias.CROSS_GROUP] = -1
        self.in_group = self.codes != -1  # every assigned group counts toward "overall"


def _rates(llr: np.ndarray, y: np.ndarray, op: Mapping[str, float]) -> dict[str, float]:
    """EER, FMR and FNMR at the Bayes threshold θ of ``op``, and the actual detection cost
    there (:func:`speakerops.eval.metrics.act_dcf`); NaN where a class is absent."""
    n_tar = int(y.sum())
    n_non = y.size - n_tar
    theta = _m.bayes_threshold(op["p_target"], op.get("c_miss", 1.0), op.get("c_fa", 1.0))
    fmr = float(np.count_nonzero(llr[~y] >= theta) / n_non) if n_non else math.nan
    fnmr = float(np.count_nonzero(llr[y] < theta) / n_tar) if n_tar else math.nan
    both = n_tar > 0 and n_non > 0
    return {
        "eer": _m.eer(llr, y) if both else math.nan,
        "fmr": fmr,
        "fnmr": fnmr,
        "dcf": (
            _m.act_dcf(llr, y, op["p_target"], op.get("c_miss", 1.0), op.get("c_fa", 1.0))
            if both
            else math.nan
        ),
    }


def _ratio(x: float, ref: float) -> float:
    if math.isnan(x) or math.isnan(ref):
        return math.nan
    if ref > 0:
        return x / ref
    return 1.0 if x == 0 else math.inf


def _bias_figures(
    llr: np.ndarray,
    y: np.ndarray,
    cg: _ColumnGroups,
    op: Mapping[str, float],
    ratios: Sequence[str],
    alpha: float,
) -> dict[str, float]:
    """worst_ratio, garbe, fdr of one column on (a resample of) the trials, computed like
    :func:`speakerops.eval.bias.bias_summary` over the fixed set of "ok" groups; a group
    with no targets or no non-targets in a resample is left out of that resample."""
    m = cg.in_group
    if not m.any():
        return dict.fromkeys(BIAS_FIGURES, math.nan)
    overall = _rates(llr[m], y[m], op)
    worst = math.nan
    fm, fn = [], []
    for k in range(len(cg.names)):
        g = cg.codes == k
        yg = y[g]
        if yg.size == 0 or yg.all() or not yg.any():
            continue
        vals = _rates(llr[g], yg, op)
        fm.append(vals["fmr"])
        fn.append(vals["fnmr"])
        for r in ratios:
            key = r[: -len("_ratio")]
            v = _ratio(vals[key], overall[key])
            if not math.isnan(v) and (math.isnan(worst) or v > worst):
                worst = v
    if len(fm) >= 2:
        garbe, fdr = _bias.garbe(fm, fn, alpha), _bias.fdr(fm, fn, alpha)
    else:
        garbe = fdr = math.nan
    return {"worst_ratio": worst, "garbe": garbe, "fdr": fdr}


def _aggregate_bias(figs: dict[str, float], columns: Sequence[str]) -> dict[str, float]:
    """bias.worst_ratio / bias.garbe = max over columns, bias.fdr = min, over the columns
    given (those with at least two "ok" groups: a disparity needs two groups); NaN values
    skipped, NaN when no column is left (not assessable: gates on it fail closed)."""
    out = {}
    for name, pick in (("worst_ratio", max), ("garbe", max), ("fdr", min)):
        vals = [figs[f"bias.{c}.{name}"] for c in columns if f"bias.{c}.{name}" in figs]
        vals = [v for v in vals if not math.isnan(v)]
        out[f"bias.{name}"] = pick(vals) if vals else math.nan
    return out


@dataclass
class _System:
    """One model's per-trial scores/LLRs and how to compute its figures on a resample."""

    scores: np.ndarray
    llrs: np.ndarray | None
    labels: np.ndarray
    settings: AssessSettings
    columns: dict[str, _ColumnGroups]

    def figures(self, row: np.ndarray) -> dict[str, float]:
        y = self.labels[row]
        s = self.scores[row]
        llr = None if self.llrs is None else self.llrs[row]
        out = dict(verification_metrics(s, y, llr, self.settings.p_targets))
        if llr is None:
            return out
        theta = self.settings.threshold
        out["fmr"] = float(np.count_nonzero(llr[~y] >= theta) / np.count_nonzero(~y))
        out["fnmr"] = float(np.count_nonzero(llr[y] < theta) / np.count_nonzero(y))
        for col, cg in self.columns.items():
            sub = _ColumnGroups.__new__(_ColumnGroups)
            sub.names, sub.codes, sub.in_group = cg.names, cg.codes[row], cg.in_group[row]
            b = _bias_figures(
                llr,
                y,
                sub,
                self.settings.operating_point,
                self.settings.ratio_metrics,
                self.settings.garbe_alpha,
            )
            out.update({f"bias.{col}.{k}": v for k, v in b.items()})
        out.update(
            _aggregate_bias(out, [c for c, cg in self.columns.items() if len(cg.names) >= 2])
        )
        return out


@dataclass
class Assessment:
    """Figures of one system with intervals, and its per-group tables."""

    name: str
    figures: dict[str, dict[str, float]]  # name -> {value, low, high}
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
                notes[f"bias.{col}.worst_ratio"] = b.get("status", "")
                notes[f"bias.{col}.garbe"] = b.get("status", "")
                notes[f"bias.{col}.fdr"] = b.get("status", "")
                continue
            if b["worst_group"] is None:
                msg = f"{col}: fewer than 2 groups with enough trials"
                for k in BIAS_FIGURES:
                    notes[f"bias.{col}.{k}"] = msg
                continue
            metric = b["worst_metric"][: -len("_ratio")]
            row = next(r for r in b["table"] if r["group"] == b["worst_group"])
            o = b["overall"]
            name = "DCF at θ" if metric == "dcf" else metric.upper()
            note = (
                f"worst group {col}={b['worst_group']!r}: {name} {row[metric]:.4f} vs overall "
                f"{o[metric]:.4f} (group EER {row['eer']:.4f}, FMR {row['fmr']:.4f}, FNMR "
                f"{row['fnmr']:.4f}; overall {o['eer']:.4f}, {o['fmr']:.4f}, {o['fnmr']:.4f})"
            )
            notes[f"bias.{col}.worst_ratio"] = note
            if b["n_groups_ok"] >= 2:
                fm = ", ".join(
                    f"{r['group']} {r['fmr']:.3f}/{r['fnmr']:.3f}"
                    for r in b["table"]
                    if r["status"] == _bias.STATUS_OK
                )
                notes[f"bias.{col}.garbe"] = f"{col} FMR/FNMR by group: {fm}"
                notes[f"bias.{col}.fdr"] = notes[f"bias.{col}.garbe"]
            else:
                msg = f"{col}: only {b['n_groups_ok']} group with enough trials"
                notes[f"bias.{col}.garbe"] = notes[f"bias.{col}.fdr"] = msg
            if b["n_groups_ok"] >= 2:
                worst_cols.append(col)
        if worst_cols:
            for k, pick in (("worst_ratio", max), ("garbe", max), ("fdr", min)):
                vals = [(v, c) for c in worst_cols if not math.isnan(v := self.bias[c][k])]
                if vals:
                    notes[f"bias.{k}"] = notes[f"bias.{pick(vals)[1]}.{k}"]
        else:
            msg = "no column has two groups with enough trials (evaluate.bias.min_*)"
            for k in BIAS_FIGURES:
                notes[f"bias.{k}"] = msg
        return notes


def _bias_tables(
    table: pd.DataFrame, llrs: np.ndarray, settings: AssessSettings
) -> tuple[dict[str, dict[str, Any]], dict[str, _ColumnGroups]]:
    out: dict[str, dict[str, Any]] = {}
    groups: dict[str, _ColumnGroups] = {}
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
                min_trials=settings.min_trials,
                min_targets=settings.min_targets,
                min_nontargets=settings.min_nontargets,
            )[col]
        except ValueError as exc:
            out[col] = {"status": f"not assessable: {exc}"}
            continue
        tab = s.pop("table")
        cg_all = _bias.assign_groups(df, col, enroll_col).to_numpy()
        y_all = df["label"].to_numpy().astype(bool)
        in_group = cg_all != _bias.CROSS_GROUP
        o_dcf = _rates(llrs[in_group], y_all[in_group], settings.operating_point)["dcf"]
        dcf = [
            _rates(llrs[cg_all == g], y_all[cg_all == g], settings.operating_point)["dcf"]
            for g in tab["group"]
        ]
        tab.insert(tab.columns.get_loc("fnmr") + 1, "dcf", dcf)
        tab.insert(
            tab.columns.get_loc("fnmr_ratio") + 1, "dcf_ratio", [_ratio(d, o_dcf) for d in dcf]
        )
        s["overall"]["dcf"] = o_dcf
        ok = tab[tab["status"] == _bias.STATUS_OK]
        # the worst ratio over the configured ratio metrics (bias_summary's takes EER, FMR
        # and FNMR; here evaluate.bias.ratio_metrics decides, by default EER and DCF)
        worst, worst_group, worst_metric = math.nan, None, None
        for metric in settings.ratio_metrics:
            vals = ok[metric].to_numpy(dtype=np.float64)
            if vals.size and not np.all(np.isnan(vals)):
                i = int(np.nanargmax(vals))
                if math.isnan(worst) or vals[i] > worst:
                    worst, worst_group, worst_metric = (
                        float(vals[i]),
                        str(ok["group"].iloc[i]),
                        metric,
                    )
        s.update(worst_ratio=worst, worst_group=worst_group, worst_metric=worst_metric)
        out[col] = {"status": "ok", "table": tab.to_dict("records"), **s}
        groups[col] = _ColumnGroups(df, col, enroll_col, ok["group"].astype(str).tolist())
    return out, groups


def assess(
    trials: TrialSet,
    systems: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
    settings: AssessSettings,
) -> tuple[dict[str, Assessment], dict[str, dict[str, float]] | None]:
    """Assess one or two systems (name -> (scores, LLRs)) on the same trial list.

    Returns ({name: Assessment}, difference) where difference (two systems only) holds, per
    figure, first − second with its paired speaker-bootstrap interval. All intervals use the
    same speaker resamples (:func:`speakerops.eval.bootstrap.speaker_bootstrap` with
    ``settings.seed``); a replicate where a figure is undefined (NaN) is left out of that
    figure's percentiles.
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
        groups: dict[str, _ColumnGroups] = {}
        if llrs is not None:
            llrs = np.asarray(llrs, dtype=np.float64)
            tables[name], groups = _bias_tables(trials.table, llrs, settings)
        else:
            tables[name] = {
                c: {"status": "not assessable: the model has no calibration (no LLRs)"}
                for c in settings.bias_columns
            }
        built[name] = _System(scores, llrs, y, settings, groups)

    recorded = _recorded_bootstrap(
        y,
        trials.table["enroll_speaker"].to_numpy().astype(str),
        {name: sys.figures for name, sys in built.items()},
        settings,
    )
    out = {}
    for name, sys in built.items():
        figs = {}
        for fig, values in recorded[name].items():
            figs[fig] = _interval(values, settings.confidence)
        # bias points must be exactly the tables' (bias_summary) values
        for col, b in tables[name].items():
            if b.get("status") == "ok":
                for k in ("garbe", "fdr", "worst_ratio"):
                    _same(figs[f"bias.{col}.{k}"]["value"], b[k], f"bias.{col}.{k}")
        out[name] = Assessment(name, figs, tables[name], sys.scores, sys.llrs)
    diff = None
    if len(built) == 2:
        a, b = list(built)
        diff = {}
        for fig in recorded[a]:
            if fig in recorded[b]:
                diff[fig] = _interval(
                    np.asarray(recorded[a][fig]) - np.asarray(recorded[b][fig]),
                    settings.confidence,
                )
    return out, diff


def _same(x: float, y: float, what: str) -> None:
    if not ((math.isnan(x) and math.isnan(y)) or x == y or abs(x - y) <= 1e-12):
        raise AssertionError(f"{what}: bootstrap point {x} differs from the table's {y}")


def _interval(values: Sequence[float], confidence: float) -> dict[str, float]:
    """{value: point (first entry), low, high: percentile interval of the replicates}."""
    v = np.asarray(values, dtype=np.float64)
    point, reps = float(v[0]), v[1:]
    finite = reps[~np.isnan(reps)]
    alpha = 1.0 - float(confidence)
    if finite.size == 0:
        return {"value": point, "low": math.nan, "high": math.nan, "n_replicates": 0}
    with np.errstate(invalid="ignore"):
        lo, hi = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return {
        "value": point,
        "low": float(lo),
        "high": float(hi),
        "n_replicates": int(finite.size),
    }


def _recorded_bootstrap(
    labels: np.ndarray,
    speakers: np.ndarray,
    systems: Mapping[str, Callable[[np.ndarray], dict[str, float]]],
    settings: AssessSettings,
) -> dict[str, dict[str, list[float]]]:
    """Run :func:`speaker_bootstrap` once for all systems and record, per system and figure,
    [point, replicate 1, …, replicate n]. Each system's figures are computed once per
    replicate (the row indices of the replicate identify it)."""
    n = labels.size
    rows = np.arange(n)
    points = {name: fn(rows) for name, fn in systems.items()}
    record: dict[str, dict[str, list[float]]] = {
        name: {fig: [] for fig in pts} for name, pts in points.items()
    }
    last: dict[str, tuple[np.ndarray, dict[str, float]]] = {
        name: (rows, pts) for name, pts in points.items()
    }

    def metric(name: str, fig: str):
        def fn(s, y, row):  # noqa: ARG001 - speaker_bootstrap's calling convention
            prev_row, prev = last[name]
            if prev_row.shape != row.shape or not np.array_equal(prev_row, row):
                prev = systems[name](row)
                last[name] = (row, prev)
            value = float(prev[fig])
            record[name][fig].append(value)
            return value

        return fn

    fns = {f"{name}|{fig}": metric(name, fig) for name, pts in points.items() for fig in pts}
    speaker_bootstrap(
        np.zeros(n),
        labels,
        speakers,
        fns,
        n_boot=settings.n_boot,
        confidence=settings.confidence,
        seed=settings.seed,
        extra={"row": rows},
    )
    return record


# --------------------------------------------------------------------------- the stage


def _calibrate(
    kind: str, scores: np.ndarray, trials: TrialSet, p_eff: float
) -> LinearCalibration | QualityCalibration:
    y = trials.labels
    if kind == "linear":
        return LinearCalibration(p_eff=p_eff).fit(scores, y)
    if kind == "quality":
        t = trials.table
        q = log_min_duration(t["enroll_duration"].to_numpy(float), t["duration"].to_numpy(float))
        return QualityCalibration(p_eff=p_eff).fit(scores, y, q)
    raise ValueError(f"evaluate.calibration.kind={kind!r}: expected linear or quality")


def evaluate(cfg: DictConfig, progress: bool = True) -> dict:
    """Run the stage; returns the metrics written to `metrics.json`."""
    from speakerops.core.policy import operating_point

    ev = cfg.evaluate
    out = Path(ev.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prepared = Path(cfg.data.prepared_dir)
    settings = AssessSettings.from_config(ev, operating_point(cfg.register.get("policy")))
    encoder = SpeakerEncoder.load(Path(cfg.train.out_dir) / "encoder.pt")
    manifest = read_manifest(prepared / "manifest.csv")
    eval_set = load_trial_set(prepared, "eval", manifest)
    cal_set = load_trial_set(prepared, "calibration", manifest)

    sc = ev.get("scoring") or {}
    method = str(sc.get("method", "cosine"))
    if method == "asnorm":
        cohort, cohort_spk = build_cohort(
            encoder,
            manifest,
            int(sc.get("cohort_utts_per_speaker", 3)),
            int(sc.get("cohort_max_speakers", 1000)),
            int(cfg.get("seed", 0)),
            progress,
        )
        norm = ScoreNormalization("asnorm", int(sc.get("top_n", 100)), cohort, cohort_spk)
    else:
        norm = ScoreNormalization(method)
    cal_batch = embed_split(
        encoder, manifest, cal_set.utterances, "embedding calibration split", progress
    )
    eval_batch = embed_split(
        encoder, manifest, eval_set.utterances, "embedding eval split", progress
    )
    cal_scores = norm.score(cal_batch.as_dict(), cal_set.table)
    eval_scores = norm.score(eval_batch.as_dict(), eval_set.table)
    cal_cfg = ev.get("calibration") or {}
    calibration = _calibrate(
        str(cal_cfg.get("kind", "linear")), cal_scores, cal_set, float(cal_cfg.get("p_eff", 0.5))
    )
    scorer = Scorer(norm, calibration)
    _, llrs = system_scores(scorer, eval_batch.as_dict(), eval_set)
    labels = eval_set.labels
    metrics = verification_metrics(eval_scores, labels, llrs, p_targets=settings.p_targets)
    metrics = {k: float(v) for k, v in metrics.items()}

    results, _ = assess(eval_set, {"model": (eval_scores, llrs)}, settings)
    model = results["model"]
    extra = {
        k: v["value"]
        for k, v in model.figures.items()
        if k not in metrics and (k in ("fmr", "fnmr") or k.startswith("bias."))
    }
    summary = {
        **metrics,
        **{k: float(v) for k, v in extra.items()},
        "n_trials": int(len(eval_set.table)),
        "n_target": int(labels.sum()),
        "trials_sha256": eval_set.sha256,
        "calibration_trials_sha256": cal_set.sha256,
        "score_normalization": norm.describe(),
        "calibration_kind": calibration.kind,
        "llr_threshold": settings.threshold,
    }
    from speakerops.registry.gate import dumps

    (out / "metrics.json").write_text(dumps(summary))
    (out / "evaluation.json").write_text(
        dumps(
            {
                "trials_sha256": eval_set.sha256,
                "calibration_trials_sha256": cal_set.sha256,
                "scoring": norm.describe(),
                "calibration": calibration.to_dict(),
                "settings": settings.describe(),
                "figures": model.figures,
                "bias": model.bias,
            }
        )
    )
    (out / "calibration.json").write_text(json.dumps(calibration.to_dict(), indent=2))
    scoring = norm.to_dict()
    (out / "scoring.json").write_text(
        json.dumps({k: v for k, v in scoring.items() if k != "cohort"}, indent=2)
    )
    np.savez(
        out / "cohort.npz",
        speaker=np.array(norm.cohort_speakers, dtype=str),
        embedding=(
            norm.cohort if norm.cohort is not None else np.zeros((0, encoder.embedding_dim))
        ).astype(np.float32),
    )
    eval_set.table[["enroll", "test", "label"]].assign(score=eval_scores, llr=llrs).to_csv(
        out / "scores_eval.csv", index=False
    )
    np.savez(
        out / "embeddings.npz",
        utt_id=np.array(cal_batch.utt_ids + eval_batch.utt_ids),
        embedding=np.concatenate([cal_batch.embeddings, eval_batch.embeddings]),
    )
    from speakerops.eval.plots import bias_plot, calibration_plot, det_plot

    theta = settings.threshold
    det_plot(
        {"eval": (eval_scores, labels)},
        out / "det.png",
        "DET: held-out eval speakers",
        operating_points={"eval": (llrs, theta)},
    )
    calibration_plot({"eval": (llrs, labels)}, out / "calibration.png", settings.operating_point)
    bias_plot({"eval": model.bias}, out / "bias.png", theta)
    _log_to_mlflow(cfg, summary, out)
    return summary


def load_cohort(eval_dir: str | Path) -> ScoreNormalization:
    """The normalization the evaluate stage used (`scoring.json` + `cohort.npz`)."""
    eval_dir = Path(eval_dir)
    path = eval_dir / "scoring.json"
    if not path.is_file():
        return ScoreNormalization("cosine")
    d = json.loads(path.read_text())
    if d.get("method") == "asnorm":
        with np.load(eval_dir / "cohort.npz") as z:
            d["cohort"] = z["embedding"]
            d["cohort_speakers"] = z["speaker"].tolist()
    return ScoreNormalization.from_dict(d)


def _log_to_mlflow(cfg: DictConfig, summary: dict, out: Path) -> None:
    """Metrics (prefixed `eval_`) and figures onto the training run."""
    train_json = Path(cfg.train.out_dir) / "train.json"
    if not train_json.is_file():
        return
    from mlflow.tracking import MlflowClient

    from speakerops.registry import tracking

    run_id = json.loads(train_json.read_text())["run_id"]
    client = MlflowClient(tracking.tracking_uri(cfg.paths.registry_dir))
    for key, value in summary.items():
        if isinstance(value, float) and math.isfinite(value):
            client.log_metric(run_id, f"eval_{key}", value)
    client.set_tag(run_id, "eval_trials_sha256", summary["trials_sha256"])
    for name in (
        "metrics.json",
        "evaluation.json",
        "calibration.json",
        "det.png",
        "calibration.png",
        "bias.png",
    ):
        client.log_artifact(run_id, str(out / name), "eval")


def evaluate_corpus(
    encoder: SpeakerEncoder,
    corpus: str,
    root: str | Path,
    trials_per_utt: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """EER/minDCF of `encoder` on every speaker of an external corpus (e.g. LibriSpeech test-other)."""
    from omegaconf import OmegaConf

    from speakerops.data.prepare import build_manifest

    with tempfile.TemporaryDirectory() as tmp:
        data = OmegaConf.create(
            {
                "corpus": corpus,
                "root": str(root),
                "min_duration": 0.5,
                "calibration_fraction": 0.0,
                "eval_fraction": 1.0,
                "split_seed": seed,
                "workers": 2,
                "prepared_dir": tmp,
            }
        )
        manifest, quarantine = build_manifest(data, progress)
    trials = make_trials(manifest, trials_per_utt, trials_per_utt, seed)
    scores, _ = score_trials(encoder, manifest, trials, f"embedding {corpus}", progress)
    metrics = verification_metrics(scores, trials["label"].to_numpy())
    return {
        **{k: float(v) for k, v in metrics.items()},
        "n_speakers": int(manifest["speaker"].nunique()),
        "n_utterances": int(len(manifest)),
        "n_trials": int(len(trials)),
        "n_quarantined": int(len(quarantine)),
    }


def run_baseline(cfg: DictConfig) -> dict:
    """The mean-MFCC cosine baseline on the same eval trial list -> `baseline/metrics.json`."""
    from speakerops.eval.baseline import mean_mfcc_embeddings

    prepared = Path(cfg.data.prepared_dir)
    out = Path(cfg.paths.artifacts_dir) / "baseline"
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(prepared / "manifest.csv")
    trials, sha = read_trials(prepared / "trials_eval.csv")
    rows = manifest[manifest["utt_id"].isin(set(trials["enroll"]) | set(trials["test"]))]
    emb = mean_mfcc_embeddings(rows["path"].tolist(), int(cfg.features.sample_rate))
    scores = cosine_scores(dict(zip(rows["utt_id"], emb, strict=True)), trials)
    metrics = verification_metrics(
        scores, trials["label"].to_numpy(), p_targets=tuple(cfg.evaluate.p_targets)
    )
    summary = {
        "system": "mean-MFCC (20 coefficients, no CMN) + cosine",
        **{k: float(v) for k, v in metrics.items()},
        "trials_sha256": sha,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary


__all__ = [
    "Assessment",
    "AssessSettings",
    "TrialSet",
    "assess",
    "build_cohort",
    "embed_split",
    "evaluate",
    "evaluate_corpus",
    "file_sha256",
    "load_cohort",
    "load_trial_set",
    "run_baseline",
    "score_trials",
    "system_scores",
    "trial_table",
]
