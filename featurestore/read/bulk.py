"""[read] Bulk reads: Arrow tables through ADBC, on a small pool of connections the Reader owns.

Bulk results (range reads, the rows behind a training frame) come through ADBC's
``fetch_arrow_table``, which beat both psycopg's binary ``COPY`` parsed with numpy (psycopg hands
COPY data to Python one row at a time) and ``pandas.read_sql`` (``benchmarks/read.py``, figures
in ``benchmarks/results/read.md``). ADBC streams a query through binary COPY only when it has no
bind parameters (a bound one goes through a prepared statement and row-format results, slower
on large reads), so bulk queries get their integer arrays and timestamps rendered as literals
(:func:`featurestore.read.sql.render`).

ADBC connections live outside the store's pool (SQLAlchemy cannot hand them out). At most
``size`` exist at once; idle ones are kept for the next read. A connection whose read fails in
any way (a server error, a dropped table, a KeyboardInterrupt mid-stream) is closed on the spot,
so the bound holds on every path; only a lost connection is retried, once, on a fresh one.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from featurestore.errors import ConnectionError, PoolTimeoutError, database_error

if TYPE_CHECKING:
    import psycopg
    import pyarrow as pa

__all__ = ["BulkConnections", "begin_snapshot", "end_snapshot", "raise_typed", "run", "run_statement"]

# SQLSTATE classes of a lost connection: 08 (connection exception) and 57P01-57P03 (the server
# shut down or is starting). Anything else the server reported left the connection usable.
_DISCONNECT_STATES = ("08", "57P01", "57P02", "57P03")
_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+(?:-[0-9]+)?")


def is_disconnect(exc: BaseException) -> bool:
    """True when an ADBC error means the connection is gone (retry on a fresh one)."""
    import adbc_driver_manager.dbapi as dbapi

    if not isinstance(exc, (dbapi.OperationalError, dbapi.InterfaceError, dbapi.InternalError)):
        return False
    state = getattr(exc, "sqlstate", None)
    return not state or str(state).startswith(_DISCONNECT_STATES)


def raise_typed(exc: BaseException) -> None:
    """Raise a server's verdict on a bulk read as a featurestore error (SQLSTATE kept).

    A lost connection becomes ConnectionError; an error the server reported (a dropped table, a
    data error, a cancelled statement) the typed DatabaseError; anything else (KeyboardInterrupt,
    a driver error without SQLSTATE) is left to propagate as it is.
    """
    if is_disconnect(exc):
        raise ConnectionError(f"lost the bulk-read connection: {_first_line(exc)}") from exc
    if getattr(exc, "sqlstate", None):
        raise database_error(exc, "bulk read") from exc


def run(conn: Any, text: str) -> pa.Table:
    """Execute ``text`` on an ADBC connection and fetch the whole result as one Arrow table."""
    with conn.cursor() as cur:
        cur.execute(text)
        return cur.fetch_arrow_table()


def _execute(conn: Any, text: str) -> None:
    with conn.cursor() as cur:
        cur.execute(text)


def run_statement(conn: Any, text: str) -> None:
    """Execute a statement that returns no rows (DDL, INSERT) on an ADBC connection."""
    _execute(conn, text)


class BulkConnections:
    """At most ``size`` ADBC connections, handed out one per bulk read and returned or closed."""

    def __init__(self, size: int, timeout: float) -> None:
        self.size = size
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[Any] = []
        self._open: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def open_connections(self) -> int:
        """ADBC connections open now (idle or in use); never more than ``size``."""
        with self._lock:
            return len(self._open)

    def fetch(self, uri: str, text: str) -> pa.Table:
        """Run one bulk query on a connection of the pool; reconnect once if the connection died."""
        self._acquire()
        try:
            for attempt in range(2):
                conn = None
                try:
                    conn = self._take(uri)
                    table = run(conn, text)
                except BaseException as exc:
                    if conn is not None:
                        self._discard(conn)
                    if not is_disconnect(exc):
                        raise_typed(exc)
                        raise
                    if attempt == 0:
                        continue
                    raise ConnectionError(f"bulk read failed on a fresh connection: {_first_line(exc)}") from exc
                self._give_back(conn)
                return table
        finally:
            self._slots.release()
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def held(self, uri: str) -> Iterator[Any]:
        """One connection for a whole block (a snapshot's reads); closed if the block fails."""
        self._acquire()
        try:
            try:
                conn = self._take(uri)
            except BaseException as exc:
                if is_disconnect(exc):
                    raise ConnectionError(f"cannot open a bulk-read connection: {_first_line(exc)}") from exc
                raise
            try:
                yield conn
            except BaseException:
                self._discard(conn)
                raise
            self._give_back(conn)
        finally:
            self._slots.release()

    def close(self) -> None:
        """Close the idle connections now, and each busy one when its read returns. Idempotent."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self._discard(conn)

    # -- internals ------------------------------------------------------------------------------

    def _acquire(self) -> None:
        if not self._slots.acquire(timeout=self.timeout):
            raise PoolTimeoutError(
                f"no free bulk-read connection after {self.timeout:g} s: all {self.size} are busy; "
                "raise pool_timeout, or read fewer things at once"
            )

    def _take(self, uri: str) -> Any:
        with self._lock:
            if self._closed:
                raise ConnectionError("this Reader is closed; make a new one")
            if self._idle:
                return self._idle.pop()
        import adbc_driver_postgresql.dbapi as adbc

        conn = adbc.connect(uri, autocommit=True)
        with self._lock:
            self._open.append(conn)
            closed = self._closed
        if closed:
            self._discard(conn)
            raise ConnectionError("this Reader is closed; make a new one")
        return conn

    def _give_back(self, conn: Any) -> None:
        with self._lock:
            keep = not self._closed
            if keep:
                self._idle.append(conn)
        if not keep:
            self._discard(conn)

    def _discard(self, conn: Any) -> None:
        """Close ``conn`` (whatever state it is in) and forget it."""
        with self._lock:
            if conn in self._idle:
                self._idle.remove(conn)
            if conn in self._open:
                self._open.remove(conn)
        try:
            conn.close()
        except BaseException:
            try:
                conn.adbc_connection.close()
            except BaseException:
                pass


def begin_snapshot(bulk: Any, pg: psycopg.Connection[Any]) -> None:
    """Open a REPEATABLE READ transaction on ``pg``, export its snapshot, import it on ``bulk``.

    Both connections then see the same committed state until :func:`end_snapshot`.
    """
    from psycopg import sql

    # read-write, as the bulk side (both write nothing): reads over history segments may need
    # temporary tables (featurestore.read.segmented), which a READ ONLY transaction refuses
    pg.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    row = pg.execute("SELECT pg_export_snapshot()").fetchone()
    snapshot_id = str(row[0]) if row else ""
    if not _SNAPSHOT_ID.fullmatch(snapshot_id):  # the server's own id; checked before it is quoted
        raise ConnectionError(f"unexpected snapshot id from the server: {snapshot_id[:40]!r}")
    _execute(bulk, "BEGIN ISOLATION LEVEL REPEATABLE READ")
    _execute(bulk, sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_id)).as_string(pg))


def end_snapshot(bulk: Any, pg: psycopg.Connection[Any]) -> None:
    """End both read-only transactions of a snapshot."""
    _execute(bulk, "COMMIT")
    pg.execute("COMMIT")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
