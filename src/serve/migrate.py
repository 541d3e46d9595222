"""``speakerops templates migrate``: templates follow the champion.

Every template records the model (name and version) that made it, and the service compares a
probe only with templates of the model it serves. When ``serve.model`` (the champion alias)
moves, each template of another version is re-embedded with the new model from its retained
enrollment audio (``serve.retain_enrollment_audio``: the uploads, encrypted in the store), through
the same checks as an enrollment (:func:`speakerops.serve.intake.intake`). A template that
cannot be re-embedded (retention off, audio not retained for every utterance, audio the checks
refuse now) stays as it is and is listed, by tenant and speaker pseudonym, as one whose speaker
must re-enroll; a row that does not decrypt is listed as unreadable. A template re-enrolled
while the migration ran is left to that enrollment. The running service re-reads the store into
its identification index on ``POST /admin/reload``.
The run is audited (``serve.migrate``: counts and the listed pseudonyms).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from omegaconf import DictConfig

from speakerops.core.keys import keyring_from_cfg
from speakerops.core.paths import tracking_uri
from speakerops.serve.audit import command_trail
from speakerops.serve.errors import ServeError
from speakerops.serve.intake import intake
from speakerops.serve.reload import load_model
from speakerops.serve.settings import ServeSettings
from speakerops.serve.store import Template, TemplateStore


def _reembed(encoder: Any, settings: ServeSettings, store: TemplateStore, tpl: Template) -> Any:
    """The new embeddings of `tpl` from its retained audio, or the reason there are none."""
    if not settings.retain_enrollment_audio:
        return "serve.retain_enrollment_audio is off: no enrollment audio was kept"
    audio = store.retained_audio(tpl.tenant, tpl.speaker_key)
    if len(audio) != len(tpl.audio_keys):
        return (
            f"retained audio covers {len(audio)} of the template's {len(tpl.audio_keys)} "
            "utterances (enrolled while retention was off)"
        )
    try:
        utts = [
            intake(
                encoder,
                f"retained utterance {i + 1}",
                data,
                quality=settings.quality,
                min_sample_rate=settings.min_sample_rate,
            )
            for i, data in enumerate(audio)
        ]
    except ServeError as exc:
        return f"the retained audio is refused by the new model's checks: {exc.message}"
    return np.stack([u.embedding for u in utts])


def migrate_templates(cfg: DictConfig) -> dict[str, Any]:
    """Re-embed every template of another model version than ``serve.model``'s; returns the
    report (counts, ``must_reenroll``: tenant, speaker pseudonym, version and reason)."""
    settings = ServeSettings.from_cfg(cfg)
    keyring = keyring_from_cfg(cfg)
    encoder, name, version = load_model(settings.model, tracking_uri(cfg.paths.registry_dir))
    store = TemplateStore(settings.store_url, keyring)
    report: dict[str, Any] = {
        "model_name": name,
        "model_version": version,
        "retain_enrollment_audio": settings.retain_enrollment_audio,
        "templates": 0,
        "already_current": 0,
        "migrated": 0,
        "changed_meanwhile": 0,
        "must_reenroll": [],
    }
    try:
        templates, report["unreadable"] = store.all_templates()
        for tpl in templates:
            report["templates"] += 1
            if (tpl.model_name, tpl.model_version) == (name, version):
                report["already_current"] += 1
                continue
            new = _reembed(encoder, settings, store, tpl)
            if isinstance(new, str):
                report["must_reenroll"].append(
                    {
                        "tenant": tpl.tenant,
                        "speaker_key": tpl.speaker_key,
                        "model_version": tpl.model_version,
                        "reason": new,
                    }
                )
                continue
            try:
                store.migrate(tpl, new, model_name=name, model_version=version)
            except ServeError as exc:
                if exc.code != "template.changed":
                    raise
                report["changed_meanwhile"] += 1
                continue
            report["migrated"] += 1
    finally:
        store.dispose()
    command_trail(cfg, keyring).record(
        "serve.migrate",
        **{k: v for k, v in report.items() if k != "must_reenroll"},
        must_reenroll=[(m["tenant"], m["speaker_key"]) for m in report["must_reenroll"]],
    )
    return report
