"""Run the packaged Alembic migrations in code, and check a database's schema revision.

The scripts live in the top-level ``migrations/`` folder, which the build maps into the wheel as
``featurestore.migrations``; the Alembic ``Config`` is built here, so no ini file is needed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from featurestore.errors import NotFoundError, SchemaError

__all__ = ["alembic_config", "head_revision", "current_revision", "upgrade", "downgrade", "check_schema"]


def _script_location() -> Path:
    return Path(str(resources.files("featurestore.migrations")))


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic Config for the packaged scripts, optionally bound to ``connection``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_script_location()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this code knows."""
    heads = _script().get_heads()
    if len(heads) != 1:  # pragma: no cover - guarded by tests/test_migrations.py
        raise SchemaError(f"the packaged migrations have {len(heads)} heads: {heads}")
    return heads[0]


def current_revision(connection: sa.Connection) -> str | None:
    """The revision recorded in the database, or None for an empty database."""
    heads = MigrationContext.configure(connection).get_current_heads()
    return heads[0] if heads else None


def _check_known(revision: str) -> None:
    if revision in ("head", "base", "heads"):
        return
    script = _script()
    try:
        script.get_revision(revision)
    except Exception:
        known = [s.revision for s in script.walk_revisions()]
        raise NotFoundError(f"unknown schema revision {revision!r}; known: {', '.join(known)}") from None


# The consistency module's channel and "anything may have changed" payload (write.bump_generation
# sends the same); repeated here so that migrating imports neither the cache nor the write path.
_NOTIFY_CHANNEL = "featurestore"
_NOTIFY_ALL = '{"g": null, "s": null}'


def _notify_everything_changed(conn: sa.Connection) -> None:
    """Tell every listening store to drop its whole cache once this migration commits.

    A migration changes what reads return (``downgrade("base")`` empties the store) without a
    write generation bump, so caches of other processes in ``notify`` mode must hear of it.
    """
    conn.execute(sa.text("SELECT pg_notify(:channel, :payload)"), {"channel": _NOTIFY_CHANNEL, "payload": _NOTIFY_ALL})


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Upgrade to ``revision`` in one transaction under an advisory lock (safe to run concurrently)."""
    _check_known(revision)
    with engine.connect().execution_options(isolation_level="READ COMMITTED") as conn:
        before = current_revision(conn)
        command.upgrade(alembic_config(conn), revision)
        if current_revision(conn) != before:
            _notify_everything_changed(conn)
        conn.commit()


def downgrade(engine: sa.Engine, revision: str) -> None:
    """Downgrade to ``revision`` (``"base"`` removes every table, data included)."""
    _check_known(revision)
    with engine.connect().execution_options(isolation_level="READ COMMITTED") as conn:
        before = current_revision(conn)
        command.downgrade(alembic_config(conn), revision)
        if current_revision(conn) != before:
            _notify_everything_changed(conn)
        conn.commit()


def check_schema(engine: sa.Engine) -> str:
    """Return the current revision if it is this code's head; else raise SchemaError saying what to run."""
    with engine.connect() as conn:
        current = current_revision(conn)
    head = head_revision()
    if current == head:
        return current
    if current is None:
        raise SchemaError(
            "this database has no featurestore schema yet: run `featurestore migrate` "
            "(or open the store with FeatureStore(..., auto_migrate=True))"
        )
    known = {s.revision for s in _script().walk_revisions()}
    if current not in known:
        raise SchemaError(
            f"the database schema ({current}) is newer than this featurestore ({head}): "
            "upgrade the featurestore package"
        )
    raise SchemaError(
        f"the database schema ({current}) is older than this featurestore ({head}): "
        "run `featurestore migrate`"
    )
