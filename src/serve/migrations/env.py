"""Alembic environment of the template store: run on the connection the store hands over
(``TemplateStore`` calls ``alembic upgrade head`` on open; no alembic.ini needed)."""

from __future__ import annotations

from alembic import context

from speakerops.serve.store_schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
