"""Settings: one frozen object, environment variables parsed in one place.

Precedence for the database: an explicit ``url`` argument, then ``FEATURESTORE_URL``, then the
embedded server under ``FEATURESTORE_HOME`` (default: the platform's user data directory).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from featurestore.errors import ConfigError

__all__ = ["Settings", "default_home", "normalize_url", "mask_url", "libpq_url"]

ENV_URL = "FEATURESTORE_URL"
ENV_HOME = "FEATURESTORE_HOME"
ENV_LOAD_MEMORY_ROWS = "FEATURESTORE_LOAD_MEMORY_ROWS"
# the default of load_memory_rows (featurestore.write.MEMORY_ROWS_MAX, repeated here to keep
# config free of the write step's imports; tests/test_load_memory.py checks they agree)
DEFAULT_LOAD_MEMORY_ROWS = 12_000_000


def default_home() -> Path:
    """``FEATURESTORE_HOME`` if set, else the platform's user data dir (e.g. ~/.local/share/featurestore)."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir("featurestore", appauthor=False)).resolve()


def normalize_url(url: str | URL) -> URL:
    """Parse a PostgreSQL URL and pin the psycopg 3 driver.

    ``postgresql://`` and ``postgres://`` are accepted and mean ``postgresql+psycopg://``.
    """
    text = str(url) if isinstance(url, URL) else url
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://") :]
    try:
        parsed = url if isinstance(url, URL) and not text.startswith("postgres://") else make_url(text)
    except ArgumentError:
        raise ConfigError(f"not a database URL: {mask_url(text)!r}") from None
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(
            f"featurestore needs PostgreSQL, got a {parsed.get_backend_name()!r} URL: "
            f"{parsed.render_as_string(hide_password=True)}"
        )
    driver = parsed.get_driver_name()
    if driver not in ("psycopg", "psycopg2", "postgresql", ""):
        raise ConfigError(f"unsupported driver {driver!r}: use postgresql+psycopg://")
    return parsed.set(drivername="postgresql+psycopg")


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***``; safe for logs, errors and ``info``."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        return "<unparseable URL>"
    return parsed.render_as_string(hide_password=True)


def libpq_url(url: URL) -> str:
    """A plain libpq ``postgresql://`` URI for the same database (for ADBC and psycopg.connect)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one store. Build with :meth:`resolve`."""

    url: URL | None
    home: Path
    pool_size: int = 5
    max_overflow: int = 5
    pool_timeout: float = 30.0
    pool_recycle: float = 3600.0
    load_memory_rows: int = DEFAULT_LOAD_MEMORY_ROWS

    @property
    def embedded(self) -> bool:
        """True when no URL was given and the embedded server is used."""
        return self.url is None

    @classmethod
    def resolve(
        cls,
        url: str | URL | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        pool_size: int = 5,
        max_overflow: int = 5,
        pool_timeout: float = 30.0,
        pool_recycle: float = 3600.0,
        load_memory_rows: int | None = None,
    ) -> Settings:
        """Apply the precedence rules: argument, then environment, then embedded default.

        ``load_memory_rows``: the argument, else ``FEATURESTORE_LOAD_MEMORY_ROWS``, else
        ``DEFAULT_LOAD_MEMORY_ROWS``; an integer >= 0 (``_`` separators allowed in the variable).
        """
        if url is None:
            env = os.environ.get(ENV_URL)
            url = env if env else None
        parsed = normalize_url(url) if url is not None else None
        if pool_size < 1:
            raise ConfigError(f"pool_size must be >= 1, got {pool_size}")
        if max_overflow < 0:
            raise ConfigError(f"max_overflow must be >= 0, got {max_overflow}")
        if pool_timeout <= 0:
            raise ConfigError(f"pool_timeout must be > 0 seconds, got {pool_timeout}")
        if load_memory_rows is None:
            env_rows = os.environ.get(ENV_LOAD_MEMORY_ROWS, "").strip()
            try:
                load_memory_rows = int(env_rows) if env_rows else DEFAULT_LOAD_MEMORY_ROWS
            except ValueError:
                raise ConfigError(
                    f"{ENV_LOAD_MEMORY_ROWS} must be a whole number of rows >= 0 (0: always read bars back), got {env_rows!r}"
                ) from None
            source = ENV_LOAD_MEMORY_ROWS
        else:
            source = "load_memory_rows"
        if isinstance(load_memory_rows, bool) or not isinstance(load_memory_rows, int) or load_memory_rows < 0:
            raise ConfigError(f"{source} must be an integer >= 0 (0: always read bars back), got {load_memory_rows!r}")
        return cls(
            url=parsed,
            home=Path(home).expanduser().resolve() if home is not None else default_home(),
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=pool_recycle,
            load_memory_rows=load_memory_rows,
        )
