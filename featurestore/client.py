"""FeatureStore: the façade that composes the steps of the data path.

load -> compute -> encode -> write -> store -> read -> cache, each owned by its own module; this
class holds the connection pool, the cache and the settings, and wires the steps together.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import URL

from featurestore import migrate as _migrate
from featurestore.config import Settings, mask_url
from featurestore.embedded import EmbeddedServer
from featurestore.errors import ConfigError, ConnectionError
from featurestore.pool import Database
from featurestore.schema import ident

__all__ = ["FeatureStore"]


class FeatureStore:
    """A feature store on one PostgreSQL database.

    With no ``url`` (and no ``FEATURESTORE_URL``) it starts, or joins, the embedded server under
    ``home`` (default ``FEATURESTORE_HOME`` or the platform's user data dir). Use it as a context
    manager, or call :meth:`close`, to return every connection.

    ``auto_migrate``: ``None`` (default) migrates the embedded server automatically and only
    checks a database given by URL; ``True``/``False`` force either behaviour.
    ``check_schema=False`` skips the revision check (only for running migrations).
    """

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        pool_size: int = 5,
        max_overflow: int = 5,
        pool_timeout: float = 30.0,
        pool_recycle: float = 3600.0,
        auto_migrate: bool | None = None,
        check_schema: bool = True,
    ) -> None:
        self.settings = Settings.resolve(
            url,
            home=home,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=pool_recycle,
        )
        self._server: EmbeddedServer | None = None
        if self.settings.url is None:
            self._server = EmbeddedServer(self.settings.home)
            db_url = self._server.start()
        else:
            db_url = self.settings.url
        self.db = Database(
            db_url,
            pool_size=self.settings.pool_size,
            max_overflow=self.settings.max_overflow,
            pool_timeout=self.settings.pool_timeout,
            pool_recycle=self.settings.pool_recycle,
        )
        self._closed = False
        try:
            if auto_migrate is None:
                auto_migrate = self._server is not None
            if auto_migrate:
                _migrate.upgrade(self.db.engine, "head")
            self.schema_revision: str | None = None
            if check_schema:
                self.schema_revision = _migrate.check_schema(self.db.engine)
        except sa.exc.OperationalError as exc:
            self.db.close()
            first = str(exc.orig or exc).strip().splitlines()[0]
            raise ConnectionError(f"cannot connect to {mask_url(db_url)}: {first}") from None
        except BaseException:
            self.db.close()
            raise

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The database URL with the password masked."""
        return mask_url(self.db.url)

    @property
    def embedded(self) -> bool:
        """True when this store runs on the embedded server."""
        return self._server is not None

    def __repr__(self) -> str:
        return f"FeatureStore({self.url!r})"

    def close(self) -> None:
        """Return every connection to the server. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.db.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- schema -------------------------------------------------------------------------------

    def migrate(self, revision: str = "head") -> str:
        """Upgrade the schema to ``revision``; return the revision now current."""
        _migrate.upgrade(self.db.engine, revision)
        with self.db.engine.connect() as conn:
            self.schema_revision = _migrate.current_revision(conn) or "base"
        return self.schema_revision

    def downgrade(self, revision: str) -> str:
        """Downgrade the schema to ``revision`` (``"base"`` drops every table and its data)."""
        if not revision:
            raise ConfigError("downgrade needs a target revision, e.g. 'base' or '0001'")
        _migrate.downgrade(self.db.engine, revision)
        with self.db.engine.connect() as conn:
            self.schema_revision = _migrate.current_revision(conn) or "base"
        return self.schema_revision

    # -- facts --------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Facts about the store: URL (password masked), server, schema, row counts, pool."""

        def query(conn: Any) -> dict[str, Any]:
            version = conn.execute("SHOW server_version").fetchone()[0]
            counts = {}
            for table in ("entities", "bars", "feature_views", "loads"):
                exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]
                if exists:
                    stmt = sql.SQL("SELECT count(*) FROM {}").format(ident(table))
                    counts[table] = conn.execute(stmt).fetchone()[0]
            return {"server_version": version, "rows": counts}

        facts = self.db.run(query, idempotent=True)
        with self.db.engine.connect() as conn:
            revision = _migrate.current_revision(conn)
        out: dict[str, Any] = {
            "url": self.url,
            "embedded": self.embedded,
            "data_dir": str(self._server.data_dir) if self._server else None,
            "server_version": facts["server_version"],
            "schema_revision": revision,
            "schema_head": _migrate.head_revision(),
            "rows": facts["rows"],
            "pool": self.db.pool_status(),
        }
        return out
