"""The countermeasure commands: `speakerops spoof prepare` (spoofed speech made here) and
`speakerops spoof evaluate` (a speaker encoder and its countermeasure on the unseen attacks)."""

from __future__ import annotations

from omegaconf import DictConfig

from speakerops.cli.base import Call, _print_json, command


@command(
    "spoof",
    "prepare: TTS / vocoder / replay attacks on the prepared corpus's speakers -> "
    "spoof.out_dir (attack-disjoint splits, CM protocols, SASV trial lists, hashes); "
    "evaluate: CM EER / min t-DCF on the unseen attacks, SASV-EER / a-DCF of the speaker model "
    "alone and with the countermeasure -> spoof.eval_dir/spoof_eval.json; gate: the pair "
    "against register.policy's countermeasure gates (and a champion pair), exit 1 refused; "
    "register: the countermeasure as a version of register.cm_model_name paired with a "
    "registered speaker version (lineage both ways, alias challenger; `promote` then gates and "
    "moves the pair together); fuse: several CMs as one (score-level: spoof.fuse.rule=sum, "
    "logistic weights on the calibration split's seen attacks, or any, spoof-suspected when "
    "one member is, each standardised on a split's bona fide audio: spoof.fuse.standardise=mad "
    "in MAD units, or cdf, its empirical CDF, the rejection budget split between members)",
    actions=("prepare", "evaluate", "gate", "register", "fuse"),
    options={
        "candidate": "gate: the candidate pair's spoof_eval.json (default spoof.eval_dir's)",
        "champion": "gate: the champion pair's spoof_eval.json (optional: relative gates)",
        "difference": "gate: candidate − champion with paired intervals (the pair.json of a "
        "`speakerops promote`); without it the relative gates refuse",
        "encoder": "the speaker encoder file (default spoof.evaluate.encoder)",
        "cm": "evaluate: the trained countermeasure file (default spoof.evaluate.countermeasure); "
        "register: the file `spoof evaluate` wrote with its threshold (default "
        "spoof.eval_dir/countermeasure.safetensors)",
        "members": "fuse: the countermeasure files to fuse, comma-separated (fit on "
        "spoof.fuse.split, the policy operating point's when null -> spoof.fuse.out_dir)",
        "speaker": "register: the speaker version it pairs with (models:/speaker-encoder/<N>)",
    },
)
def cmd_spoof(call: Call, cfg: DictConfig) -> int:
    if call.action == "gate":
        return _gate(call, cfg)
    if call.action == "register":
        from speakerops.registry.pair import register_countermeasure

        if "speaker" not in call.options:
            raise ValueError(
                "spoof register: speaker=models:/<name>/<N> is required (the speaker version "
                "this countermeasure pairs with)"
            )
        from pathlib import Path

        from speakerops.models.countermeasure import FILENAME

        cm = call.options.get("cm", Path(cfg.spoof.eval_dir) / FILENAME)
        _print_json(register_countermeasure(cfg, cm, call.options["speaker"]))
        return 0
    if call.action == "fuse":
        from speakerops.eval.cm_fusion_fit import fuse

        members = [m for m in str(call.options.get("members", "")).split(",") if m]
        _print_json(fuse(cfg, members))
        return 0
    if call.action == "evaluate":
        from speakerops.eval.spoof_eval import evaluate_pair

        encoder = call.options.get("encoder", cfg.spoof.evaluate.encoder)
        cm = call.options.get("cm", cfg.spoof.evaluate.countermeasure)
        _print_json(evaluate_pair(cfg, encoder, cm))
        return 0
    from speakerops.data.spoof.prepare import spoof_prepare

    _print_json(spoof_prepare(cfg.spoof))
    return 0


def _gate(call: Call, cfg: DictConfig) -> int:
    import json
    from pathlib import Path

    from speakerops.core.policy import load_policy
    from speakerops.registry.cm_gate import pair_verdict, report_markdown

    out = Path(cfg.spoof.eval_dir)
    candidate = Path(call.options.get("candidate", out / "spoof_eval.json"))
    champion = call.options.get("champion")
    difference = call.options.get("difference")
    if not candidate.is_file():
        raise FileNotFoundError(
            f"{candidate}: no spoof_eval.json (run `speakerops spoof evaluate`)"
        )
    verdict = pair_verdict(
        load_policy(cfg.register.policy),
        json.loads(candidate.read_text()),
        json.loads(Path(champion).read_text()) if champion else None,
        _difference(Path(difference)) if difference else None,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "pair_gate.md").write_text(report_markdown(verdict))
    (out / "pair_gate.json").write_text(json.dumps(verdict, indent=2, default=str))
    print(report_markdown(verdict))
    return 0 if verdict["passed"] else 1


def _difference(path) -> dict:
    """The paired difference: a `pair.json` of `promote` (its `difference`) or the bare dict."""
    import json

    data = json.loads(path.read_text())
    return data.get("difference") or {} if "cm" not in data else data
