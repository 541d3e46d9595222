"""The second list of a promotion: a channel condition of the eval list.

`prepare` with ``data.eval_channels: [telephone]`` writes ``<prepared_dir>/telephone/``: the
same trial pairs as the eval list, its audio through the telephone line
(:mod:`speakerops.data.channel_copy`). For every channel that the policy gates (``channels:``
in `registry/policy.yaml`) and the config prepares, candidate and champion score that list as
packaged, and :func:`speakerops.eval.assess.assess` gives the paired interval of candidate −
champion that the channel's relative gates decide on. A channel the policy gates but the
config does not prepare is recorded as a skipped check (:func:`speakerops.registry.verdict.
channel_checks`); a prepared channel whose list has other trial pairs than the eval list
refuses (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from speakerops.core.policy import Policy
from speakerops.data.channel_copy import eval_channels
from speakerops.data.manifest import read_manifest
from speakerops.eval.assess import AssessSettings, assess
from speakerops.eval.trials import TrialSet, load_trial_set
from speakerops.registry.checks import precondition

# (model URI, manifest, trials) -> (scores, LLRs or None)
Score = Callable[[str, Any, TrialSet], tuple[Any, Any]]


def gated_channels(cfg: DictConfig, policy: Policy) -> list[str]:
    """The channels the policy gates and the config prepares (in the policy's order)."""
    declared = set(eval_channels(cfg.data))
    return [name for name in policy.channels if name in declared]


def assess_channels(
    cfg: DictConfig,
    policy: Policy,
    settings: AssessSettings,
    eval_sha256: str,
    score: Score,
    candidate: tuple[str, str],
    champion: tuple[str, str] | None,
) -> tuple[dict[str, dict[str, Any]], list[dict]]:
    """({channel: {trials, candidate, champion, difference}}, preconditions) on each gated
    channel's list; ``candidate``/``champion``: (label, model URI)."""
    out: dict[str, dict[str, Any]] = {}
    checks = []
    for name in gated_channels(cfg, policy):
        folder = Path(cfg.data.prepared_dir) / name
        if not (folder / "trials_eval.csv").is_file():
            raise FileNotFoundError(
                f"{folder}/trials_eval.csv: data.eval_channels lists {name!r} but its list is not "
                "prepared: run `speakerops prepare` with this config"
            )
        manifest = read_manifest(folder / "manifest.csv")
        trials = load_trial_set(folder, "eval", manifest)  # its bytes and input pin verified
        same = trials.sha256 == eval_sha256
        checks.append(
            precondition(
                f"trials.{name}",
                same,
                f"{name} list {trials.sha256[:12]}… "
                + (
                    "has the eval list's trial pairs"
                    if same
                    else f"is not the eval list's {eval_sha256[:12]}…: results are not paired "
                    "(fail closed)"
                ),
                trials.sha256,
                eval_sha256,
            )
        )
        if not same:
            continue
        systems = {candidate[0]: score(candidate[1], manifest, trials)}
        if champion is not None:
            systems[champion[0]] = score(champion[1], manifest, trials)
        results, diff = assess(trials, systems, settings)
        champ = results.get(champion[0]) if champion is not None else None
        out[name] = {
            "trials": {
                "path": str(trials.path),
                "sha256": trials.sha256,
                "inputs_sha256": trials.inputs_sha256,
                "n_trials": int(len(trials.table)),
            },
            "candidate": dict(results[candidate[0]].figures),
            "champion": dict(champ.figures) if champ is not None else None,
            "difference": diff,
        }
    return out, checks
