"""speakerops as a package: the default config ships inside it and a project's conf/ is layered
over it file by file; `speakerops init` scaffolds a project."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from speakerops.core.config import (
    compose,
    conf_layers,
    conf_options,
    find_conf_file,
    packaged_conf_dir,
    packaged_policy,
)
from speakerops.train.sweep.presets import preset_path

from .conftest import REPO


def test_pyproject_ships_every_subpackage_and_the_config_tree() -> None:
    """The wheel's package list is explicit (src/ is mapped to `speakerops`): it must name every
    folder of src/ with an __init__.py, and map conf/ and the default policy into the package."""
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(("speakerops", *p.parent.relative_to(REPO / "src").parts))
        for p in (REPO / "src").rglob("__init__.py")
    }
    listed = set(tool["packages"])
    assert found - listed == set(), f"missing from pyproject's packages: {found - listed}"
    assert tool["package-dir"]["speakerops.conf"] == "conf"
    assert tool["package-dir"]["speakerops.conf.registry"] == "registry"
    assert "policy.yaml" in tool["package-data"]["speakerops.conf.registry"]
    # in the checkout the packaged tree is the clone's own conf/ (one copy)
    assert packaged_conf_dir() == REPO / "conf"
    assert packaged_policy() == REPO / "registry" / "policy.yaml"


def test_a_project_conf_is_layered_over_the_packaged_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "project").mkdir()
    # one replaced option, one new option, top-level settings; nothing else is copied
    (conf / "model" / "ecapa_small.yaml").write_text(
        "arch: ecapa_tdnn\nn_mels: ${features.n_mels}\nchannels: 48\nembedding_dim: 96\n"
        "attention_channels: 16\nres2_scale: 8\n"
    )
    (conf / "model" / "mynet.yaml").write_text(
        "arch: xvector\nn_mels: ${features.n_mels}\nchannels: 32\nstats_channels: 64\n"
        "embedding_dim: 16\n"
    )
    (conf / "project" / "default.yaml").write_text("seed: 7\nregister:\n  model_name: my-enc\n")
    monkeypatch.chdir(tmp_path)
    assert conf_layers() == [conf, REPO / "conf"]
    cfg = compose([])
    assert (cfg.model.channels, cfg.model.embedding_dim) == (48, 96)  # the project's file
    assert (cfg.seed, cfg.register.model_name) == (7, "my-enc")  # conf/project/default.yaml
    assert cfg.register.policy == "registry/policy.yaml"  # the rest: packaged defaults
    assert cfg.drift.embedding.method in ("model", "mmd")
    assert compose(["model=mynet"]).model.arch == "xvector"
    assert compose(["seed=3"]).seed == 3  # the command line still wins
    assert {"mynet", "ecapa512", "ecapa_small"} <= set(conf_options("model"))
    assert find_conf_file("model/ecapa_small.yaml") == conf / "model" / "ecapa_small.yaml"
    assert find_conf_file("drift/default.yaml") == REPO / "conf" / "drift" / "default.yaml"
    assert preset_path("s")[0] == conf / "experiment" / "generated" / "s_best.yaml"
    # no conf/ at all: the packaged tree alone, as in the clone
    monkeypatch.chdir(tmp_path / "conf" / "model")
    assert conf_layers() == [REPO / "conf"]
    assert compose([]).model.channels == 64
