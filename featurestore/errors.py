"""One small error hierarchy: every error the library raises on purpose is a FeatureStoreError.

Messages name the object (row, column, view, URL) and, where there is one, the fix.
"""

from __future__ import annotations

import builtins
from typing import Any

__all__ = [
    "BackfillInterrupted",
    "ConfigError",
    "ConnectionError",
    "DatabaseError",
    "DeadlockError",
    "FeatureStoreError",
    "HistoryError",
    "IndicatorError",
    "LoadInterrupted",
    "LockTimeoutError",
    "NotFoundError",
    "PoolTimeoutError",
    "QueryCanceledError",
    "ResourceError",
    "SchemaError",
    "ValidationError",
    "database_error",
]


class FeatureStoreError(Exception):
    """Base class of every error featurestore raises on purpose."""


class ConfigError(FeatureStoreError, ValueError):
    """A setting or argument is invalid (bad URL, unknown option, bad identifier)."""


class ConnectionError(FeatureStoreError, builtins.ConnectionError):
    """The database could not be reached, or the connection was lost mid-call.

    Only a real disconnect (server restart, network, a terminated backend) or a failed connect
    is a ConnectionError; a statement the server refused or aborted is a :class:`DatabaseError`.
    It also subclasses the builtin ``ConnectionError`` it shadows, so ``except ConnectionError``
    catches it whether or not the name was imported from featurestore. ``sqlstate`` is the
    server's SQLSTATE when it sent one (``57P01`` for a terminated backend), else None.
    """

    sqlstate: str | None = None


class PoolTimeoutError(ConnectionError):
    """Every pooled connection stayed busy for longer than ``pool_timeout``."""


class RateLimitedError(FeatureStoreError):
    """A call waited longer than the store's ``timeout`` for its turn under ``rate_limit``."""


class DatabaseError(FeatureStoreError):
    """The server refused or aborted a statement; the connection itself is fine.

    Like a DB-API ``DatabaseError`` it keeps the server's verdict: ``sqlstate`` is the five-
    character SQLSTATE (``"57014"``), ``server_message`` the server's own message, and the
    driver's exception is chained as ``__cause__``. Subclasses name the common cases.
    """

    def __init__(self, message: str, *, sqlstate: str | None = None, server_message: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.server_message = server_message

    def __reduce__(self) -> tuple[Any, ...]:  # keyword-only fields survive pickling
        return (_rebuild, (type(self), str(self), self.sqlstate, self.server_message))


def _rebuild(cls: type[DatabaseError], message: str, sqlstate: str | None, server_message: str | None) -> DatabaseError:
    return cls(message, sqlstate=sqlstate, server_message=server_message)


class QueryCanceledError(DatabaseError):
    """SQLSTATE 57014: the statement hit ``statement_timeout`` or was canceled (the message says which)."""


class LockTimeoutError(DatabaseError):
    """SQLSTATE 55P03: a lock was not granted within ``lock_timeout`` (or NOWAIT found it taken)."""


class DeadlockError(DatabaseError):
    """SQLSTATE 40P01/40001: the transaction was rolled back by a deadlock or a serialization
    failure; nothing of it was written. Loads retry this themselves and raise it only once their
    retries are spent."""


class ResourceError(DatabaseError):
    """SQLSTATE class 53: the server ran out of a resource (disk full, out of memory)."""


_BY_SQLSTATE: dict[str, type[DatabaseError]] = {
    "57014": QueryCanceledError,
    "55P03": LockTimeoutError,
    "40P01": DeadlockError,
    "40001": DeadlockError,
}


def database_error(exc: BaseException, context: str | None = None) -> DatabaseError:
    """The typed DatabaseError for a driver error (psycopg, or anything with ``sqlstate``/``diag``).

    The message is the server's first line and its SQLSTATE, after ``context`` when given.
    Raise it ``from exc`` so the original stays chained.
    """
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    server_message = getattr(diag, "message_primary", None) if diag is not None else None
    if not server_message:
        text = str(exc).strip()
        server_message = text.splitlines()[0] if text else type(exc).__name__
    cls = _BY_SQLSTATE.get(sqlstate or "")
    if cls is None:
        cls = ResourceError if sqlstate and sqlstate.startswith("53") else DatabaseError
    code = f" (SQLSTATE {sqlstate})" if sqlstate else ""
    text = f"{context}: {server_message}{code}" if context else f"{server_message}{code}"
    return cls(text, sqlstate=sqlstate, server_message=server_message)


class HistoryError(DatabaseError):
    """A knowledge-time read (``as_known_at``) asked for a moment the store cannot answer for:
    before its history starts (creation, upgrade, or ``compact_history``; SQLSTATE FSH01) or
    before the view version was ready. Never a wrong answer instead."""


_BY_SQLSTATE["FSH01"] = HistoryError  # raised by fs_knowledge() (migration 0004)


class SchemaError(FeatureStoreError):
    """The database schema is missing, older or newer than this code expects."""


class ValidationError(FeatureStoreError, ValueError):
    """Input data was rejected before anything was written.

    ``source``, ``row`` and ``column`` locate the first problem found; ``row`` follows the load's
    one rule (featurestore.load.row_label): the 1-based data row in a file (header excluded), or
    the 0-based position in a DataFrame or Arrow table (``.iloc[row]``).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.message = message  # without the location prefix
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

    def __reduce__(self) -> str | tuple[Any, ...]:
        """The location survives pickling (a joblib worker's error reaches the caller whole);
        subclasses with a constructor of their own pickle as before."""
        if type(self).__init__ is not ValidationError.__init__:
            return super().__reduce__()
        return (_rebuild_validation, (type(self), self.message, self.source, self.row, self.column))


def _rebuild_validation(
    cls: type[ValidationError], message: str, source: str | None, row: int | None, column: str | None
) -> ValidationError:
    return cls(message, source=source, row=row, column=column)


class BackfillInterrupted(FeatureStoreError):
    """A view's distributed backfill stopped before every batch committed (a worker or node died
    past its retries). The committed batches stay; the same ``create_view`` call resumes."""


class IndicatorError(FeatureStoreError, ValueError):
    """An indicator name, parameter or input is invalid."""


class NotFoundError(FeatureStoreError, KeyError):
    """A named object (view, column, symbol, revision) does not exist.

    The message lists what does exist.
    """

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class LoadInterrupted(KeyboardInterrupt):
    """A load stopped by Ctrl-C (a ``KeyboardInterrupt``, so it still stops the program).

    ``committed`` says what the store holds: False, nothing of the load (its one transaction was
    rolled back); True, all of it (the interrupt came after the commit); None, unknown (it came
    during the commit). The message says the same for people.
    """

    def __init__(self, message: str, *, committed: bool | None) -> None:
        super().__init__(message)
        self.committed = committed

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
