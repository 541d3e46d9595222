"""`speakerops <command> [key=value ...]`: thin entry points over the stages.

One argument convention for every command: `key=value`. A command's own options are the bare
keys it lists (`promote candidate=models:/speaker-encoder/7 dry_run=true`); every other
`key=value` is a Hydra override of `conf/` (`model.channels=256`, `data=librispeech`,
`paths.registry_dir=/srv/registry`). `config=params.yaml` loads a composed config instead of
composing `conf/` (what the DVC stages do). `--key value` and `--flag` are accepted as
spellings of `key=value` and `flag=true` (CI scripts use them).

Each command composes the config, applies `runtime.threads`, calls one library function and
prints. Library imports sit inside the commands on purpose: torch, Lightning, MLflow and
Evidently load only for the command that needs them, so `speakerops --help` and
`speakerops params` stay instant (the one place in the package where imports are lazy).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from speakerops.core.config import compose
from speakerops.core.env import apply_threads, offline_env

EXIT_ERROR = 2  # bad input or an error; promote/gate reserve 1 for "refused"


@dataclass
class Command:
    name: str
    help: str
    run: Callable[..., int]
    options: dict[str, str] = field(default_factory=dict)  # key -> help
    flags: tuple[str, ...] = ()  # boolean options (`--flag` or `flag=true`)
    actions: tuple[str, ...] = ()  # a leading word (`keys rotate`); the first is the default
    errors_exit_2: bool = False  # any failure is exit 2 with one line (promote, gate, rollback)
    positionals: bool = False  # bare words are arguments (the service clients' SPEAKER FILE)


@dataclass
class Call:
    """A parsed command line: the command's options, Hydra overrides, an optional config file."""

    command: Command
    options: dict[str, str]
    overrides: list[str]
    config: str | None = None
    action: str | None = None
    args: list[str] = field(default_factory=list)  # bare words, for commands that take them

    def cfg(self) -> DictConfig:
        return compose(self.overrides, self.config)

    def flag(self, name: str) -> bool:
        value = self.options.get(name, "false").lower()
        if value not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{name}={self.options[name]!r}: expected true or false")
        return value in ("true", "1", "yes")


COMMANDS: dict[str, Command] = {}


def command(name: str, help_text: str, **spec: Any):
    def wrap(fn: Callable[..., int]) -> Callable[..., int]:
        COMMANDS[name] = Command(name, help_text, fn, **spec)
        return fn

    return wrap


def _print_json(data: dict) -> None:
    print(json.dumps(data, indent=2, default=str))


# --------------------------------------------------------------------------- the commands


def parse(argv: list[str]) -> Call:
    """`[action] key=value ... --key value --flag` -> a `Call` (options vs Hydra overrides)."""
    if not argv or argv[0] not in COMMANDS:
        got = f"unknown command {argv[0]!r}; " if argv else ""
        raise ValueError(f"{got}expected one of: {', '.join(COMMANDS)} (see --help)")
    cmd, rest = COMMANDS[argv[0]], list(argv[1:])
    action = None
    if cmd.actions:
        action = (
            rest.pop(0) if rest and "=" not in rest[0] and not rest[0].startswith("-") else None
        )
        action = action or cmd.actions[0]
        if action not in cmd.actions:
            raise ValueError(f"{cmd.name} {action!r}: expected one of {', '.join(cmd.actions)}")
    options: dict[str, str] = {}
    overrides: list[str] = []
    args: list[str] = []
    config = None
    while rest:
        item = rest.pop(0)
        if item.startswith("--"):
            key, sep, value = item[2:].partition("=")
            key = key.replace("-", "_")  # only the key: a value such as models:/a-b/1 is kept
            if key == "config" or key in cmd.options:
                if not sep:
                    if key in cmd.flags:
                        value = "true"
                    elif rest:
                        value = rest.pop(0)
                    else:
                        raise ValueError(f"--{key} needs a value")
                if key == "config":
                    config = value
                else:
                    options[key] = value
                continue
            raise ValueError(f"unknown option {item!r} for `{cmd.name}` (see `{cmd.name} --help`)")
        key, sep, value = item.partition("=")
        if not sep and cmd.positionals:
            args.append(item)
            continue
        if not sep:
            raise ValueError(f"unexpected argument {item!r}: arguments are key=value")
        if key == "config":
            config = value
        elif key in cmd.options:
            options[key] = value
        else:
            overrides.append(item)
    return Call(cmd, options, overrides, config, action, args)


def usage(cmd: Command | None = None) -> str:
    if cmd is None:
        lines = [__doc__.split("\n")[0], "", "commands:"]
        lines += [f"  {c.name:<11} {c.help}" for c in COMMANDS.values()]
        return "\n".join(lines + ["", "`speakerops <command> --help` lists its options."])
    lines = [f"speakerops {cmd.name}: {cmd.help}", ""]
    if cmd.actions:
        lines.append(f"actions: {' | '.join(cmd.actions)} (default {cmd.actions[0]})")
    lines += [f"  {k}=...  {h}" for k, h in cmd.options.items()]
    lines.append("  config=params.yaml  load a composed config instead of composing conf/")
    lines.append("  <key>=<value>       any Hydra override of conf/, e.g. model.channels=256")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else EXIT_ERROR
    if argv[0] in COMMANDS and any(a in ("-h", "--help") for a in argv[1:]):
        print(usage(COMMANDS[argv[0]]))
        return 0
    name = argv[0]
    try:
        call = parse(argv)
        offline_env()
        cfg = call.cfg()
        apply_threads(cfg.runtime.threads)
        return int(call.command.run(call, cfg) or 0)
    except Exception as exc:
        spec = COMMANDS.get(name)
        if not (_is_user_error(exc) or (spec is not None and spec.errors_exit_2)):
            raise
        print(f"speakerops {name}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _is_user_error(exc: BaseException) -> bool:
    """Bad input (files, values, config overrides): a one-line message, not a traceback."""
    if isinstance(exc, (FileNotFoundError, ValueError, KeyError)):
        return True
    module = type(exc).__module__
    return module.startswith(("hydra.", "omegaconf."))


if __name__ == "__main__":
    sys.exit(main())
