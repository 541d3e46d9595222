"""No arbitrary `_target_` from a file: a `params.yaml` (`config=`), conf/ or an override may
only name the classes on the allow-list (core/targets.py, checked by core/schema.py); anything else is refused before it is
imported, with one line naming the key and the value."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from speakerops.cli import main
from speakerops.core.config import compose, write_params
from speakerops.core.schema import ConfigError
from speakerops.core.targets import ALLOWED_TARGETS

from .conftest import REPO

# where a params file can carry a `_target_` that the train stage instantiates
KEYS = [
    ("callbacks", "evil"),
    ("loss", "head"),
    ("trainer",),
    ("logger",),
    ("augment", "pipeline"),
    ("augment", "pipeline", "augmentations", "noise"),
    ("trainer", "strategy"),
    ("model",),
]


def _poisoned(tmp_path: Path, where: tuple[str, ...], target: str) -> Path:
    params = write_params(compose(), tmp_path / "params.yaml")
    data = yaml.safe_load(params.read_text())
    node = data
    for key in where:
        node = node.setdefault(key, {})
    node["_target_"] = target
    node["command"] = f"touch {tmp_path / 'pwned'}"
    params.write_text(yaml.safe_dump(data))
    return params


@pytest.mark.parametrize("where", KEYS, ids=[".".join(k) for k in KEYS])
def test_os_system_in_a_params_file_is_refused_naming_key_and_value(
    where: tuple[str, ...], tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    params = _poisoned(tmp_path, where, "os.system")
    assert main(["train", f"config={params}"]) == 2
    err = capsys.readouterr().err
    key = ".".join(where) + "._target_"
    assert f"{key}='os.system': not a class speakerops may build" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "pwned").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no work was done


def test_refused_before_the_module_is_imported(tmp_path: Path, monkeypatch) -> None:
    """A target in a module that would run code on import: the module is never imported."""
    (tmp_path / "evil_speakerops_plugin.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\nclass Boom: ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    params = _poisoned(tmp_path, ("callbacks", "boom"), "evil_speakerops_plugin.Boom")
    with pytest.raises(ConfigError, match=re.escape("callbacks.boom._target_=")):
        compose(config_file=params)
    with pytest.raises(ConfigError, match="evil_speakerops_plugin.Boom"):
        compose(["+callbacks.boom._target_=evil_speakerops_plugin.Boom"])
    assert "evil_speakerops_plugin" not in sys.modules and not (tmp_path / "imported").exists()
    # an operator's own class is allowed through the environment, never through a file
    monkeypatch.setenv("SPEAKEROPS_EXTRA_TARGETS", "evil_speakerops_plugin.Boom")
    assert compose(config_file=params).callbacks.boom._target_ == "evil_speakerops_plugin.Boom"


def test_a_model_target_outside_the_zoo_namespace_is_refused_and_every_shipped_one_allowed(
    tmp_path: Path,
) -> None:
    params = _poisoned(tmp_path, ("model",), "builtins.eval")
    with pytest.raises(ConfigError, match=re.escape("model._target_='builtins.eval'")):
        compose(config_file=params)
    # the zoo's own check still decides a speakerops.models path (registered classes only)
    ok = _poisoned(tmp_path, ("model",), "speakerops.models.ecapa.ECAPATDNN")
    assert compose(config_file=ok).model._target_ == "speakerops.models.ecapa.ECAPATDNN"
    shipped = {
        m.group(1)
        for f in (REPO / "conf").rglob("*.yaml")
        for m in re.finditer(r"_target_[:=]\s*([\w.]+)", f.read_text())
    }
    assert shipped and shipped <= ALLOWED_TARGETS, shipped - ALLOWED_TARGETS
