"""The ``serve`` section of the composed config, validated (each default lives in
``conf/serve/default.yaml``; nothing here re-declares one), and the config's one ``quality``
section (the input checks every stage applies)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from speakerops.data.quality import QualitySettings
from speakerops.serve.index import IndexSettings

REPLAY_ACTIONS = ("flag", "refuse")


def _get(section: Mapping[str, Any], dotted: str) -> Any:
    node: Any = section
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ValueError(f"serve.{dotted}: missing from the config (conf/serve/default.yaml)")
        node = node[part]
    return node


def _number(section: Mapping[str, Any], key: str, *, low: float, integer: bool = False) -> Any:
    raw = _get(section, key)
    try:
        value = float(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"serve.{key}={raw!r}: expected a number") from exc
    if not math.isfinite(value) or value < low:
        raise ValueError(f"serve.{key}={raw!r}: expected a finite number >= {low:g}")
    if integer:
        if value != int(value):
            raise ValueError(f"serve.{key}={raw!r}: expected a whole number")
        return int(value)
    return value


def _text(section: Mapping[str, Any], key: str) -> str:
    raw = _get(section, key)
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"serve.{key}={raw!r}: expected a non-empty string")
    return raw


@dataclass(frozen=True)
class ServeSettings:
    model: str
    host: str
    port: int
    store_url: str
    tokens: str
    audit_log: str
    production_log: str
    policy: str
    quality: QualitySettings
    max_bytes: int
    max_files: int
    content_types: tuple[str, ...]
    min_sample_rate: int
    consistency_min_llr: float
    top_k: int
    max_top_k: int
    index: IndexSettings
    replay_window_s: float
    replay_max_recent: int
    replay_similarity: float
    replay_action: str

    @classmethod
    def from_cfg(cls, cfg: DictConfig | Mapping[str, Any]) -> ServeSettings:
        root = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
        s = root.get("serve") if isinstance(root, Mapping) else None
        if not isinstance(s, Mapping):
            raise ValueError("serve: no `serve` section in the config (conf/serve/default.yaml)")
        if not isinstance(root.get("quality"), Mapping):
            raise ValueError("quality: no `quality` section in the config (conf/config.yaml)")
        types = _get(s, "upload.content_types")
        if not isinstance(types, (list, tuple)) or not types:
            raise ValueError(f"serve.upload.content_types={types!r}: expected a non-empty list")
        similarity = _number(s, "replay.similarity", low=0.0)
        if similarity > 1.0:
            raise ValueError(f"serve.replay.similarity={similarity}: a cosine, at most 1")
        action = _text(s, "replay.action")
        if action not in REPLAY_ACTIONS:
            raise ValueError(f"serve.replay.action={action!r}: expected one of {REPLAY_ACTIONS}")
        top_k = _number(s, "identify.top_k", low=1, integer=True)
        max_top_k = _number(s, "identify.max_top_k", low=1, integer=True)
        if top_k > max_top_k:
            raise ValueError(f"serve.identify.top_k={top_k} > serve.identify.max_top_k={max_top_k}")
        llr = _get(s, "enroll.consistency_min_llr")
        try:
            consistency = float(llr)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"serve.enroll.consistency_min_llr={llr!r}: expected a number"
            ) from exc
        return cls(
            model=_text(s, "model"),
            host=_text(s, "host"),
            port=_number(s, "port", low=0, integer=True),
            store_url=_text(s, "store.url"),
            tokens=_text(s, "tokens"),
            audit_log=_text(s, "audit_log"),
            production_log=_text(s, "production_log"),
            policy=_text(s, "policy"),
            quality=QualitySettings.from_config(root["quality"]),
            max_bytes=_number(s, "upload.max_bytes", low=1, integer=True),
            max_files=_number(s, "upload.max_files", low=1, integer=True),
            content_types=tuple(str(t).lower() for t in types),
            min_sample_rate=_number(s, "min_sample_rate", low=1, integer=True),
            consistency_min_llr=consistency,
            top_k=top_k,
            max_top_k=max_top_k,
            index=IndexSettings(
                exact_max=_number(s, "identify.index.exact_max", low=0, integer=True),
                candidates=_number(s, "identify.index.candidates", low=1, integer=True),
                nlist=_number(s, "identify.index.nlist", low=0, integer=True),
                nprobe=_number(s, "identify.index.nprobe", low=1, integer=True),
            ),
            replay_window_s=_number(s, "replay.window_s", low=0.0),
            replay_max_recent=_number(s, "replay.max_recent", low=1, integer=True),
            replay_similarity=similarity,
            replay_action=action,
        )
