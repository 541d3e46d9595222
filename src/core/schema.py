"""What each config value may be: types and ranges, checked once, right after composition.

`validate(cfg)` walks the composed config against `RULES` (dotted key -> `Rule`; a `*` segment
matches every key at that level) and raises `ConfigError` naming every bad key, its value, what
is allowed and what to do next, on one line:

    trainer.max_epochs=-1: expected an integer >= 1; data.min_duration='abc': expected a
    number >= 0 (fix the override on the command line or the conf/ file that sets it)

Defaults live in `conf/` only: a rule says what a value may be, never what it is. A key that
the composed config does not have is not checked (an optional group, e.g. `sweep`, or a model
without that width); a mandatory value still missing (`???`) is reported where it is used.
Choices that a stage owns (the model classes, corpora, augmentations) are checked by that stage
when it builds the object; the rules here hold the project-wide types and ranges.

No arbitrary ``_target_`` from a file: :func:`validate` also refuses every ``_target_`` outside
the allow-list of :mod:`speakerops.core.targets`, before anything is imported.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

from speakerops.core.targets import target_problems


class ConfigError(ValueError):
    """One or more config values outside what their key allows (the message names each)."""


@dataclass(frozen=True)
class Rule:
    """A value's type (`int`, `float`, `bool`, `str`, `choice`) and range; `items`: a list of
    such values; `nullable`: null is allowed too; `alternatives`: any one of these rules."""

    kind: str = "any"
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] = ()
    nullable: bool = False
    items: bool = False
    alternatives: tuple[Rule, ...] = ()

    def describe(self) -> str:
        if self.alternatives:
            text = " or ".join(r.describe() for r in self.alternatives)
        elif self.kind == "choice":
            text = "one of " + ", ".join(str(c) for c in self.choices)
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "str":
            text = "a non-empty string"
        else:
            text = "an integer" if self.kind == "int" else "a number"
            bounds = [
                f"{op} {bound:g}"
                for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                if bound is not None
            ]
            if bounds:
                text += " " + " and ".join(bounds)
        if self.items:
            text = f"a list, each {text}"
        return text + (", or null" if self.nullable else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.items:
            if not isinstance(value, (list, tuple, ListConfig)):
                return False
            one = Rule(self.kind, self.ge, self.gt, self.le, self.lt, self.choices)
            return all(one.accepts(v) for v in value)
        if self.alternatives:
            return any(r.accepts(value) for r in self.alternatives)
        if self.kind == "choice":
            return value in self.choices and not isinstance(value, bool)
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "str":
            return isinstance(value, str) and value.strip() != ""
        if self.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            return False
        if self.kind == "float" and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            return False
        return not (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )


def integer(ge: float | None = None, le: float | None = None, nullable: bool = False) -> Rule:
    return Rule("int", ge=ge, le=le, nullable=nullable)


def number(
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    nullable: bool = False,
    items: bool = False,
) -> Rule:
    return Rule("float", ge=ge, gt=gt, le=le, lt=lt, nullable=nullable, items=items)


def choice(*options: Any, items: bool = False, nullable: bool = False) -> Rule:
    return Rule("choice", choices=options, items=items, nullable=nullable)


FLAG = Rule("bool")
TEXT = Rule("str")
OPTIONAL_TEXT = Rule("str", nullable=True)
PROBABILITY = number(ge=0, le=1)
FRACTION = number(gt=0, lt=1)  # a share of something, neither none nor all
COUNT = integer(ge=1)
SEED = integer(ge=0)

RULES: dict[str, Rule] = {
    "seed": SEED,
    "runtime.threads": COUNT,
    "paths.registry_dir": TEXT,
    "paths.artifacts_dir": TEXT,
    "audio.extensions": Rule("str", items=True),
    "keys.keyring": TEXT,
    "embed.plaintext": FLAG,
    "keys.master_key_file": OPTIONAL_TEXT,
    # input checks before audio becomes a decision
    "quality.min_speech_s": number(ge=0),
    "quality.max_clipped_ratio": PROBABILITY,
    "quality.clip_level": number(gt=0, le=1),
    "quality.max_dc_offset": number(ge=0, le=1),
    "quality.min_snr_db": number(nullable=True),
    "quality.vad.threshold": PROBABILITY,
    "quality.vad.neg_threshold": PROBABILITY,
    "quality.vad.min_speech_ms": integer(ge=0),
    "quality.vad.min_silence_ms": integer(ge=0),
    "quality.vad.speech_pad_ms": integer(ge=0),
    "mlflow.experiment": TEXT,
    "mlflow.run_name": OPTIONAL_TEXT,
    "ui.host": TEXT,
    "ui.port": integer(ge=1, le=65535),
    # optimisation (train stage)
    "optim.lr": number(gt=0),
    "optim.weight_decay": number(ge=0),
    "optim.warmup_fraction": number(ge=0, lt=1),
    "optim.backbone_lr_scale": number(ge=0),
    "train.out_dir": TEXT,
    "train.resume": FLAG,
    "train.init_from": OPTIONAL_TEXT,
    # Lightning Trainer: a fixed epoch budget (the LR schedule spans it; -1 "forever" has none)
    "trainer.max_epochs": COUNT,
    "trainer.devices": Rule(
        alternatives=(COUNT, integer(ge=-1, le=-1), choice("auto"), Rule("int", ge=0, items=True))
    ),
    "trainer.num_nodes": COUNT,
    "trainer.log_every_n_steps": COUNT,
    "trainer.num_sanity_val_steps": integer(ge=-1),
    "trainer.enable_progress_bar": FLAG,
    "trainer.enable_model_summary": FLAG,
    "trainer.sync_batchnorm": FLAG,
    # data: corpus preparation and loading
    "data.root": OPTIONAL_TEXT,
    "data.prepared_dir": TEXT,
    "data.min_duration": number(ge=0),
    "data.calibration_fraction": FRACTION,
    "data.eval_fraction": number(ge=0, lt=1),
    "data.split_seed": SEED,
    "data.segment_seconds": number(gt=0, nullable=True),
    "data.workers": integer(ge=0),
    "data.trials.targets_per_utt": COUNT,
    "data.trials.nontargets_per_utt": COUNT,
    "data.trials.seed": SEED,
    "data.synthetic.n_speakers": integer(ge=2),
    "data.synthetic.utts_per_speaker": integer(ge=2),
    "data.synthetic.seed": SEED,
    "data.synthetic.sample_rate": COUNT,
    "data.synthetic.min_duration": number(gt=0),
    "data.synthetic.max_duration": number(gt=0),
    "data.synthetic.workers": integer(ge=0),
    "data.loader.crops_per_utterance": COUNT,
    "data.loader.crop_seconds": number(gt=0),
    "data.loader.batch_size": COUNT,
    "data.loader.num_workers": integer(ge=0),
    "data.loader.preload": FLAG,
    # features, augmentation, model, loss
    "features.sample_rate": COUNT,
    "features.n_mels": COUNT,
    "features.win_ms": number(gt=0),
    "features.hop_ms": number(gt=0),
    "features.f_min": number(ge=0),
    "features.f_max": number(gt=0),
    "features.mean_norm": FLAG,
    "augment.pipeline.augmentations.*.p": PROBABILITY,
    "augment.spec_augment.p": PROBABILITY,
    "augment.spec_augment.freq_masks": integer(ge=0),
    "augment.spec_augment.time_masks": integer(ge=0),
    "augment.spec_augment.freq_width": integer(ge=0),
    "augment.spec_augment.time_width": integer(ge=0),
    "model.channels": COUNT,
    "model.embedding_dim": COUNT,
    "model.n_mels": COUNT,
    "loss.head.margin": number(ge=0, lt=math.pi / 2),
    "loss.head.scale": number(gt=0),
    "loss.margin_warmup_epochs": number(ge=0),
    # evaluation
    "evaluate.p_targets": number(gt=0, lt=1, items=True),
    "evaluate.scoring.top_n": COUNT,
    "evaluate.scoring.cohort_utts_per_speaker": COUNT,
    "evaluate.scoring.cohort_max_speakers": COUNT,
    "evaluate.calibration.p_eff": FRACTION,
    "evaluate.bias.min_trials": integer(ge=0),
    "evaluate.bias.min_targets": integer(ge=0),
    "evaluate.bias.min_nontargets": integer(ge=0),
    "evaluate.bias.alpha": PROBABILITY,
    "evaluate.bootstrap.n": integer(ge=0),
    "evaluate.bootstrap.seed": SEED,
    "evaluate.bootstrap.confidence": FRACTION,
    "register.model_name": TEXT,
    "register.cm_model_name": TEXT,
    "register.policy": TEXT,
    "register.audit_log": TEXT,
    "register.lock_url": OPTIONAL_TEXT,
    "register.policy_override": OPTIONAL_TEXT,
    "register.lock_timeout_s": number(gt=0),
    # sweeps (hparams_search=<name>)
    "sweep.study_name": TEXT,
    "sweep.n_trials": COUNT,
    "sweep.n_jobs": COUNT,
    "sweep.timeout": number(gt=0, nullable=True),
    "sweep.direction": choice("minimize", "maximize"),
    # the verification service (conf/serve/default.yaml)
    "serve.model": TEXT,
    "serve.host": TEXT,
    "serve.port": integer(ge=0, le=65535),
    "serve.workers": COUNT,
    "serve.store.url": TEXT,
    "serve.tokens": TEXT,
    "serve.audit_log": TEXT,
    "serve.production_log": TEXT,
    "serve.policy": TEXT,
    "serve.retain_enrollment_audio": FLAG,
    "serve.reload.poll_s": number(ge=0),
    "serve.upload.max_bytes": COUNT,
    "serve.upload.max_files": COUNT,
    "serve.upload.content_types": Rule("str", items=True),
    "serve.min_sample_rate": COUNT,
    "serve.enroll.consistency_min_llr": number(),
    "serve.identify.top_k": COUNT,
    "serve.identify.max_top_k": COUNT,
    "serve.identify.index.exact_max": integer(ge=0),
    "serve.identify.index.candidates": COUNT,
    "serve.identify.index.nlist": integer(ge=0),
    "serve.identify.index.nprobe": COUNT,
    "serve.replay.window_s": number(ge=0),
    "serve.replay.max_recent": COUNT,
    "serve.replay.similarity": number(ge=0, le=1),
    "serve.replay.action": choice("flag", "refuse"),
    "serve.countermeasure": OPTIONAL_TEXT,
    "serve.countermeasure_sha256": OPTIONAL_TEXT,
    "serve.refuse_spoof": FLAG,
    # countermeasure fusion (conf/spoof/default.yaml)
    "spoof.fuse.rule": choice("sum", "any"),
    "spoof.fuse.split": choice("calibration", "deployment", nullable=True),
    "spoof.fuse.standardise": choice("mad", "cdf"),
}


def setting(section: Mapping[str, Any], prefix: str, dotted: str) -> Any:
    """The value at `dotted` in `section` (the config's `prefix` section), checked against its
    rule (``RULES[prefix.dotted]``): the one reader of a settings class's values. A missing key
    or a value the rule refuses is a :class:`ConfigError` naming it."""
    key = f"{prefix}.{dotted}"
    node: Any = section
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"{key}: missing from the config (conf/)")
        node = node[part]
    rule = RULES[key]
    if not rule.accepts(node):
        raise ConfigError(_refusal(key, node, rule))
    return node


def _refusal(key: str, value: Any, rule: Rule) -> str:
    shown = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
    return f"{key}={shown!r}: expected {rule.describe()}"


def _matches(node: Any, parts: list[str], prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every key of `node` matching `parts` (`*`: any one key)."""
    if not isinstance(node, DictConfig) or not parts:
        return
    head, rest = parts[0], parts[1:]
    keys = [str(k) for k in node.keys()] if head == "*" else [head] if head in node else []
    for key in keys:
        if OmegaConf.is_missing(node, key):
            continue
        try:
            value = node[key]
        except (MissingMandatoryValue, InterpolationToMissingValueError):
            continue  # reported by the code that needs it, with its key
        if rest:
            yield from _matches(value, rest, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def problems(cfg: DictConfig, rules: dict[str, Rule] | None = None) -> list[str]:
    """`key=value: expected ...` for every value its rule does not accept."""
    found = []
    for pattern, rule in (RULES if rules is None else rules).items():
        for key, value in _matches(cfg, pattern.split("."), ""):
            if not rule.accepts(value):
                found.append(_refusal(key, value, rule))
    return found


def one_line(exc: BaseException) -> str:
    """A composition error (Hydra, OmegaConf) as one line: Hydra's multi-line text without its
    search path, a missing group option followed by the group's options."""
    text = str(exc).split("Config search path:")[0]
    if "Available options in" in text:
        head, _, tail = text.partition("Available options in")
        group, _, options = tail.partition(":")
        text = f"{head.strip()} (options in {group.strip()}: {', '.join(options.split())})"
    return " ".join(text.split())


def validate(cfg: DictConfig, rules: dict[str, Rule] | None = None) -> DictConfig:
    """`cfg`, or `ConfigError` (one line) naming every key whose value its rule refuses and
    every ``_target_`` outside the allow-list."""
    found = target_problems(cfg) + problems(cfg, rules)
    if found:
        raise ConfigError(
            "; ".join(found)
            + " (fix the override on the command line or the conf/ file that sets it)"
        )
    return cfg
