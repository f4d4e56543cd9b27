"""Alembic environment shared by `alembic` (from a checkout) and featurestore.migrate (in code).

In code, the caller passes its SQLAlchemy connection in ``config.attributes["connection"]``; from
the command line the URL comes from ``FEATURESTORE_URL`` (or ``sqlalchemy.url`` in alembic.ini).
An advisory lock serializes concurrent migrations: the second process waits, then finds the
schema current and does nothing.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context

from featurestore.config import normalize_url
from featurestore.schema import is_view_table, metadata

# pg_advisory_xact_lock key for migrations: an arbitrary constant ("fsmigr" in ASCII)
MIGRATION_LOCK_KEY = 0x66736D69677200

config = context.config


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    if type_ == "table" and name is not None and is_view_table(name):
        return False
    if type_ == "table" and name == "alembic_version":
        return False
    return True


def _configure(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=include_object,
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        context.run_migrations()


def run_offline() -> None:
    url = os.environ.get("FEATURESTORE_URL") or config.get_main_option("sqlalchemy.url")
    context.configure(
        url=str(normalize_url(url)) if url else "postgresql+psycopg://",
        target_metadata=metadata,
        literal_binds=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = os.environ.get("FEATURESTORE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set FEATURESTORE_URL to the database to migrate (or run `featurestore migrate`)")
    engine = sa.create_engine(normalize_url(url), poolclass=sa.NullPool)
    with engine.connect() as conn:
        _configure(conn)
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
