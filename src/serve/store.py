"""The template store: SQLAlchemy over SQLite (embedded default) or PostgreSQL (``serve.store.url``).

One row per (tenant, speaker): the speaker only as the keyed pseudonym
``HMAC-SHA256(pseudonym key, "speaker\\0<tenant>\\0<speaker_id>")`` (:meth:`Keyring.pseudonym`),
the speaker id itself only encrypted (identification answers with it), the enrollment
utterances' embeddings ``[n, D]`` as one AES-256-GCM blob under the tenant's
data key (purpose ``tenant:<tenant>``), with the tenant, the pseudonym, the model name and
version and the template version bound as associated data: a blob copied to another row,
speaker, tenant or version does not decrypt. The enrollment audio is kept as keyed hashes
(replay detection) and, only with ``serve.retain_enrollment_audio``, as the uploaded bytes
encrypted under the same tenant key, bound to the tenant, the pseudonym and the audio hash
(``speakerops templates migrate`` re-embeds them when the champion moves). The template itself
is the L2-normalized mean of the utterance embeddings.

Schema: :mod:`.store_schema`, migrated with Alembic (``migrations/``): the store runs
``alembic upgrade head`` when it opens, so a new layout reaches SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, delete, func, select, text
from sqlalchemy.orm import sessionmaker

from speakerops.core.keys import KeyMaterialError, Keyring
from speakerops.eval.scoring import l2_normalize
from speakerops.serve import store_sync
from speakerops.serve.errors import ServeError
from speakerops.serve.store_schema import EnrollmentAudioRow, TemplateRow, engine_url, redact

MIGRATIONS = Path(__file__).with_name("migrations")


def upgrade_schema(engine) -> None:
    """``alembic upgrade head`` on the store (creates the tables on first use)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@dataclass(frozen=True)
class Template:
    tenant: str
    speaker_key: str
    model_name: str
    model_version: str
    template_version: int
    embeddings: np.ndarray  # [n, D] float32, one per enrollment utterance
    duration_s: float
    audio_keys: tuple[str, ...]
    speaker_id: str

    @property
    def vector(self) -> np.ndarray:
        """The template: L2-normalized mean of the normalized utterance embeddings."""
        return l2_normalize(l2_normalize(self.embeddings).mean(axis=0, keepdims=True))[0]


def tenant_purpose(tenant: str) -> str:
    return f"tenant:{tenant}"


def _aad(tenant: str, speaker_key: str, model_name: str, model_version: str, version: int) -> bytes:
    return "\x00".join(
        ("speakerops-template", tenant, speaker_key, model_name, model_version, str(version))
    ).encode()


def _id_aad(tenant: str, speaker_key: str) -> bytes:
    return "\x00".join(("speakerops-speaker-id", tenant, speaker_key)).encode()


def _audio_aad(tenant: str, speaker_key: str, audio_key: str) -> bytes:
    return "\x00".join(("speakerops-enrollment-audio", tenant, speaker_key, audio_key)).encode()


def _now() -> datetime:
    return datetime.now(timezone.utc)


class TemplateStore:
    """Encrypted templates of every tenant; see the module docstring."""

    def __init__(self, url: str, keyring: Keyring) -> None:
        self.url = url
        self.keyring = keyring
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = create_engine(engine_url(url), pool_pre_ping=True)
            upgrade_schema(self.engine)
        except Exception as exc:  # noqa: BLE001 - driver errors vary by backend
            raise ValueError(
                f"serve.store.url={redact(url)}: cannot open the store ({exc})"
            ) from exc
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def speaker_key(self, tenant: str, speaker_id: str) -> str:
        return self.keyring.pseudonym(f"speaker\x00{tenant}\x00{speaker_id}")

    def audio_key(self, tenant: str, audio_sha256: str) -> str:
        return self.keyring.pseudonym(f"audio\x00{tenant}\x00{audio_sha256}")

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # -- reading ---------------------------------------------------------------------------
    def _decode(self, row: TemplateRow) -> Template:
        aad = _aad(
            row.tenant, row.speaker_key, row.model_name, row.model_version, row.template_version
        )
        try:
            emb = self.keyring.decrypt_array(
                row.embeddings_enc, aad, what=f"template of tenant {row.tenant}"
            )
        except KeyMaterialError as exc:
            raise ServeError(
                500, "store.key", f"a stored template cannot be decrypted: {exc}"
            ) from exc
        try:
            speaker_id = self.keyring.decrypt(
                row.speaker_id_enc, _id_aad(row.tenant, row.speaker_key), what="speaker id"
            ).decode("utf-8")
        except KeyMaterialError as exc:
            raise ServeError(
                500, "store.key", f"a stored speaker id cannot be decrypted: {exc}"
            ) from exc
        return Template(
            row.tenant,
            row.speaker_key,
            row.model_name,
            row.model_version,
            row.template_version,
            emb.astype(np.float32),
            float(row.duration_s),
            tuple(json.loads(row.audio_keys)),
            speaker_id,
        )

    def get(self, tenant: str, speaker_key: str) -> Template | None:
        with self._session() as s:
            row = s.scalar(
                select(TemplateRow).where(
                    TemplateRow.tenant == tenant, TemplateRow.speaker_key == speaker_key
                )
            )
            return None if row is None else self._decode(row)

    def templates(self, tenant: str) -> list[Template]:
        with self._session() as s:
            rows = s.scalars(
                select(TemplateRow).where(TemplateRow.tenant == tenant).order_by(TemplateRow.id)
            ).all()
            return [self._decode(r) for r in rows]

    def all_templates(self) -> tuple[list[Template], list[str]]:
        """Every tenant's templates (the identification index is rebuilt from them), and a
        message for each row that does not decrypt (left out, never guessed)."""
        out, bad = [], []
        with self._session() as s:
            for row in s.scalars(select(TemplateRow).order_by(TemplateRow.id)):
                try:
                    out.append(self._decode(row))
                except ServeError as exc:
                    bad.append(f"template row {row.id} of tenant {row.tenant}: {exc.message}")
        return out, bad

    # -- generations (every worker's index follows the store: :mod:`.store_sync`) ----------
    def _ensure_tenant(self, tenant: str) -> None:
        with self._session.begin() as s:
            store_sync.ensure_tenant(s, tenant)

    def generation(self, tenant: str) -> int:
        """The tenant's change generation (0: never written)."""
        with self._session() as s:
            return store_sync.generation(s, tenant)

    def generations(self) -> dict[str, int]:
        with self._session() as s:
            return store_sync.generations(s)

    def changes_since(self, tenant: str, since: int) -> tuple[int, list, list[str]]:
        """``(generation, events, bad)`` of a tenant after generation `since`: events in order,
        each a :class:`Template` written or a speaker key erased; `bad`: rows that do not
        decrypt (left out, named)."""
        events: list[Template | str] = []
        bad: list[str] = []
        with self._session() as s:
            ch = store_sync.changes_since(s, tenant, since)
            for _, item in ch.events:
                if isinstance(item, str):
                    events.append(item)
                    continue
                try:
                    events.append(self._decode(item))
                except ServeError as exc:
                    bad.append(f"template row {item.id} of tenant {tenant}: {exc.message}")
                    events.append(item.speaker_key)  # not decryptable: not proposed either
        return ch.generation, events, bad

    def counts_by_version(self) -> dict[tuple[str, str], int]:
        with self._session() as s:
            rows = s.execute(
                select(TemplateRow.model_name, TemplateRow.model_version, func.count()).group_by(
                    TemplateRow.model_name, TemplateRow.model_version
                )
            ).all()
            return {(n, v): int(c) for n, v, c in rows}

    # -- writing ---------------------------------------------------------------------------
    def put(
        self,
        tenant: str,
        speaker_id: str,
        embeddings: np.ndarray,
        *,
        model_name: str,
        model_version: str,
        durations_s: list[float],
        audio_keys: list[str],
        mode: str,
        retained: list[bytes] | None = None,
    ) -> Template:
        """Store (``mode="replace"``) or extend (``"add"``) a speaker's enrollment; returns the
        template as stored. ``add`` onto a template of another model version is refused.
        ``retained``: the uploads' bytes (one per audio key) to keep, encrypted, for a later
        migration; ``replace`` drops what was retained before, in the same transaction."""
        emb = np.asarray(embeddings, np.float32)
        speaker_key = self.speaker_key(tenant, speaker_id)
        self._ensure_tenant(tenant)
        with self._session.begin() as s:
            gen = store_sync.bump(s, tenant)  # first: the write lock, and this write's number
            row = s.scalar(
                select(TemplateRow)
                .where(TemplateRow.tenant == tenant, TemplateRow.speaker_key == speaker_key)
                .with_for_update()
            )
            n_old, dur_old, keys_old = 0, 0.0, []
            if row is not None and mode == "add":
                old = self._decode(row)
                if (old.model_name, old.model_version) != (model_name, model_version):
                    raise ServeError(
                        409,
                        "template.version",
                        f"cannot add to a template made with {old.model_name} version "
                        f"{old.model_version}: this service runs version {model_version}; "
                        "re-enroll with mode=replace",
                        template_model_version=old.model_version,
                        service_model_version=model_version,
                    )
                emb = np.concatenate([old.embeddings, emb])
                n_old, dur_old, keys_old = len(old.embeddings), old.duration_s, list(old.audio_keys)
            n_new = len(durations_s)
            duration = (dur_old * n_old + float(np.sum(durations_s))) / (n_old + n_new)
            version = 1 if row is None else row.template_version + 1
            blob = self.keyring.encrypt_array(
                tenant_purpose(tenant),
                emb,
                _aad(tenant, speaker_key, model_name, model_version, version),
            )
            now = _now()
            if row is None:
                row = TemplateRow(tenant=tenant, speaker_key=speaker_key, created_at=now)
                s.add(row)
            row.model_name, row.model_version, row.template_version = (
                model_name,
                model_version,
                version,
            )
            row.n_utterances = int(emb.shape[0])
            row.duration_s = float(duration)
            row.embeddings_enc = blob
            row.speaker_id_enc = self.keyring.encrypt(
                tenant_purpose(tenant), speaker_id.encode("utf-8"), _id_aad(tenant, speaker_key)
            )
            row.audio_keys = json.dumps(keys_old + list(audio_keys))
            row.updated_at, row.generation = now, gen
            if mode == "replace":
                s.execute(self._audio_rows(delete(EnrollmentAudioRow), tenant, speaker_key))
            for audio_key, data in zip(audio_keys, retained or [], strict=False):
                s.add(
                    EnrollmentAudioRow(
                        tenant=tenant,
                        speaker_key=speaker_key,
                        audio_key=audio_key,
                        audio_enc=self.keyring.encrypt(
                            tenant_purpose(tenant), data, _audio_aad(tenant, speaker_key, audio_key)
                        ),
                        created_at=now,
                    )
                )
        return Template(
            tenant, speaker_key, model_name, model_version, version, emb, float(duration),
            tuple(keys_old + list(audio_keys)), speaker_id,
        )  # fmt: skip

    def migrate(
        self, old: Template, embeddings: np.ndarray, *, model_name: str, model_version: str
    ) -> Template:
        """Replace `old`'s embeddings with ones of another model (re-embedded from its
        retained audio), keeping its audio; refused (409) when the template changed since
        `old` was read (a re-enrollment meanwhile wins)."""
        emb = np.asarray(embeddings, np.float32)
        self._ensure_tenant(old.tenant)
        with self._session.begin() as s:
            gen = store_sync.bump(s, old.tenant)
            row = s.scalar(
                select(TemplateRow)
                .where(TemplateRow.tenant == old.tenant, TemplateRow.speaker_key == old.speaker_key)
                .with_for_update()
            )
            if row is None or row.template_version != old.template_version:
                raise ServeError(
                    409, "template.changed", "the template changed while it was being migrated"
                )
            version = row.template_version + 1
            row.embeddings_enc = self.keyring.encrypt_array(
                tenant_purpose(old.tenant),
                emb,
                _aad(old.tenant, old.speaker_key, model_name, model_version, version),
            )
            row.model_name, row.model_version, row.template_version = (
                model_name,
                model_version,
                version,
            )
            row.n_utterances, row.updated_at = int(emb.shape[0]), _now()
            row.generation = gen
        return Template(
            old.tenant, old.speaker_key, model_name, model_version, version, emb,
            old.duration_s, old.audio_keys, old.speaker_id,
        )  # fmt: skip

    @staticmethod
    def _audio_rows(stmt, tenant: str, speaker_key: str):
        return stmt.where(
            EnrollmentAudioRow.tenant == tenant, EnrollmentAudioRow.speaker_key == speaker_key
        )

    def retained_audio(self, tenant: str, speaker_key: str) -> list[bytes]:
        """The retained enrollment uploads of a speaker, oldest first (decrypted)."""
        with self._session() as s:
            rows = s.scalars(
                self._audio_rows(select(EnrollmentAudioRow), tenant, speaker_key).order_by(
                    EnrollmentAudioRow.id
                )
            ).all()
        try:
            return [
                self.keyring.decrypt(
                    r.audio_enc,
                    _audio_aad(r.tenant, r.speaker_key, r.audio_key),
                    what=f"retained enrollment audio of tenant {r.tenant}",
                )
                for r in rows
            ]
        except KeyMaterialError as exc:
            raise ServeError(
                500, "store.key", f"retained audio cannot be decrypted: {exc}"
            ) from exc

    def delete(self, tenant: str, speaker_key: str) -> dict[str, int]:
        """Erase a speaker's template and retained audio; returns how many rows of each."""
        self._ensure_tenant(tenant)
        with self._session.begin() as s:
            gen = store_sync.bump(s, tenant)
            res = s.execute(
                delete(TemplateRow).where(
                    TemplateRow.tenant == tenant, TemplateRow.speaker_key == speaker_key
                )
            )
            audio = s.execute(self._audio_rows(delete(EnrollmentAudioRow), tenant, speaker_key))
            if res.rowcount:  # other workers drop the speaker from their index
                store_sync.tombstone(s, tenant, speaker_key, gen)
            return {"templates": int(res.rowcount), "retained_audio": int(audio.rowcount)}

    def dispose(self) -> None:
        self.engine.dispose()


__all__ = ["Template", "TemplateStore", "tenant_purpose", "upgrade_schema"]
