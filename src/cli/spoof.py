"""The countermeasure commands: `speakerops spoof prepare` (spoofed speech made here)."""

from __future__ import annotations

from omegaconf import DictConfig

from speakerops.cli.base import Call, _print_json, command


@command(
    "spoof",
    "prepare: TTS / vocoder / replay attacks on the prepared corpus's speakers -> "
    "spoof.out_dir (attack-disjoint splits, CM protocols, SASV trial lists, hashes)",
    actions=("prepare",),
)
def cmd_spoof(call: Call, cfg: DictConfig) -> int:
    from speakerops.data.spoof.prepare import spoof_prepare

    _print_json(spoof_prepare(cfg.spoof))
    return 0
