"""Every config value is checked right after composition: a bad value is refused with one line
that names the key, the value and what is allowed; the CLI exits 2, with no traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from speakerops.cli import main
from speakerops.core.config import compose
from speakerops.core.schema import RULES, ConfigError, integer, number, problems, validate

BAD = [  # override, what the one-line error must say
    ("trainer.max_epochs=-1", "trainer.max_epochs=-1: expected an integer >= 1"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0: expected an integer >= 1"),
    ("trainer.max_epochs=abc", "trainer.max_epochs='abc': expected an integer >= 1"),
    ("data.min_duration=abc", "data.min_duration='abc': expected a number >= 0"),
    ("data.min_duration=-0.5", "data.min_duration=-0.5: expected a number >= 0"),
    ("optim.lr=0", "optim.lr=0: expected a number > 0"),
    ("optim.lr=-0.001", "optim.lr=-0.001: expected a number > 0"),
    ("optim.lr=fast", "optim.lr='fast': expected a number > 0"),
    ("data.loader.batch_size=0", "data.loader.batch_size=0: expected an integer >= 1"),
    ("data.calibration_fraction=1.5", "data.calibration_fraction=1.5: expected a number > 0"),
    ("evaluate.p_targets=[0.01,2]", "evaluate.p_targets=[0.01, 2]: expected a list, each a number"),
    ("train.resume=maybe", "train.resume='maybe': expected true or false"),
]


@pytest.mark.parametrize(("override", "message"), BAD)
def test_bad_value_is_one_line_naming_the_key_and_exit_2(
    override: str, message: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written anywhere
    assert main(["train", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("speakerops train: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "fix the override on the command line or the conf/ file" in err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match=re.escape(message)):
        compose([override])


def test_unknown_model_is_one_line_with_the_options(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "model=transformer9000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model/transformer9000" in err and "ecapa_small" in err, err


def test_unknown_model_arch_is_refused_before_any_work(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "model.arch=transformer9000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "model.arch='transformer9000': unknown backbone" in err and "ecapa_tdnn" in err, err
    assert list(tmp_path.iterdir()) == []  # refused before the data, checkpoints or MLflow


def test_every_bad_value_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        compose(["trainer.max_epochs=-1", "optim.lr=0", "data.min_duration=abc"])
    text = str(info.value)
    assert "\n" not in text
    for key in ("trainer.max_epochs=-1", "optim.lr=0", "data.min_duration='abc'"):
        assert key in text


def test_the_shipped_config_and_every_option_pass() -> None:
    """conf/ as committed is valid, in every group option and with every sweep preset; and
    every rule names keys that exist (a renamed key must not leave a rule checking nothing)."""
    from omegaconf import OmegaConf

    from speakerops.core.config import conf_dir

    configs = [compose([]), compose(["hparams_search=ecapa_small"]), compose(["trainer=ddp"])]
    for group in ("model", "augment", "trainer", "features", "loss"):
        for option in sorted((conf_dir() / group).glob("*.yaml")):
            configs.append(compose([f"{group}={option.stem}"]))
    for cfg in configs:
        assert problems(cfg) == []
    seen = set()
    for pattern in RULES:
        for cfg in configs:
            absent = object()
            if OmegaConf.select(cfg, pattern.split(".*.")[0], default=absent) is not absent:
                seen.add(pattern)
    assert seen == set(RULES), set(RULES) - seen


def test_rules_check_types_ranges_null_and_lists() -> None:
    from omegaconf import OmegaConf

    rules = {"a": integer(ge=1), "b": number(gt=0, lt=1, nullable=True), "c.*.p": number(le=1)}
    ok = OmegaConf.create({"a": 3, "b": None, "c": {"x": {"p": 0.5}, "y": {"p": 1}}})
    assert validate(ok, rules) is ok
    bad = OmegaConf.create({"a": True, "b": 1.0, "c": {"x": {"p": 2.0}}})
    assert problems(bad, rules) == [
        "a=True: expected an integer >= 1",
        "b=1.0: expected a number > 0 and < 1, or null",
        "c.x.p=2.0: expected a number <= 1",
    ]
    # a value still missing (???) is left to the code that needs it
    assert problems(OmegaConf.create({"a": "???"}), rules) == []
    # nan is no number
    assert problems(OmegaConf.create({"b": float("nan")}), rules) == [
        "b=nan: expected a number > 0 and < 1, or null"
    ]


def test_a_sweep_may_only_search_allowed_values() -> None:
    """A search space reaching outside what its key allows is refused before the study starts."""
    from speakerops.train.sweep import sweep_config

    cfg = compose(["hparams_search=ecapa_small"])
    assert sweep_config(cfg) is cfg.sweep
    cfg.sweep.params["optim.lr"].low = 0.0
    with pytest.raises(
        ValueError, match=r"sweep\.params\.optim\.lr\.low=0\.0: optim\.lr expects a number > 0"
    ):
        sweep_config(cfg)
    cfg = compose(["hparams_search=ecapa_small"])
    cfg.sweep.params["model.channels"].choices = [64, 0]
    with pytest.raises(
        ValueError,
        match=r"model\.channels\.choices\[1\]=0: model\.channels expects an integer >= 1",
    ):
        sweep_config(cfg)
