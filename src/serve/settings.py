"""The ``serve`` section of the composed config, validated (each default lives in
``conf/serve/default.yaml``; each value's type and range in :data:`speakerops.core.schema.RULES`,
read through its one reader :func:`~speakerops.core.schema.setting`), and the config's one
``quality`` section (the input checks every stage applies)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from speakerops.core.schema import ConfigError, setting
from speakerops.data.quality import QualitySettings
from speakerops.serve.index import IndexSettings


@dataclass(frozen=True)
class ServeSettings:
    model: str
    host: str
    port: int
    workers: int
    store_url: str
    tokens: str
    audit_log: str
    production_log: str
    policy: str
    retain_enrollment_audio: bool
    reload_poll_s: float
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
    countermeasure: str | None
    countermeasure_sha256: str | None
    refuse_spoof: bool

    @classmethod
    def from_cfg(cls, cfg: DictConfig | Mapping[str, Any]) -> ServeSettings:
        root = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
        s = root.get("serve") if isinstance(root, Mapping) else None
        if not isinstance(s, Mapping):
            raise ValueError("serve: no `serve` section in the config (conf/serve/default.yaml)")
        if not isinstance(root.get("quality"), Mapping):
            raise ValueError("quality: no `quality` section in the config (conf/config.yaml)")

        def get(key: str) -> Any:
            return setting(s, "serve", key)

        types = get("upload.content_types")
        if not types:
            raise ConfigError("serve.upload.content_types=[]: expected at least one type")
        top_k, max_top_k = get("identify.top_k"), get("identify.max_top_k")
        if top_k > max_top_k:
            raise ConfigError(
                f"serve.identify.top_k={top_k} > serve.identify.max_top_k={max_top_k}"
            )
        return cls(
            model=get("model"),
            host=get("host"),
            port=get("port"),
            workers=get("workers"),
            store_url=get("store.url"),
            tokens=get("tokens"),
            audit_log=get("audit_log"),
            production_log=get("production_log"),
            policy=get("policy"),
            retain_enrollment_audio=get("retain_enrollment_audio"),
            reload_poll_s=float(get("reload.poll_s")),
            quality=QualitySettings.from_config(root["quality"]),
            max_bytes=get("upload.max_bytes"),
            max_files=get("upload.max_files"),
            content_types=tuple(str(t).lower() for t in types),
            min_sample_rate=get("min_sample_rate"),
            consistency_min_llr=float(get("enroll.consistency_min_llr")),
            top_k=top_k,
            max_top_k=max_top_k,
            index=IndexSettings(
                exact_max=get("identify.index.exact_max"),
                candidates=get("identify.index.candidates"),
                nlist=get("identify.index.nlist"),
                nprobe=get("identify.index.nprobe"),
            ),
            replay_window_s=float(get("replay.window_s")),
            replay_max_recent=get("replay.max_recent"),
            replay_similarity=float(get("replay.similarity")),
            replay_action=get("replay.action"),
            countermeasure=get("countermeasure"),
            countermeasure_sha256=get("countermeasure_sha256"),
            refuse_spoof=get("refuse_spoof"),
        )
