"""The fault and abuse suite's shared parts: the case registry, one attempt's outcome, the
keyrings the cases use (see bench/chaos.py)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

CASES: list[tuple[str, Callable[[Path, bool], dict]]] = []


def case(name: str):
    def wrap(fn):
        CASES.append((name, fn))
        return fn

    return wrap


def outcome() -> dict:
    return {"tried": 0, "refused": 0, "survived": 0, "wrong": 0, "lost": 0, "reasons": Counter()}


def reason(text: str) -> str:
    """A refusal's message, short: paths, hex digests and numbers folded so alike refusals count
    as one reason."""
    text = re.sub(r"(/[^\s:;,'\"()]+)+", "<path>", text)
    text = re.sub(r"\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b", "<hex>", text)
    text = re.sub(r"(?<![\w.])-?\d+(\.\d+)?(?![\w.])", "N", text)
    return " ".join(text.split())[:80]


def refused(out: dict, exc: BaseException | str) -> None:
    out["refused"] += 1
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    out["reasons"][reason(text)] += 1


def attempts(
    out: dict,
    attacks: Iterable[Any],
    attempt: Callable[[Any], Any],
    refusals: type[BaseException] | tuple[type[BaseException], ...],
) -> dict:
    """Each attack once: a refusal of the expected kind counts as refused (with its reason),
    anything let through as WRONG."""
    for attack in attacks:
        out["tried"] += 1
        try:
            attempt(attack)
            out["wrong"] += 1
        except refusals as exc:
            refused(out, exc)
    return out


def ring(root: Path, name: str = "keyring.json", master: bytes | None = None):
    from speakerops.core.keys import Keyring

    return Keyring(root / name, master or bytes(range(32)))
