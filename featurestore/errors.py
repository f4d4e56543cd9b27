"""One small error hierarchy: every error the library raises on purpose is a FeatureStoreError.

Messages name the object (row, column, view, URL) and, where there is one, the fix.
"""

from __future__ import annotations

__all__ = [
    "FeatureStoreError",
    "ConfigError",
    "ConnectionError",
    "PoolTimeoutError",
    "SchemaError",
    "ValidationError",
    "IndicatorError",
    "NotFoundError",
]


class FeatureStoreError(Exception):
    """Base class of every error featurestore raises on purpose."""


class ConfigError(FeatureStoreError, ValueError):
    """A setting or argument is invalid (bad URL, unknown option, bad identifier)."""


class ConnectionError(FeatureStoreError):  # noqa: A001 - deliberately scoped to this package
    """The database could not be reached, or the connection was lost mid-call."""


class PoolTimeoutError(ConnectionError):
    """Every pooled connection stayed busy for longer than ``pool_timeout``."""


class SchemaError(FeatureStoreError):
    """The database schema is missing, older or newer than this code expects."""


class ValidationError(FeatureStoreError, ValueError):
    """Input data was rejected before anything was written.

    ``source``, ``row`` and ``column`` locate the first problem found; ``row`` is the
    1-based data row in a file (header excluded) or the 0-based position in a DataFrame.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.source = source
        self.row = row
        self.column = column
        where = []
        if source is not None:
            where.append(str(source))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class IndicatorError(FeatureStoreError, ValueError):
    """An indicator name, parameter or input is invalid."""


class NotFoundError(FeatureStoreError, KeyError):
    """A named object (view, column, symbol, revision) does not exist.

    The message lists what does exist.
    """

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""
