"""The drift decision: production window vs the champion's reference, with Evidently.

What is decided on what (``check_drift``):

- **Embedding drift** — Evidently's embedding drift method object
  (``evidently.metrics.embeddings.ModelDriftMethod``: a domain classifier, SGD logistic
  regression trained on half of ``reference ∪ current`` to tell them apart, drift when the
  ROC AUC on the other half exceeds ``threshold``; or ``MMDDriftMethod``: unbiased MMD² with
  an RBF kernel at the median pairwise distance, drift when above ``threshold``), called
  directly on the embedding columns. With ``one_per_speaker`` each side first keeps one
  seeded utterance per speaker (reference ``speaker``; window ``speaker_key``; rows without
  a key count as their own speaker): with several utterances per speaker, the classifier
  (whose split is by row) learns *who* is in each set and calls any new speaker population
  "drift"; one utterance per speaker leaves it the channel/domain. Then at most
  ``max_rows`` seeded rows per side.
- **Metadata drift** — for each column in ``columns`` (duration_s, snr_db, sample_rate,
  channel), Evidently's registered stat test of that name
  (``evidently.legacy.calculations.stattests``) on all non-null rows of both sides. The
  defaults are effect sizes, so they do not fire on trivial differences in big windows:
  normed Wasserstein distance W1(ref, cur)/std(ref) ≥ 0.1 for numbers, Jensen–Shannon
  distance ≥ 0.1 for categories. Any Evidently stat test name works (``ks``, ``psi``…).
  ``cm_score`` (the served countermeasure's score per request, beside the reference's CM scores
  of its own audio) is one of these columns: a batch of spoofed traffic shifts it. Only the
  rows scored by the reference's countermeasure (its ``cm_sha256``) are compared
  (:func:`same_cm`).
- **Score drift** — production has no labels, so two label-free score distributions are
  computed the same way on both sides from L2-normalised embeddings, then tested like
  metadata columns (all rows):

  * ``score_cohort_topk``: s_i = mean of the k largest cosines between embedding i and a
    cohort of reference speaker means (the AS-norm cohort statistic; at most ``max_cohort``
    seeded speakers). Reference rows leave their own speaker's mean out.
  * ``score_random_pair``: cosine between each embedding and one other embedding of the
    same side, paired along a seeded random cycle (an impostor-like score distribution).

Overall drift = any check that ran fired. Windows that mix model versions, or whose model
version differs from the reference's, are refused (:class:`DriftRefusal`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from speakerops.drift.config import drift_config
from speakerops.drift.results import CheckResult, DriftRefusal, DriftResult
from speakerops.drift.window import GROUP_COLUMN, check_versions, prepare_window
from speakerops.eval.cohort import build_cohort
from speakerops.registry.reference import Reference

SCORE_COLUMNS = ("score_cohort_topk", "score_random_pair")


# ------------------------------------------------------------------------------- scores


def _l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cohort_topk_scores(
    x: np.ndarray, cohort: np.ndarray, k: int, exclude: np.ndarray | None = None, chunk: int = 8192
) -> np.ndarray:
    """Mean of the k largest cosines of each (normalised) row of ``x`` to the cohort;
    ``exclude[i]`` is a cohort index left out for row i (−1: none)."""
    n, c = len(x), len(cohort)
    k_eff = min(k, c - (1 if exclude is not None else 0))
    if k_eff < 1:
        raise ValueError(f"score cohort has {c} entries: too few for a top-{k} score")
    out = np.empty(n, np.float64)
    for s in range(0, n, chunk):
        sims = x[s : s + chunk] @ cohort.T
        if exclude is not None:
            ex = exclude[s : s + chunk]
            has = ex >= 0
            sims[np.flatnonzero(has), ex[has]] = -np.inf
        top = np.partition(sims, c - k_eff, axis=1)[:, c - k_eff :]
        out[s : s + chunk] = top.mean(axis=1)
    return out


def random_pair_scores(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cosine of each normalised row with its successor on a seeded random cycle."""
    n = len(x)
    if n < 2:
        return np.full(n, np.nan)
    order = rng.permutation(n)
    partner = np.empty(n, np.int64)
    partner[order] = np.roll(order, -1)
    return np.einsum("ij,ij->i", x, x[partner]).astype(np.float64)


def _scores(
    cur_x: np.ndarray,
    ref_x: np.ndarray,
    ref_speakers: np.ndarray | None,
    d,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    max_cohort = int(d.scores.max_cohort)
    if ref_speakers is not None and pd.Series(ref_speakers).nunique(dropna=True) >= 2:
        cohort, names = build_cohort(ref_x, ref_speakers, max_cohort, rng)
        pos = {name: i for i, name in enumerate(names)}
        exclude = np.array(
            [pos.get(str(s), -1) if pd.notna(s) else -1 for s in ref_speakers], dtype=np.int64
        )
        cohort_kind = "reference speaker means"
    else:  # no speaker labels: a seeded subset of the reference utterances
        rows = np.arange(len(ref_x))
        if len(rows) > max_cohort:
            rows = np.sort(rng.choice(rows, max_cohort, replace=False))
        cohort = _l2n(ref_x)[rows]
        exclude = np.full(len(ref_x), -1, dtype=np.int64)
        exclude[rows] = np.arange(len(rows))
        cohort_kind = "reference utterances"
    k = int(d.scores.cohort_top_k)
    cur_n, ref_n = _l2n(cur_x), _l2n(ref_x)
    cur = {
        "score_cohort_topk": cohort_topk_scores(cur_n, cohort, k),
        "score_random_pair": random_pair_scores(cur_n, rng),
    }
    ref = {
        "score_cohort_topk": cohort_topk_scores(ref_n, cohort, k, exclude),
        "score_random_pair": random_pair_scores(ref_n, rng),
    }
    return cur, ref, {"cohort": cohort_kind, "cohort_size": len(cohort), "top_k": k}


# ---------------------------------------------------------------------------- the tests


def evidently_embedding_method(ecfg) -> Any:
    """The Evidently drift-method object for ``drift.embedding`` (every argument explicit)."""
    from evidently.metrics.embeddings import MMDDriftMethod, ModelDriftMethod

    pca = None if ecfg.pca_components in (None, 0) else int(ecfg.pca_components)
    cls = ModelDriftMethod if ecfg.method == "model" else MMDDriftMethod
    return cls(
        threshold=float(ecfg.threshold),
        bootstrap=bool(ecfg.bootstrap),
        quantile_probability=float(ecfg.quantile_probability),
        pca_components=pca,
    )


def one_per_group(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sorted row indices keeping one seeded row per group (null group = its own row)."""
    n = len(groups)
    g = pd.Series(groups, dtype=object)
    g = g.where(g.notna(), pd.Series([f"\0row{i}" for i in range(n)], dtype=object))
    order = rng.permutation(n)
    first = ~g.iloc[order].duplicated().to_numpy()
    return np.sort(order[first])


def subsample(idx: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    if len(idx) <= max_rows:
        return idx
    return np.sort(rng.choice(idx, max_rows, replace=False))


def embedding_decision_rows(
    current: pd.DataFrame, reference: pd.DataFrame, ecfg, seed: int, max_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of each prepared frame used by the embedding test (dedup + subsample)."""
    rng = np.random.default_rng([seed, 1])
    limit = int(ecfg.max_rows if max_rows is None else max_rows)
    if ecfg.one_per_speaker:
        ci = one_per_group(current[GROUP_COLUMN].to_numpy(), rng)
        ri = one_per_group(reference[GROUP_COLUMN].to_numpy(), rng)
    else:
        ci, ri = np.arange(len(current)), np.arange(len(reference))
    return subsample(ci, limit, rng), subsample(ri, limit, rng)


def _embedding_check(cur: pd.DataFrame, ref: pd.DataFrame, cols: list[str], d) -> CheckResult:
    ecfg = d.embedding
    ci, ri = embedding_decision_rows(cur, ref, ecfg, int(d.seed))
    detail = {
        "one_per_speaker": bool(ecfg.one_per_speaker),
        "rows_after_dedup_and_subsample": {"current": len(ci), "reference": len(ri)},
        "pca_components": ecfg.pca_components,
        "bootstrap": bool(ecfg.bootstrap),
    }
    if min(len(ci), len(ri)) < int(ecfg.min_rows):
        return CheckResult(
            "embedding", "embedding", str(ecfg.method), None, float(ecfg.threshold), False, len(ci), len(ri),
            skipped=(
                f"{len(ci)} current / {len(ri)} reference rows after one-per-speaker dedup, "
                f"fewer than drift.embedding.min_rows={int(ecfg.min_rows)}"
            ),
            detail=detail,
        )  # fmt: skip
    method = evidently_embedding_method(ecfg)
    # The method objects add a column to their inputs: hand them fresh frames.
    cur_e = pd.DataFrame(cur[cols].to_numpy()[ci], columns=cols)
    ref_e = pd.DataFrame(ref[cols].to_numpy()[ri], columns=cols)
    score, drifted, name = method(cur_e, ref_e)
    return CheckResult(
        "embedding", "embedding", str(name), float(score), float(ecfg.threshold), bool(drifted),
        len(ci), len(ri), detail=detail,
    )  # fmt: skip


def same_cm(cur: pd.DataFrame, reference: Reference) -> tuple[pd.Series, str | None]:
    """The window's ``cm_score`` of the rows the reference's countermeasure scored (the
    reference's ``cm_sha256``; the others set to null) and, when some were left out, why: the
    scores of another countermeasure are on another scale and never compared with it."""
    want, scores = reference.info.get("cm_sha256"), cur["cm_score"]
    if not want or "cm_sha256" not in cur.columns:
        return scores, None
    scored = scores.notna()
    other = scored & (cur["cm_sha256"] != want)
    if not other.any():
        return scores, None
    counts = cur.loc[other, "cm_sha256"].fillna("unrecorded").value_counts()
    shas = ", ".join(f"{str(k)[:12]} ({n} rows)" for k, n in counts.items())
    return scores.where(~other), (
        f"cm_score: {int(other.sum())} of the window's {int(scored.sum())} scored rows come from "
        f"another countermeasure than the reference's ({want[:12]}): {shas}; left out, since "
        "scores of different countermeasures are never compared (serve the reference's "
        "countermeasure, or check against the reference of the served pair: `speakerops spoof "
        "register`)"
    )


def column_test(name: str, kind: str, spec, cur: pd.Series, ref: pd.Series) -> CheckResult:
    """One metadata/score column through Evidently's registered stat test ``spec.stattest``."""
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.calculations.stattests.registry import StatTestNotFoundError
    from evidently.legacy.core import ColumnType

    numerical = spec.type == "numerical"
    c, r = cur.dropna(), ref.dropna()
    if numerical:
        c, r = (
            pd.to_numeric(c, errors="coerce").dropna(),
            pd.to_numeric(r, errors="coerce").dropna(),
        )
    else:
        c, r = c.astype(str), r.astype(str)
    thr = None if spec.get("threshold") is None else float(spec.threshold)
    if c.empty or r.empty:
        side = "current" if c.empty else "reference"
        return CheckResult(
            name, kind, str(spec.stattest), None, thr, False, len(c), len(r),
            skipped=f"no values on the {side} side",
        )  # fmt: skip
    ftype = ColumnType.Numerical if numerical else ColumnType.Categorical
    try:
        test = get_stattest(
            r.reset_index(drop=True), c.reset_index(drop=True), ftype, str(spec.stattest)
        )
    except (StatTestNotFoundError, ValueError) as exc:
        raise ValueError(
            f"drift check {name}: stat test {spec.stattest!r} is not usable: {exc}"
        ) from exc
    res = test(r.reset_index(drop=True), c.reset_index(drop=True), ftype, thr)
    return CheckResult(
        name, kind, test.name, float(res.drift_score), float(res.actual_threshold), bool(res.drifted),
        len(c), len(r), detail={"display_name": test.display_name},
    )  # fmt: skip


# ---------------------------------------------------------------------------- check_drift


def check_drift(current: pd.DataFrame, reference: Reference, cfg=None) -> DriftResult:
    """Compare a production window (wide frame, :func:`read_production_log`) with a
    reference; ``cfg`` is the drift config (or the whole tree with ``drift``; None =
    defaults). Raises :class:`DriftRefusal` for windows that must not be compared."""
    d = drift_config(cfg)
    if current is None or len(current) == 0:
        raise DriftRefusal("the window holds no production embeddings")
    name, version = check_versions(current, reference)
    if len(current) < int(d.window.min_rows):
        raise DriftRefusal(
            f"the window holds {len(current)} rows, fewer than drift.window.min_rows="
            f"{int(d.window.min_rows)}: too few to judge drift"
        )
    cur, ref, cols, warnings = prepare_window(current, reference, d)
    if reference.model_version is None:
        warnings.append(
            "the reference has no model version: cannot verify it matches the window's model"
        )

    rng = np.random.default_rng([int(d.seed), 2])
    ref_spk = ref["speaker"].to_numpy(dtype=object) if "speaker" in ref.columns else None
    cur_s, ref_s, score_info = _scores(cur[cols].to_numpy(), ref[cols].to_numpy(), ref_spk, d, rng)
    for k in SCORE_COLUMNS:
        cur[k], ref[k] = cur_s[k], ref_s[k]

    checks = [_embedding_check(cur, ref, cols, d)]
    for col, spec in d.columns.items():
        if col not in cur.columns or col not in ref.columns:
            side = "window" if col not in cur.columns else "reference"
            checks.append(
                CheckResult(col, "metadata", str(spec.stattest), None, spec.get("threshold"), False,
                            0, 0, skipped=f"column absent from the {side}")
            )  # fmt: skip
            continue
        values, note = same_cm(cur, reference) if col == "cm_score" else (cur[col], None)
        result = column_test(col, "metadata", spec, values, ref[col])
        if note and result.skipped:  # none of the window's rows left: skipped for that reason
            result = replace(result, skipped=note)
        elif note:
            warnings.append(note)
        checks.append(result)
    for col, spec in d.scores.tests.items():
        if col not in SCORE_COLUMNS:
            raise ValueError(
                f"drift.scores.tests.{col}: unknown score (known: {', '.join(SCORE_COLUMNS)})"
            )
        checks.append(column_test(col, "score", spec, cur[col], ref[col]))
    for c in checks:
        if c.skipped:
            warnings.append(f"check {c.name} skipped: {c.skipped}")

    drifted = any(c.drifted and not c.skipped for c in checks)
    basis = {
        "embedding": (
            f"Evidently {d.embedding.method} method on "
            f"{'one utterance per speaker, ' if d.embedding.one_per_speaker else ''}"
            f"at most {int(d.embedding.max_rows)} seeded rows per side"
        ),
        "metadata": "Evidently stat tests on all non-null rows of both sides",
        "scores": {**score_info, "rows": "all rows of both sides"},
        "seed": int(d.seed),
    }
    return DriftResult(
        drifted=drifted,
        checks=checks,
        model_name=name,
        model_version=version,
        n_current=len(cur),
        n_reference=len(ref),
        dim=len(cols),
        warnings=warnings,
        decision_basis=basis,
        current=cur,
        reference=ref,
        emb_columns=cols,
    )
