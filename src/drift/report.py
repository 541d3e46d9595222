"""Evidently HTML report of a drift check.

One self-contained HTML file (Evidently's own renderer and JS, inlined — it opens offline)
made of:

1. a verdict counter and a table of every check *as decided* by
   :func:`speakerops.drift.checks.check_drift` (these numbers are the decision);
2. Evidently ``EmbeddingsDrift`` (same method and parameters) on a bounded, seeded
   subsample — one utterance per speaker, then at most ``report.max_rows`` per side —
   because the metric always draws a t-SNE map (measured on the 2-core machine: ~2.5 s for
   the whole report at 300 rows per side with one thread, ~30 s at 1 000 rows per side).
   Its score is the subsample's and can differ a little from the decision's when the
   window is larger than the subsample;
3. Evidently ``ValueDrift`` for each metadata and score column, on **all** rows with the
   same stat test and threshold as the decision (so these match the table exactly).

The two Evidently runs are merged into one snapshot through the public
``Snapshot.to_snapshot_model`` / ``Snapshot.load_model``; its HTML (``get_html_str``, what
``save_html`` writes — note ``save_html`` silently ignores ``Path`` arguments in 0.7.23)
gets a ``<title>``, and Evidently's JSON export goes beside it as ``report.evidently.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from speakerops.drift.checks import embedding_decision_rows, evidently_embedding_method
from speakerops.drift.config import drift_config
from speakerops.drift.results import DriftResult

EMBEDDING_NAME = "speaker_embedding"


def verdict_text(result: DriftResult) -> str:
    return "DRIFT DETECTED" if result.drifted else "NO DRIFT"


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _header_widgets(result: DriftResult, d, context: dict[str, Any]) -> list:
    from evidently.legacy.renderers.html_widgets import (
        CounterData,
        counter,
        table_data,
        text_widget,
    )

    model = f"{result.model_name or '?'} v{result.model_version or '?'}"
    window = context.get("window", {})
    span = f"{window.get('start', '?')} → {window.get('end', '?')}"
    fired = ", ".join(result.fired) or "none"
    widgets = [
        counter(
            counters=[
                CounterData(
                    f"speakerops drift verdict for {model}: window {span} ({result.n_current} rows) vs "
                    f"the reference ({result.n_reference} rows). Checks fired: {fired}",
                    verdict_text(result),
                )
            ],
            title="",
        ),
        table_data(
            title="Checks (the decision; computed on the rows stated in 'rows current / reference')",
            column_names=[
                "check",
                "kind",
                "method",
                "value",
                "threshold",
                "verdict",
                "rows current / reference",
            ],
            data=[
                [
                    c.name,
                    c.kind,
                    c.method,
                    _fmt(c.score),
                    _fmt(c.threshold),
                    "skipped: " + c.skipped
                    if c.skipped
                    else ("DRIFT" if c.drifted else "no drift"),
                    f"{c.n_current} / {c.n_reference}",
                ]
                for c in result.checks
            ],
        ),
    ]
    basis = result.decision_basis
    lines = [
        "**What is decided on what.** "
        f"Embedding drift: {basis.get('embedding')}. Metadata drift: {basis.get('metadata')}. "
        f"Score drift: label-free scores on all rows — `score_cohort_topk` = mean of the "
        f"{basis.get('scores', {}).get('top_k')} best cosines to a cohort of "
        f"{basis.get('scores', {}).get('cohort_size')} {basis.get('scores', {}).get('cohort')}, "
        "`score_random_pair` = cosine of seeded random pairs within each side.",
        f"The embedding panel below is Evidently's own run on a seeded subsample of at most "
        f"{int(d.report.max_rows)} rows per side (its t-SNE map is slow); the column panels use "
        "all rows, like the decision.",
    ]
    if context.get("report_note"):
        lines.append(str(context["report_note"]))
    if result.warnings:
        lines.append(
            "**Warnings:** " + " ".join(f"({i + 1}) {w}." for i, w in enumerate(result.warnings))
        )
    widgets.append(text_widget(title="", text="\n\n".join(lines)))
    return widgets


def render_report(
    result: DriftResult, cfg, out_path: str | Path, context: dict[str, Any] | None = None
) -> Path:
    """Run Evidently on ``result``'s prepared frames and save one HTML report at ``out_path``."""
    d = drift_config(cfg)
    threads = d.get("threads")
    if threads is None:
        return _render(result, d, Path(out_path), context or {})
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=int(threads)):
        return _render(result, d, Path(out_path), context or {})


def _render(result: DriftResult, d, out_path: Path, context: dict[str, Any]) -> Path:
    from evidently import DataDefinition, Dataset, Report
    from evidently.core.report import Snapshot
    from evidently.core.serialization import ReportModel, SnapshotModel
    from evidently.metrics import EmbeddingsDrift, ValueDrift

    out_path.parent.mkdir(parents=True, exist_ok=True)
    parts = []

    emb_check = result.check("embedding")
    if not emb_check.skipped:
        ci, ri = embedding_decision_rows(
            result.current,
            result.reference,
            d.embedding,
            int(d.seed),
            max_rows=int(d.report.max_rows),
        )
        cols = result.emb_columns
        cur_e = pd.DataFrame(result.current[cols].to_numpy()[ci], columns=cols)
        ref_e = pd.DataFrame(result.reference[cols].to_numpy()[ri], columns=cols)
        dd = DataDefinition(embeddings={EMBEDDING_NAME: cols})
        snap = Report(
            [
                EmbeddingsDrift(
                    embeddings_name=EMBEDDING_NAME,
                    drift_method=evidently_embedding_method(d.embedding),
                )
            ]
        ).run(
            Dataset.from_pandas(cur_e, data_definition=dd),
            Dataset.from_pandas(ref_e, data_definition=dd),
        )
        parts.append(snap.to_snapshot_model())

    metrics, num, cat = [], [], []
    specs = {**dict(d.columns.items()), **dict(d.scores.tests.items())}
    # fired checks first, so the panels a reader needs come right after the embeddings
    for c in sorted(result.checks, key=lambda c: not c.drifted):
        if c.kind == "embedding" or c.skipped or c.name not in specs:
            continue
        spec = specs[c.name]
        (num if spec.type == "numerical" else cat).append(c.name)
        metrics.append(
            ValueDrift(column=c.name, method=str(spec.stattest), threshold=float(c.threshold))
        )
    if metrics:
        cur_c, ref_c = result.current[num + cat].copy(), result.reference[num + cat].copy()
        for col in cat:  # categories as text, so the charts label them as such
            cur_c[col] = cur_c[col].astype("string").astype(object)
            ref_c[col] = ref_c[col].astype("string").astype(object)
        dd = DataDefinition(numerical_columns=num, categorical_columns=cat)
        snap = Report(metrics).run(
            Dataset.from_pandas(cur_c, data_definition=dd),
            Dataset.from_pandas(ref_c, data_definition=dd),
        )
        parts.append(snap.to_snapshot_model())

    top = parts[0] if parts else None
    merged = SnapshotModel(
        report=ReportModel(items=[]),
        name=f"speakerops drift: {verdict_text(result)}",
        timestamp=top.timestamp if top else pd.Timestamp.now(tz="UTC").to_pydatetime(),
        metadata={
            "model_name": str(result.model_name),
            "model_version": str(result.model_version),
            "verdict": verdict_text(result),
        },
        tags=["speakerops", "drift"],
        metric_results={k: v for p in parts for k, v in p.metric_results.items()},
        top_level_metrics=[m for p in parts for m in p.top_level_metrics],
        widgets=_header_widgets(result, d, context) + [w for p in parts for w in p.widgets],
        tests_widgets=[],
    )
    snapshot = Snapshot.load_model(merged)
    html = snapshot.get_html_str(as_iframe=False)
    title = f"<title>speakerops drift: {verdict_text(result)} ({result.model_name} v{result.model_version})</title>"
    html = html.replace("<head>", "<head>\n" + title, 1)
    out_path.write_text(html, encoding="utf-8")
    # Evidently's own metric values (its JSON export) beside the HTML
    out_path.with_suffix(".evidently.json").write_text(snapshot.json(), encoding="utf-8")
    return out_path
