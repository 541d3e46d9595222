"""The model zoo: speakerops' own registry of backbone classes, by architecture name.

A backbone class registers itself with ``@register_backbone("<arch>")``; the modules of this
package are discovered (every ``speakerops.models.*`` module is imported once, on the first
look-up), so there is no central list to edit. A config (``conf/model/<name>.yaml``) and an
encoder file name the architecture (``arch: ecapa_tdnn``) plus its keyword arguments; a class is
only ever built from this registry, never from an import path read out of a file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from torch import nn

__all__ = ["arch_of", "backbones", "build_backbone", "model_spec", "register_backbone"]

ModelT = TypeVar("ModelT", bound=type[nn.Module])

_BACKBONES: dict[str, type[nn.Module]] = {}
_discovered = False


def register_backbone(arch: str) -> Callable[[ModelT], ModelT]:
    """Class decorator: make ``cls`` buildable as ``arch: <arch>`` (names are unique)."""
    if not arch.isidentifier():
        raise ValueError(f"backbone name {arch!r}: use a lower-case identifier")

    def decorate(cls: ModelT) -> ModelT:
        known = _BACKBONES.get(arch)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ValueError(f"backbone {arch!r} is already registered by {_dotted(known)}")
        _BACKBONES[arch] = cls
        return cls

    return decorate


def backbones() -> dict[str, type[nn.Module]]:
    """Every registered architecture, name -> class (after discovering this package)."""
    _discover()
    return dict(sorted(_BACKBONES.items()))


def model_spec(model_cfg: Mapping[str, Any] | DictConfig) -> tuple[str, dict[str, Any]]:
    """(architecture name, keyword arguments) of a model config.

    The config names its architecture (``arch: ecapa_tdnn``); its ``window`` (windowed
    inference, read by the encoder) is not a keyword argument. A hand-written Hydra node with
    ``_target_`` is accepted only when the target is the import path of a registered class.
    """
    if isinstance(model_cfg, DictConfig):
        model_cfg = OmegaConf.to_container(model_cfg, resolve=True)  # type: ignore[assignment]
    cfg = dict(model_cfg)
    arch, target = cfg.pop("arch", None), cfg.pop("_target_", None)
    cfg.pop("window", None)  # inference windowing (speakerops.models.windowing), not an argument
    known = backbones()
    if target is not None:
        by_path = {_dotted(cls): name for name, cls in known.items()}
        if target not in by_path:
            raise ValueError(
                f"model._target_={target!r} is not a registered backbone; "
                f"name one with `arch:` ({', '.join(known)})"
            )
        if arch is not None and arch != by_path[target]:
            raise ValueError(f"model: arch={arch!r} and _target_={target!r} disagree")
        arch = by_path[target]
    if arch is None:
        raise ValueError(f"model config {sorted(model_cfg)}: no `arch` ({', '.join(known)})")
    if arch not in known:
        raise ValueError(f"model.arch={arch!r}: unknown backbone (known: {', '.join(known)})")
    return str(arch), cfg


def build_backbone(model_cfg: Mapping[str, Any] | DictConfig) -> nn.Module:
    """The backbone a model config describes, built from the registry."""
    arch, kwargs = model_spec(model_cfg)
    cls = _BACKBONES[arch]
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"model.arch={arch} ({cls.__name__}): {exc}") from None


def arch_of(module: nn.Module) -> str:
    """The registered name of a backbone instance's class."""
    for name, cls in backbones().items():
        if type(module) is cls:
            return name
    raise ValueError(f"{type(module).__name__} is not a registered backbone")


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _discover() -> None:
    """Import every module of this package once, so their decorators run."""
    global _discovered
    if _discovered:
        return
    package = importlib.import_module(__package__ or "speakerops.models")
    for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        importlib.import_module(info.name)
    _discovered = True
