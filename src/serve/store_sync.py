"""Per-tenant change generations of the template store (migration 0003): how every worker of
`speakerops serve` keeps its in-memory identification index equal to the store, the truth.

A write to a tenant's templates (enroll, delete, migration) first bumps the tenant's
generation, in the write's own transaction (an ``UPDATE ... SET generation = generation + 1``
as the first statement: it takes the write lock, so two writers get distinct, ordered
generations on SQLite and PostgreSQL alike), then stamps the template row it writes, or a
tombstone of the speaker it erases, with that generation. A reader compares the tenant's
generation (one indexed primary-key read per request) with the one its index has seen and reads
only the rows and tombstones stamped after it (:func:`changes_since`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from speakerops.serve.store_schema import TemplateRow, TenantGeneration, TombstoneRow


def ensure_tenant(session: Session, tenant: str) -> None:
    """The tenant's generation row (0) exists (its own transaction, before the write's)."""
    dialect = session.get_bind().dialect.name
    values = {"tenant": tenant, "generation": 0}
    if dialect == "sqlite":
        stmt = sqlite_insert(TenantGeneration).values(values).on_conflict_do_nothing()
    elif dialect == "postgresql":
        stmt = pg_insert(TenantGeneration).values(values).on_conflict_do_nothing()
    else:  # another backend: check first (a concurrent first write may then fail, retryable)
        if session.get(TenantGeneration, tenant) is not None:
            return
        stmt = insert(TenantGeneration).values(values)
    session.execute(stmt)


def bump(session: Session, tenant: str) -> int:
    """The tenant's next generation (call first in the write's transaction)."""
    session.execute(
        update(TenantGeneration)
        .where(TenantGeneration.tenant == tenant)
        .values(generation=TenantGeneration.generation + 1)
    )
    return int(
        session.scalar(select(TenantGeneration.generation).where(TenantGeneration.tenant == tenant))
    )


def tombstone(session: Session, tenant: str, speaker_key: str, generation: int) -> None:
    session.add(TombstoneRow(tenant=tenant, speaker_key=speaker_key, generation=generation))


def generation(session: Session, tenant: str) -> int:
    value = session.scalar(
        select(TenantGeneration.generation).where(TenantGeneration.tenant == tenant)
    )
    return 0 if value is None else int(value)


def generations(session: Session) -> dict[str, int]:
    rows = session.execute(select(TenantGeneration.tenant, TenantGeneration.generation)).all()
    return {t: int(g) for t, g in rows}


@dataclass
class Changes:
    """What a tenant's templates did after a generation: ``events`` in generation order, each
    ``(generation, row)`` (a template row written) or ``(generation, speaker_key)`` (erased);
    ``generation``: the tenant's, read before them (everything up to it is in ``events``)."""

    generation: int
    events: list[tuple[int, TemplateRow | str]]


def changes_since(session: Session, tenant: str, since: int) -> Changes:
    now = generation(session, tenant)
    rows = session.scalars(
        select(TemplateRow).where(TemplateRow.tenant == tenant, TemplateRow.generation > since)
    ).all()
    gone = session.execute(
        select(TombstoneRow.generation, TombstoneRow.speaker_key).where(
            TombstoneRow.tenant == tenant, TombstoneRow.generation > since
        )
    ).all()
    events: list[tuple[int, TemplateRow | str]] = [(int(r.generation), r) for r in rows]
    events += [(int(g), k) for g, k in gone]
    # an erasure before a re-enrollment at a later generation; at one generation, erasure first
    events.sort(key=lambda e: (e[0], not isinstance(e[1], str)))
    # `now` was read first: on PostgreSQL (read committed) the later reads may see writes
    # after it too; they are applied, and read again by the next call (applying is idempotent)
    return Changes(now, events)
