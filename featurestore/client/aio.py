"""[client] AsyncFeatureStore: the store for asyncio programs (live strategies, model servers).

Latest rows — the online path — run on asyncio psycopg connections from a
``psycopg_pool.AsyncConnectionPool`` with the sync store's limits (``pool_size`` +
``max_overflow`` connections, ``pool_timeout``), coalesced: concurrent requests of one shape
share one statement (:class:`featurestore.read.coalesce.AsyncGate`). Everything else (range
reads, training frames, ingest and load, knowledge-time reads, strict-consistency cache checks)
runs the sync store's own code in a bounded thread pool, off the event loop (so do latest
reads of a store with ``read_replicas``: the sync store routes them). Both paths share
the sync store's result cache and consistency mode, so a write through either invalidates
both. Why psycopg's pool and not SQLAlchemy's asyncio engine: SQLAlchemy's needs greenlet
(not installed here, one more compiled dependency) and adds a layer per checkout on the path
that matters; psycopg's pool is made by the driver's authors for exactly this.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from featurestore.client.limits import Limits
from featurestore.client.reads import latest_key
from featurestore.client.support import _syms
from featurestore.errors import ConnectionError, DatabaseError, PoolTimeoutError
from featurestore.read import latest as _latest
from featurestore.read.args import _symbols, knowledge_time
from featurestore.read.sql import _NAT
from featurestore.schema import validate_identifier
from featurestore.views import read_view_async

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from featurestore.client import FeatureStore
    from featurestore.read.latest import LatestPlan
    from featurestore.views import FeatureView
    from featurestore.write import LoadResult

__all__ = ["AsyncFeatureStore"]

T = TypeVar("T")


class AsyncFeatureStore:
    """A :class:`~featurestore.FeatureStore` for asyncio: ``async with AsyncFeatureStore(...) as fs``.

    Takes the sync store's arguments (``url``, ``home``, ``pool_size``, ``max_overflow``,
    ``pool_timeout``, ``cache``, ``consistency``, ...) plus ``coalesce`` (default True),
    ``max_concurrency`` and ``rate_limit`` (calls per second; see
    :mod:`featurestore.client.limits`) and ``timeout`` (how long a call may wait for its turn;
    default ``pool_timeout``). ``store`` is the sync store underneath (views, history, export...).
    """

    def __init__(
        self,
        url: Any = None,
        *,
        coalesce: bool = True,
        max_concurrency: int | None = None,
        rate_limit: float | None = None,
        timeout: float | None = None,
        **store_options: Any,
    ) -> None:
        from featurestore.client import FeatureStore

        self.store: FeatureStore = FeatureStore(url, coalesce=coalesce, **store_options)
        settings = self.store.settings
        self._max_conn = settings.pool_size + settings.max_overflow
        self._pool_timeout = settings.pool_timeout
        try:
            self.limits = Limits(max_concurrency, rate_limit, settings.pool_timeout if timeout is None else timeout)
        except BaseException:
            self.store.close()
            raise
        self._executor = ThreadPoolExecutor(max_workers=self._max_conn, thread_name_prefix="featurestore-async")
        self._pool: Any = None
        self._gate: Any = None
        self._coalesce = coalesce
        self._distributed = False  # a Citus store (known once open): its statements' forms
        self._closed = False

    # -- life cycle ----------------------------------------------------------------------------

    async def open(self) -> AsyncFeatureStore:
        """Open the asyncio connection pool (``async with`` does it)."""
        if self._pool is None:
            from psycopg_pool import AsyncConnectionPool

            from featurestore.config import libpq_url
            from featurestore.read.coalesce import AsyncGate

            url = self.store.db.url.update_query_dict({"application_name": "featurestore-async"})
            self._pool = AsyncConnectionPool(
                libpq_url(url), min_size=1, max_size=self._max_conn, timeout=self._pool_timeout,
                kwargs={"autocommit": True}, open=False,
            )
            await self._pool.open(wait=True, timeout=self._pool_timeout)
            self._distributed = await self._in_thread(lambda: self.store.reader.distributed)
            self._gate = AsyncGate() if self._coalesce else None
        return self

    async def aclose(self) -> None:
        """Finish the coalesced batches started, close the pool, the threads and the sync store. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._gate is not None:
                await self._gate.aclose()
            if self._pool is not None:
                await self._pool.close()
        finally:
            await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
            self.store.close()

    async def __aenter__(self) -> AsyncFeatureStore:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _in_thread(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise ConnectionError("this AsyncFeatureStore is closed; make a new one")
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def _limited(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        async with self.limits.aslot():
            return await self._in_thread(fn, *args, **kwargs)

    # -- reads ---------------------------------------------------------------------------------

    async def get_latest(
        self,
        symbols: str | Sequence[str],
        *,
        as_of: Any = None,
        view: str | None = None,
        version: int | None = None,
        columns: str | Sequence[str] | None = None,
        as_arrow: bool = False,
        downcast: bool = False,
        as_known_at: Any = None,
        as_dict: bool = False,
    ) -> pd.DataFrame | pa.Table | list[dict[str, Any]]:
        """:meth:`FeatureStore.get_latest`, on asyncio connections and coalesced across tasks."""
        if not self.limits.active:
            return await self._get_latest(symbols, as_of, view, version, columns, as_arrow, downcast, as_known_at, as_dict)
        async with self.limits.aslot():
            return await self._get_latest(symbols, as_of, view, version, columns, as_arrow, downcast, as_known_at, as_dict)

    async def _get_latest(
        self, symbols: Any, as_of: Any, view: Any, version: Any, columns: Any, as_arrow: bool, downcast: bool,
        as_known_at: Any, as_dict: bool,
    ) -> Any:
        reads = self.store._reads
        if (self._pool is None or as_known_at is not None or downcast or self.store._replicas is not None
                or (reads is not None and reads.consistency == "strict")):
            return await self._in_thread(self.store.get_latest, symbols, as_of=as_of, view=view, version=version,
                                         columns=columns, as_arrow=as_arrow, downcast=downcast,
                                         as_known_at=as_known_at, as_dict=as_dict)
        syms = _syms(symbols)
        key: tuple[Any, ...] = ()
        since = 0
        if reads is not None:  # the sync store's keys: one cache for both
            key = latest_key(syms, as_of, view, version, columns, as_arrow, False, None, as_dict)
            hit, value, since = reads.lookup(key)
            if hit:
                return [dict(r) for r in value] if as_dict else value
        request = {"as_of": as_of, "view": view, "version": version, "columns": columns}
        shape = _latest.gate_shape(as_of, view, version, columns) if self._gate is not None else None
        if shape is not None:
            p, names, rows = await self._gate.run(shape, _symbols(syms), functools.partial(self._latest_batch, request))
        else:
            p = await self._plan(syms, **request)
            names = p.names
            rows = (await self._latest_rows(p, list(p.names))) if p.names else []
        if as_dict:
            if reads is None:
                return _latest.to_dicts(p, rows, names)
            records = reads.offer(key, syms, tuple(tuple(d.items()) for d in _latest.to_dicts(p, rows, names)), since)
            return [dict(r) for r in records]
        out = _latest.to_frame(p, rows, as_arrow=as_arrow, names=names)
        return reads.offer(key, syms, out, since) if reads is not None else out

    async def _plan(self, syms: Sequence[str], **request: Any) -> LatestPlan:
        fv: FeatureView | None = None
        if request["view"] is not None:
            name, version = request["view"], request["version"]
            if isinstance(name, str):
                validate_identifier(name, what="view name")  # before it reaches SQL
                async with self._connection() as conn:
                    fv = await read_view_async(conn, name, version)
                if fv is not None:
                    self.store.reader.views.put(name, version, fv)
            if fv is None:  # not ready, not there, not a name: the sync reader raises the precise error
                fv = await self._in_thread(self.store.reader._view, name, version, knowledge_time(None))
        found = fv
        return _latest.plan(syms, lambda *_: found, **request)

    def _connection(self) -> Any:
        """An asyncio connection of the pool, its errors mapped like the sync store's."""
        return _Checkout(self)

    async def _latest_batch(
        self, request: dict[str, Any], requests: list[Sequence[str]]
    ) -> list[tuple[LatestPlan, Sequence[str], list[tuple[Any, ...]]]]:
        """Coalesced requests (same arguments, their own symbols): one view lookup, one statement."""

        if len(requests) == 1:  # alone: no merging to undo
            found = await self._latest_cached(requests[0], request)
            if found is not None:
                return [(found[0], found[0].names, found[1])]
            p = await self._plan(requests[0], **request)
            return [(p, p.names, (await self._latest_rows(p, list(p.names))) if p.names else [])]
        merged, picks = _latest.merge(requests)
        p = await self._plan(merged, **request)
        rows = (await self._latest_rows(p, merged)) if merged else []
        return [(p, names, part) for names, part in zip(requests, _latest.split_rows(rows, picks))]

    async def _latest_cached(
        self, names: Sequence[str], request: dict[str, Any]
    ) -> tuple[LatestPlan, list[tuple[Any, ...]]] | None:
        """:meth:`Reader._latest_cached <featurestore.read.Reader._latest_cached>` on an asyncio connection."""
        views = self.store.reader.views
        view, version = request["view"], request["version"]
        fv = views.get(view, version)
        if fv is None or len(names) != 1:
            return None
        p = _latest.plan(names, lambda *_: fv, **request)
        cut = p.cut()
        got: list[tuple[Any, ...]] | None
        try:
            async with self._connection() as conn:
                if self._distributed:  # Citus: view check and entity id, then the routed probe
                    check, params = _latest.routed_check(p, fv, version)
                    row = await (await conn.execute(check, params, prepare=True)).fetchone()
                    if row is None or row[0] != fv.view_id:
                        got = None
                    elif row[1] is None:
                        got = [_latest.no_row(p)]
                    else:
                        query, args = _latest.statement(p, p.names, cut, distributed=True, entity_id=int(row[1]))
                        got = (await (await conn.execute(query, args, prepare=True)).fetchall()) or [_latest.no_row(p)]
                else:
                    query, params = _latest.checked_statement(p, version, cut)
                    got = _latest.checked_rows(await (await conn.execute(query, params, prepare=True)).fetchall(), fv)
        except DatabaseError as exc:
            if exc.sqlstate not in _latest.VIEW_CHANGED:
                raise
            got = None
        if got is None:
            views.forget(view, version)
            return None
        if _latest.missing(got, p.names):  # history segments: the sync reader's snapshot read
            got = await self._in_thread(self.store.reader._latest_fill, p, p.names, got, cut)
        return p, got

    async def _latest_rows(self, p: LatestPlan, names: list[str]) -> list[tuple[Any, ...]]:

        cut = p.cut()
        async with self._connection() as conn:
            entity = None
            if _latest.routed_one(p, names, self._distributed):
                cur = await conn.execute(_latest.ROUTED_LOOKUP, (p.sql_names(names)[0],), prepare=True)
                found = await cur.fetchone()
                entity = None if found is None else int(found[0])
            if entity is None and _latest.routed_one(p, names, self._distributed):
                rows = []
            else:
                query, params = _latest.statement(p, names, cut, distributed=self._distributed, entity_id=entity)
                cur = await conn.execute(query, params, prepare=True)
                rows = await cur.fetchall()
        rows = rows or [(1, _NAT, *([None] * len(p.cols)))]
        if _latest.missing(rows, names):  # history segments: the sync reader's snapshot read
            rows = await self._in_thread(self.store.reader._latest_fill, p, names, rows, cut)
        return rows  # type: ignore[no-any-return]

    async def get_bars(self, symbols: str | Sequence[str], start: Any = None, end: Any = None, **options: Any) -> Any:
        """:meth:`FeatureStore.get_bars` in the store's thread pool (ADBC has no asyncio driver)."""
        return await self._limited(self.store.get_bars, symbols, start, end, **options)

    async def get_features(self, symbols: str | Sequence[str], start: Any = None, end: Any = None, **options: Any) -> Any:
        """:meth:`FeatureStore.get_features` in the store's thread pool."""
        return await self._limited(self.store.get_features, symbols, start, end, **options)

    async def get_training_frame(self, events: pd.DataFrame, **options: Any) -> pd.DataFrame:
        """:meth:`FeatureStore.get_training_frame` in the store's thread pool."""
        return await self._limited(self.store.get_training_frame, events, **options)  # type: ignore[no-any-return]

    # -- writes --------------------------------------------------------------------------------

    async def ingest(self, data: Any, **options: Any) -> LoadResult:
        """:meth:`FeatureStore.ingest` in the store's thread pool (one transaction, as there)."""
        return await self._limited(self.store.ingest, data, **options)  # type: ignore[no-any-return]

    async def load(self, source: Any, **options: Any) -> LoadResult:
        """:meth:`FeatureStore.load` in the store's thread pool."""
        return await self._limited(self.store.load, source, **options)  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        """The sync store's stats plus the asyncio pool's and the coalescing counters."""
        out = self.store.stats()
        out["async_pool"] = dict(self._pool.get_stats()) if self._pool is not None else None
        if self._gate is not None:
            out["coalescing"] = {"requests": self._gate.requests, "statements": self._gate.statements}
        return out


class _Checkout:
    """``async with``: a pooled asyncio connection; driver errors mapped as the sync store maps them."""

    def __init__(self, owner: AsyncFeatureStore) -> None:
        self.owner = owner
        self._cm: Any = None

    async def __aenter__(self) -> Any:
        from psycopg_pool import PoolTimeout

        if self.owner._pool is None or self.owner._closed:
            raise ConnectionError("this AsyncFeatureStore is not open: use `async with` or `await fs.open()`")
        self._cm = self.owner._pool.connection()
        try:
            return await self._cm.__aenter__()
        except PoolTimeout:
            raise PoolTimeoutError(
                f"no free asyncio connection after {self.owner._pool_timeout:g} s: all {self.owner._max_conn} are busy; "
                "raise pool_size/max_overflow or pool_timeout, or use max_concurrency to queue callers"
            ) from None

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self._cm.__aexit__(exc_type, exc, tb)
        if isinstance(exc, psycopg.Error):
            from featurestore.pool import map_error

            raise map_error(exc, self.owner.store.db.url) from exc
