"""One SQLAlchemy engine and QueuePool per store, and how internal code gets a raw psycopg connection.

Every connection, including the raw psycopg ones that COPY and prepared statements need, comes
from the same pool, so ``pool_size + max_overflow`` bounds the server connections a store holds.

Checkout cost is what point reads pay, so the defaults are chosen for it (benchmarks/pool.py):
- connections run in autocommit; writes open an explicit transaction (``conn.transaction()``);
- no reset on return: a connection is rolled back on check-in only if it is left inside a
  transaction, which psycopg knows without a round trip;
- no ``pool_pre_ping`` (a round trip per checkout); instead a lost connection is detected when a
  call fails, the whole pool generation is invalidated (a server restart kills every connection),
  and idempotent reads are retried once on a fresh connection.

Driver errors leave this module typed: a real disconnect is a ``ConnectionError``; any other
server error (statement timeout, cancel, lock timeout, deadlock, disk full, ...) is a
``DatabaseError`` subclass that keeps the SQLSTATE and the server's message (errors.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from psycopg import pq
from sqlalchemy.engine import URL
from sqlalchemy.exc import TimeoutError as SATimeoutError

from featurestore.config import mask_url
from featurestore.errors import ConnectionError, PoolTimeoutError, database_error

__all__ = ["Database", "is_disconnect", "map_error"]

T = TypeVar("T")


def is_disconnect(exc: BaseException, conn: psycopg.Connection[Any] | None = None) -> bool:
    """True when ``exc`` means the connection is gone (server restart, network), not a query error."""
    if conn is not None and (conn.broken or conn.closed):
        return True
    if isinstance(exc, psycopg.OperationalError):
        sqlstate = getattr(exc, "sqlstate", None)
        # 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 08xxx connection
        return sqlstate is None or sqlstate.startswith(("08", "57P"))
    return isinstance(exc, psycopg.InterfaceError)


def map_error(exc: BaseException, url: URL, conn: psycopg.Connection[Any] | None = None) -> Exception:
    """The featurestore error for a psycopg error: ConnectionError for a disconnect, else a
    typed DatabaseError with the SQLSTATE. The caller raises it ``from exc``."""
    if is_disconnect(exc, conn):
        lost = ConnectionError(f"lost the connection to {mask_url(url)}: {_first_line(exc)}")
        lost.sqlstate = getattr(exc, "sqlstate", None)
        return lost
    return database_error(exc)


class Database:
    """The engine and pool of one store.

    Use :meth:`connection` for a raw psycopg connection (COPY, prepared statements, explicit
    transactions); use :attr:`engine` for SQLAlchemy work (migrations, reflection).
    """

    def __init__(
        self,
        url: URL,
        *,
        pool_size: int,
        max_overflow: int,
        pool_timeout: float,
        pool_recycle: float,
    ) -> None:
        self.url = url
        self.pool_size = pool_size
        self.max_overflow = max_overflow
        self.pool_timeout = pool_timeout
        self.engine = sa.create_engine(
            url,
            poolclass=sa.QueuePool,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=pool_recycle,
            pool_pre_ping=False,
            pool_reset_on_return=None,
            isolation_level="AUTOCOMMIT",
            connect_args={"application_name": "featurestore"},
        )
        sa.event.listen(self.engine, "checkin", _rollback_if_in_transaction)
        self._lock = threading.Lock()
        self._closed = False

    def connection(self) -> _Checkout:
        """Check out a raw psycopg connection (autocommit) from the pool; return it on exit.

        Use as ``with db.connection() as conn:``. A connection found broken on exit is
        invalidated together with every connection of its generation, so the next checkout
        reconnects instead of failing again.
        """
        return _Checkout(self)

    def _checkout(self) -> Any:
        try:
            return self.engine.raw_connection()
        except SATimeoutError:
            raise PoolTimeoutError(
                f"no free database connection after {self.pool_timeout:g} s: all "
                f"{self.pool_size} pooled (+{self.max_overflow} overflow) connections are busy; "
                "raise pool_size / max_overflow / pool_timeout when opening the FeatureStore"
            ) from None
        except (sa.exc.DBAPIError, psycopg.Error) as exc:
            # engine.raw_connection() raises the driver's error unwrapped (server down)
            orig = getattr(exc, "orig", None) or exc
            err = ConnectionError(f"cannot connect to {mask_url(self.url)}: {_first_line(orig)}")
            err.sqlstate = getattr(orig, "sqlstate", None)
            raise err from None

    def invalidate_all(self, proxied: Any, exc: BaseException | None = None) -> None:
        """Invalidate this connection and every connection opened before it (a server restart)."""
        # Pool._invalidate marks the pool's generation stale, the mechanism SQLAlchemy itself uses
        # on a detected disconnect; connections checked out now reconnect on their next checkout.
        self.engine.pool._invalidate(proxied, exc)

    def run(self, fn: Callable[[psycopg.Connection[Any]], T], *, idempotent: bool = False) -> T:
        """Run ``fn(conn)`` on a pooled connection, mapping driver errors to FeatureStoreErrors.

        ``idempotent=True`` retries once on a fresh connection when the first one turns out to
        be dead (the pool's replacement for pre-ping). Writes are never retried here, and
        neither is a statement the server refused (a timeout would only time out again).
        """
        attempts = 2 if idempotent else 1
        for attempt in range(attempts):
            proxied = self._checkout()
            conn = proxied.driver_connection
            try:
                return fn(conn)
            except psycopg.Error as exc:
                if is_disconnect(exc, conn):
                    self.invalidate_all(proxied, exc)
                    if attempt + 1 < attempts:
                        continue
                raise map_error(exc, self.url, conn) from exc
            finally:
                proxied.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def pool_status(self) -> dict[str, int]:
        """Size, checked-out, overflow and idle counts of the pool."""
        pool = self.engine.pool
        return {
            "size": self.pool_size,
            "max_overflow": self.max_overflow,
            "checked_out": pool.checkedout(),  # type: ignore[attr-defined]
            "overflow": max(0, pool.overflow()),  # type: ignore[attr-defined]
            "idle": pool.checkedin(),  # type: ignore[attr-defined]
        }

    def close(self) -> None:
        """Close every pooled connection. Connections still checked out close when returned."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.engine.dispose()


class _Checkout:
    """``with db.connection() as conn``: a class, not a generator, to keep point reads cheap."""

    __slots__ = ("_db", "_proxied")

    def __init__(self, db: Database) -> None:
        self._db = db
        self._proxied: Any = None

    def __enter__(self) -> psycopg.Connection[Any]:
        self._proxied = self._db._checkout()
        return self._proxied.driver_connection  # type: ignore[no-any-return]

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        proxied, self._proxied = self._proxied, None
        mapped: Exception | None = None
        try:
            if exc is not None and isinstance(exc, psycopg.Error):
                conn = proxied.driver_connection
                if is_disconnect(exc, conn):
                    self._db.invalidate_all(proxied, exc)  # the pool is refreshed
                mapped = map_error(exc, self._db.url, conn)
            elif exc is not None and is_disconnect(exc, proxied.driver_connection):
                # e.g. KeyboardInterrupt mid-COPY left the connection broken: refresh, re-raise as is
                self._db.invalidate_all(proxied, exc)
        finally:
            proxied.close()
        if mapped is not None:
            # one typed error instead of the driver's (which stays chained)
            raise mapped from exc


_IDLE = pq.TransactionStatus.IDLE


def _rollback_if_in_transaction(dbapi_conn: Any, record: Any) -> None:
    """Check-in hook: leave no transaction open, without a round trip in the common case."""
    if dbapi_conn is None:
        return
    conn: psycopg.Connection[Any] = dbapi_conn
    # pgconn.transaction_status is a plain attribute read; conn.info builds an object per access
    if conn.autocommit and conn.pgconn.transaction_status == _IDLE:
        return
    if conn.closed:
        return
    if conn.pgconn.transaction_status != _IDLE:
        try:
            conn.rollback()
        except psycopg.Error:
            record.invalidate()
    if not conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE:
        conn.autocommit = True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
