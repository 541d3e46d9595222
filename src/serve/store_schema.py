"""The template store's tables (SQLAlchemy 2); the layout's history is the Alembic
migrations in ``migrations/versions/`` (the store upgrades to head when it opens)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class TemplateRow(Base):
    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("tenant", "speaker_key", name="uq_tenant_speaker"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)  # ix_templates_tenant
    speaker_key: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(64))
    template_version: Mapped[int] = mapped_column(Integer)
    n_utterances: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)  # mean enrollment utterance duration
    embeddings_enc: Mapped[bytes] = mapped_column(LargeBinary)
    speaker_id_enc: Mapped[bytes] = mapped_column(LargeBinary)  # identify answers with it
    audio_keys: Mapped[str] = mapped_column(Text)  # JSON list of keyed audio hashes
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    generation: Mapped[int] = mapped_column(BigInteger, server_default="0")  # tenant's, at write


class TenantGeneration(Base):
    """A tenant's change counter: bumped by every enroll, delete and migration (migration
    0003); a worker's index follows the store by it."""

    __tablename__ = "tenant_generations"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger)


class TombstoneRow(Base):
    """A speaker erased at a generation (the keyed pseudonym only): other workers drop it from
    their identification index."""

    __tablename__ = "template_tombstones"
    __table_args__ = (Index("ix_template_tombstones_generation", "tenant", "generation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    speaker_key: Mapped[str] = mapped_column(String(64))
    generation: Mapped[int] = mapped_column(BigInteger)


class EnrollmentAudioRow(Base):
    """One retained enrollment utterance (``serve.retain_enrollment_audio``): the uploaded file's
    bytes, AES-256-GCM under the tenant's data key, bound to the tenant, the speaker pseudonym
    and the keyed audio hash; what ``speakerops templates migrate`` re-embeds."""

    __tablename__ = "enrollment_audio"
    __table_args__ = (Index("ix_enrollment_audio_speaker", "tenant", "speaker_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    speaker_key: Mapped[str] = mapped_column(String(64))
    audio_key: Mapped[str] = mapped_column(String(64))
    audio_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def engine_url(url: str) -> str:
    # psycopg (3) is the project's PostgreSQL driver; plain postgresql:// URLs mean it too
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def redact(url: str) -> str:
    """The URL without a password."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url
