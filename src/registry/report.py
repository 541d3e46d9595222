"""The promotion report: Markdown a person reads (and CI publishes as the job summary).

:func:`render_report` is a pure function of the verdict dict written by
:func:`speakerops.registry.promote.promote` (plus who/when), so the report and
`verdict.json` never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_BIAS_NAMES = {"worst_ratio": "worst ratio", "garbe": "GARBE", "fdr": "FDR"}
_NAMES = {
    "eer": "EER",
    "min_dcf_0.01": "minDCF (P=0.01)",
    "min_dcf_0.05": "minDCF (P=0.05)",
    "act_dcf_0.01": "actDCF (P=0.01)",
    "act_dcf_0.05": "actDCF (P=0.05)",
    "cllr": "Cllr (bits)",
    "min_cllr": "minCllr (bits)",
    "cal_loss": "calibration loss Cllr − minCllr (bits)",
    "fmr": "FMR at θ",
    "fnmr": "FNMR at θ",
}


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "n/a"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "∞"
    return f"{v:.{digits}f}"


def _signed(x: Any, digits: int = 4) -> str:
    s = _num(x, digits)
    if s in ("n/a", "∞"):
        return s
    return s if s.startswith("-") else f"+{s}"


def _interval(f: Mapping[str, Any] | None, signed: bool = False) -> str:
    if not f:
        return ""
    lo, hi = f.get("low"), f.get("high")
    if lo is None or hi is None or any(math.isnan(float(v)) for v in (lo, hi)):
        return ""
    fmt = _signed if signed else _num
    return f"[{fmt(lo)}, {fmt(hi)}]"


def _metric_name(metric: str | None) -> str:
    if metric is None:
        return ""
    if metric in _NAMES:
        return _NAMES[metric]
    if metric.startswith("bias."):
        parts = metric.split(".")
        what = {"worst_ratio": "worst group ratio", "garbe": "GARBE", "fdr": "FDR"}.get(
            parts[-1], parts[-1]
        )
        scope = "all columns" if len(parts) == 2 else parts[1]
        return f"bias: {what} ({scope})"
    return metric


def _verdict_cell(c: Mapping[str, Any]) -> str:
    if c.get("skipped"):
        return "➖ skipped"
    return "✅ pass" if c["passed"] else "❌ **FAIL**"


def _threshold_cell(c: Mapping[str, Any]) -> str:
    kind = c.get("kind")
    if kind == "precondition":
        t = c.get("threshold")
        return f"`{str(t)[:12]}…`" if isinstance(t, str) and len(t) > 20 else str(t or "")
    if kind == "relative":
        m = float(c["threshold"])
        if c.get("op") == "superior":
            return f"Δ high < {0.0 - m:g}" if c.get("decided_on") == "high" else f"Δ low > +{m:g}"
        return f"Δ high ≤ +{m:g}" if c.get("decided_on") == "high" else f"Δ low ≥ −{m:g}"
    sym = "≤" if c.get("op") == "max" else "≥"
    on = "" if c.get("decided_on", "value") == "value" else f" ({c['decided_on']} bound)"
    return f"{sym} {float(c['threshold']):g}{on}"


def _value_cell(c: Mapping[str, Any]) -> str:
    kind = c.get("kind")
    if kind == "precondition":
        v = c.get("value")
        return f"`{str(v)[:12]}…`" if isinstance(v, str) and len(v) > 20 else str(v or "—")
    if c.get("skipped"):
        return "—"
    if kind == "relative":
        return f"Δ {_signed(c.get('value'))}"
    return _num(c.get("value"))


def _gate_name(c: Mapping[str, Any]) -> str:
    kind = c.get("kind")
    if kind == "precondition":
        return {
            "trials.candidate": "candidate evaluated on the pinned trial list",
            "trials.champion": "champion evaluated on the pinned trial list",
            "champion.present": "champion present",
            "calibration.candidate": "candidate ships a calibration",
        }.get(c["gate"], c["gate"].replace("trials.", "same trial pairs on the list: ", 1))
    if kind == "relative":
        test = "superiority" if c.get("op") == "superior" else "non-inferiority"
        where = f"{c['channel']}: " if c.get("channel") else ""
        return f"{where}{_metric_name(c['metric'])} vs champion ({test})"
    return _metric_name(c["metric"])


def render_report(verdict: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> str:
    """The Markdown report of a promotion verdict."""
    ctx = dict(context or {})
    cand = verdict["candidate"]
    champ = verdict.get("champion")
    name = verdict["model_name"]
    passed = verdict["passed"]
    dry = verdict.get("dry_run")
    champ_txt = f"v{champ['version']}" if champ else "none"
    out: list[str] = []
    vs = f"vs champion {champ_txt}" if champ else "(no champion yet)"
    out.append(f"# Promotion report: {name} v{cand['version']} {vs}")
    out.append("")
    n_fail = sum(1 for c in verdict["checks"] if not c["passed"])
    n_all = len(verdict["checks"])
    if passed:
        what = (
            "would become `champion` (dry run: nothing changed)"
            if dry
            else "is now `champion`" + (f" (replacing v{champ['version']})" if champ else "")
        )
        out.append(f"**✅ PASS**: candidate v{cand['version']} {what}. All {n_all} checks passed.")
    else:
        keep = f"champion {champ_txt} is unchanged" if champ else "no champion was set"
        out.append(
            f"**❌ REFUSED**: candidate v{cand['version']} is not promoted; {keep}. "
            f"{n_fail} of {n_all} checks failed"
            + (" (below, with the figures)." if verdict.get("figures") else " (below).")
        )
    out.append("")
    trials = verdict["trials"]
    pol = verdict["policy"]
    op = pol["operating_point"]
    boot = verdict["settings"]["bootstrap"]
    bias_cfg = verdict["settings"]["bias"]
    conf = int(round(100 * boot["confidence"]))
    models = verdict.get("models") or {}
    rows = [
        (
            "Candidate",
            f"`{cand['uri']}` (run `{cand.get('run_id') or '—'}`, commit `{(cand.get('git_commit') or '—')[:12]}`)",
        ),
        (
            "Champion",
            f"`{champ['uri']}` (run `{champ.get('run_id') or '—'}`)"
            if champ
            else "none (first promotion)",
        ),
        (
            "Trial list",
            f"`{Path(trials['path']).name}` sha256 `{trials['sha256'][:16]}…`: "
            f"{trials['n_trials']} trials ({trials['n_target']} target) from "
            f"{trials['n_enroll_speakers']} enrollment speakers",
        ),
        (
            "Shipped threshold",
            f"Bayes decision on calibrated LLRs at P_target = {op['p_target']:g}, "
            f"C_miss = {op['c_miss']:g}, C_fa = {op['c_fa']:g}: accept iff LLR ≥ θ = "
            f"{pol['llr_threshold']:.3f}",
        ),
        (
            "Intervals",
            f"{conf} % percentile intervals, bootstrap over {boot['unit']}s "
            f"({boot['n']} replicates, seed {boot['seed']}); candidate − champion "
            "intervals are paired (same speaker resamples)",
        ),
        (
            "Bias",
            f"columns {', '.join(bias_cfg['columns'])}; a trial belongs to a group when "
            + (
                "both sides are in it"
                if bias_cfg["pairing"] == "same_group"
                else "its test side is in it"
            )
            + f"; groups with < {bias_cfg['min_trials']} trials, < {bias_cfg['min_targets']} "
            f"targets or < {bias_cfg['min_nontargets']} non-targets are reported, not gated",
        ),
        ("Policy", f"`{pol['path']}` sha256 `{pol['sha256'][:16]}…`"),
    ]
    if models.get("candidate"):
        rows.append(("Candidate scoring", _scoring_text(models["candidate"])))
    if models.get("champion"):
        rows.append(("Champion scoring", _scoring_text(models["champion"])))
    if ctx:
        who = ctx.get("user", "?")
        when = ctx.get("timestamp", "?")
        run = f" ([CI run]({ctx['run_url']}))" if ctx.get("run_url") else ""
        rows.append(("Evaluated", f"{when} by {who}{run}" + (" — dry run" if dry else "")))
    out.append("| | |")
    out.append("|---|---|")
    out += [f"| {k} | {v} |" for k, v in rows]
    out.append("")

    out.append("## Gates")
    out.append("")
    out.append(f"| gate | value | {conf} % interval | threshold | verdict |")
    out.append("|---|---|---|---|---|")
    for c in verdict["checks"]:
        signed = c.get("kind") == "relative"
        interval = "" if c.get("kind") == "precondition" else _interval(c, signed)
        out.append(
            f"| {_gate_name(c)} | {_value_cell(c)} | {interval} | {_threshold_cell(c)} | "
            f"{_verdict_cell(c)} |"
        )
    out.append("")
    failed = [c for c in verdict["checks"] if not c["passed"]]
    if failed:
        out.append("### Why it was refused")
        out.append("")
        out += [f"- {c['reason']}" for c in failed]
        out.append("")

    figs = verdict.get("figures")
    if figs:
        out += _comparison(figs, conf)
    bias = verdict.get("bias")
    if bias:
        out += _bias_section(bias, verdict, pol["llr_threshold"])
    plots = verdict.get("plots") or {}
    if plots:
        out.append("## Plots")
        out.append("")
        captions = {
            "det": "DET curves of both models on the pinned trials; dots: the shipped threshold",
            "calibration": "Calibration: actual vs minimum detection cost across operating points, and reliability of the LLRs",
        }
        for key, fname in plots.items():
            cap = captions.get(key) or f"Per-group error rates by {key[len('bias_') :]}"
            out.append(f"**{cap}**")
            out.append("")
            out.append(f"![{cap}]({fname})")
            out.append("")
    if not figs:
        out.append("_No figures: a precondition failed, so neither model was scored._")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _scoring_text(info: Mapping[str, Any]) -> str:
    cal = info.get("calibration") or {}
    if not cal:
        c = "no calibration"
    elif cal.get("kind") == "quality":
        c = (
            f"quality calibration LLR = {cal['a']:.3f}·s + {cal['b']:.3f} + "
            f"{cal['c']:.3f}·log(min duration)"
        )
    else:
        c = f"linear calibration LLR = {cal['a']:.3f}·s {'+' if cal['b'] >= 0 else '−'} {abs(cal['b']):.3f}"
    return f"{info.get('scoring', 'cosine')}; {c}"


def _comparison(figs: Mapping[str, Any], conf: int) -> list[str]:
    cand, champ, diff = figs["candidate"], figs.get("champion"), figs.get("difference")
    out = ["## Candidate vs champion", ""]
    head = f"| metric | candidate [{conf} % interval] |"
    sep = "|---|---|"
    if champ:
        head += f" champion [{conf} % interval] | candidate − champion (paired) |"
        sep += "---|---|"
    out += [head, sep]
    keys = [k for k in _NAMES if k in cand] + sorted(
        k for k in cand if k.startswith("bias.") and k.count(".") == 1
    )
    for k in keys:
        row = f"| {_metric_name(k)} | {_num(cand[k]['value'])} {_interval(cand[k])} |"
        if champ:
            ch = champ.get(k) or {}
            d = (diff or {}).get(k) or {}
            row += f" {_num(ch.get('value'))} {_interval(ch)} | {_signed(d.get('value'))} {_interval(d, True)} |"
        out.append(row)
    out.append("")
    return out


def _bias_section(bias: Mapping[str, Any], verdict: Mapping[str, Any], theta: float) -> list[str]:
    out = [f"## Per-group figures at the shipped threshold θ = {theta:.3f}", ""]
    out.append(
        "Ratios are to the same figure over all trials assigned to a group of the column. "
        "`insufficient trials` groups are shown and not gated; `cross-group` trials (the two "
        "sides in different groups) are shown and belong to no group."
    )
    out.append("")
    cand = bias.get("candidate") or {}
    champ = bias.get("champion") or {}
    figs = (verdict.get("figures") or {}).get("candidate") or {}
    for col in verdict["settings"]["bias"]["columns"]:
        out.append(f"### {col}")
        out.append("")
        for label, tables in (("candidate", cand), ("champion", champ)):
            b = tables.get(col)
            if b is None:
                continue
            who = f"{label} v{verdict[label]['version']}"
            if b.get("status") != "ok":
                out.append(f"- {who}: {b.get('status')}")
                out.append("")
                continue
            summary = []
            for k in ("worst_ratio", "garbe", "fdr"):
                f = figs.get(f"bias.{col}.{k}") if label == "candidate" else None
                iv = _interval(f) if f else ""
                summary.append(f"{_BIAS_NAMES[k]} {_num(b.get(k))}" + (f" {iv}" if iv else ""))
            n_ok = sum(1 for r in b["table"] if r["status"] == "ok")
            if b.get("worst_group") and n_ok >= 2:
                worst = (
                    f"worst group **{b['worst_group']}** (by "
                    f"{b['worst_metric'].replace('_ratio', '').upper()} ratio); "
                )
            elif n_ok == 1:
                worst = "a single group with enough trials: no disparity to measure; "
            else:
                worst = "fewer than 2 groups with enough trials: not assessable; "
            if label == "champion":
                worst = worst.replace("**", "<b>", 1).replace("**", "</b>", 1)
                out.append(f"<details><summary>{who}: {worst}{'; '.join(summary)}</summary>")
            else:
                out.append(f"**{who}**: {worst}{'; '.join(summary)}")
            out.append("")
            out.append(
                "| group | trials | targets | non-targets | EER | FMR | FNMR | DCF | EER ratio | "
                "FMR ratio | FNMR ratio | DCF ratio | status |"
            )
            out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            o = b["overall"]
            for r in b["table"]:
                bold = "**" if (r["group"] == b.get("worst_group") and label == "candidate") else ""
                out.append(
                    f"| {bold}{r['group']}{bold} | {r['n_trials']} | {r['n_target']} | "
                    f"{r['n_nontarget']} | {_num(r['eer'])} | {_num(r['fmr'])} | "
                    f"{_num(r['fnmr'])} | {_num(r.get('dcf'))} | {_num(r['eer_ratio'], 2)} | "
                    f"{_num(r['fmr_ratio'], 2)} | {_num(r['fnmr_ratio'], 2)} | "
                    f"{_num(r.get('dcf_ratio'), 2)} | {r['status']} |"
                )
            out.append(
                f"| _overall_ | {o['n_trials']} | | | {_num(o['eer'])} | {_num(o['fmr'])} | "
                f"{_num(o['fnmr'])} | {_num(o.get('dcf'))} | 1.00 | 1.00 | 1.00 | 1.00 | |"
            )
            out.append("")
            if label == "champion":
                out.append("</details>")
                out.append("")
    return out


def write_report(
    verdict: Mapping[str, Any], path: str | Path, context: Mapping[str, Any] | None = None
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(verdict, context))
    return path
