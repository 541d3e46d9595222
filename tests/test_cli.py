"""The command line: one argument convention, `python -m speakerops`, runtime.threads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from speakerops.cli import COMMANDS, main, parse

from .conftest import REPO


def test_python_m_speakerops_is_the_speakerops_command(tmp_path: Path) -> None:
    helped = subprocess.run(
        [sys.executable, "-m", "speakerops", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert helped.returncode == 0 and all(name in helped.stdout for name in COMMANDS)
    out = tmp_path / "params.yaml"
    ran = subprocess.run(
        [sys.executable, "-m", "speakerops", "params", f"output={out}", "seed=7"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stderr
    assert f"wrote {out}" in ran.stdout and "\nseed: 7\n" in out.read_text()


def test_one_argument_convention() -> None:
    a = parse(["promote", "candidate=models:/m/2", "dry_run=true", "model.channels=8"])
    b = parse(["promote", "--candidate", "models:/m/2", "--dry-run", "model.channels=8"])
    assert a.options == b.options == {"candidate": "models:/m/2", "dry_run": "true"}
    assert a.overrides == b.overrides == ["model.channels=8"]  # everything else is Hydra's
    assert a.flag("dry_run") and not parse(["promote"]).flag("dry_run")
    # `--key=value`: hyphens become underscores in the key only, never in the value
    d = parse(["promote", "--candidate=models:/speaker-encoder/1", "--dry-run"])
    assert d.options == {"candidate": "models:/speaker-encoder/1", "dry_run": "true"}
    c = parse(["gate", "--config", "params.yaml", "register.gate_dir=x"])
    assert c.config == "params.yaml" and c.overrides == ["register.gate_dir=x"]
    assert parse(["gate", "config=params.yaml"]).config == "params.yaml"
    keys = parse(["keys", "rotate", "purpose=audit", "--retire"])
    assert keys.action == "rotate" and keys.options == {"purpose": "audit", "retire": "true"}
    assert parse(["keys"]).action == "status"
    with pytest.raises(ValueError, match="unknown option '--nope'"):
        parse(["train", "--nope", "1"])
    with pytest.raises(ValueError, match="arguments are key=value"):
        parse(["train", "stray"])
    with pytest.raises(ValueError, match="expected one of"):
        parse(["keys", "explode"])


def test_errors_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nonsense"]) == 2
    assert "unknown command 'nonsense'" in capsys.readouterr().err
    assert main(["promote"]) == 2  # promote reserves 1 for "refused"
    assert "candidate=models:/<name>/<N> is required" in capsys.readouterr().err
    assert main(["params", "--help"]) == 0 and "output=" in capsys.readouterr().out


def test_runtime_threads_is_applied_once_at_the_start_of_a_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = torch.get_num_threads()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(var, "1")  # restored after the test
    try:
        assert main(["params", f"output={tmp_path / 'p.yaml'}", "runtime.threads=2"]) == 0
        assert torch.get_num_threads() == 2
        assert os.environ["OMP_NUM_THREADS"] == "2"  # and child processes inherit it
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert main(["params", f"output={tmp_path / 'p.yaml'}"]) == 0  # default: $OMP_NUM_THREADS
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert main(["params", "runtime.threads=0"]) == 2
