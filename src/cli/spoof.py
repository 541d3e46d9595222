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
    "alone and with the countermeasure -> spoof.eval_dir/spoof_eval.json",
    actions=("prepare", "evaluate"),
    options={
        "encoder": "the speaker encoder file (default spoof.evaluate.encoder)",
        "cm": "the countermeasure file (default spoof.evaluate.countermeasure)",
    },
)
def cmd_spoof(call: Call, cfg: DictConfig) -> int:
    if call.action == "evaluate":
        from speakerops.eval.spoof_eval import evaluate_pair

        encoder = call.options.get("encoder", cfg.spoof.evaluate.encoder)
        cm = call.options.get("cm", cfg.spoof.evaluate.countermeasure)
        _print_json(evaluate_pair(cfg, encoder, cm))
        return 0
    from speakerops.data.spoof.prepare import spoof_prepare

    _print_json(spoof_prepare(cfg.spoof))
    return 0
