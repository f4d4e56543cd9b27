"""FeatureStore: the façade that composes the steps of the data path.

load -> compute -> encode -> write -> store -> read -> cache, each owned by its own module; this
class holds the connection pool, the cache and the settings, and wires the steps together.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import URL

from featurestore import migrate as _migrate
from featurestore import placement as _placement
from featurestore.client import knowledge as _history_api
from featurestore.client import reads as _read_api
from featurestore.client import views as _view_api
from featurestore.client import writes as _write_api
from featurestore.client.support import _peak_rss_bytes
from featurestore.config import Settings, mask_url
from featurestore.embedded import EmbeddedServer
from featurestore.errors import ConfigError, ConnectionError
from featurestore.pool import Database
from featurestore.schema import ident

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from featurestore.client.replicas import Replicas
    from featurestore.consistency import CachedReads
    from featurestore.history import BarHistory, CompactResult
    from featurestore.indicators import IndicatorSpec
    from featurestore.load import BarChunk
    from featurestore.read import Reader
    from featurestore.segments import CompressResult
    from featurestore.views import FeatureView
    from featurestore.write import LoadResult

__all__ = ["FeatureStore"]

# tables counted exactly by stats(): they hold one row per symbol, view version or load
_SMALL_TABLES = ("entities", "feature_views", "loads")
# any other table is counted exactly up to this many pages (8 MiB: ~100k bar rows, a few ms), estimated above
EXACT_COUNT_MAX_PAGES = 1024


def _table_rows(conn: Any) -> dict[str, dict[str, Any]]:
    """Per table of the schema: rows (estimated unless small), table and index bytes; no scan of a large table.

    ``pg_relation_size`` and the catalog cost the same on 1M or 100M rows; a count runs only on
    the small tables and on tables of at most :data:`EXACT_COUNT_MAX_PAGES` pages.
    """
    rows = conn.execute(
        "SELECT c.relname, c.reltuples, c.relpages, "
        "pg_relation_size(c.oid) / current_setting('block_size')::int8, pg_table_size(c.oid), "
        "pg_indexes_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind = 'r' ORDER BY c.relname"
    ).fetchall()
    out: dict[str, dict[str, Any]] = {}
    sharded = _placement.shard_sizes(conn)  # on Citus: the distributed tables' rows are in their shards
    for name, reltuples, relpages, pages, table_bytes, index_bytes in rows:
        table = ident(name)
        if name in sharded:
            out[name] = _sharded_rows(conn, name, sharded[name])
            continue
        if name in _SMALL_TABLES or pages <= EXACT_COUNT_MAX_PAGES:
            count, source = int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0]), "exact"
        elif reltuples >= 0 and relpages > 0:  # the density the last ANALYZE/VACUUM saw, at today's size
            count, source = round(float(reltuples) / int(relpages) * int(pages)), "statistics"
        else:  # never analyzed and large: the planner's guess from the size and the row width
            plan = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {}").format(table)).fetchone()[0]
            count, source = int(plan[0]["Plan"]["Plan Rows"]), "size"
        out[name] = {
            "rows_estimate": count,
            "estimate_source": source,
            "table_bytes": int(table_bytes),
            "index_bytes": int(index_bytes),
        }
    return out


def _sharded_rows(conn: Any, name: str, shards: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`_table_rows` for a distributed table (Citus), from its shards' figures: counted when
    all its shards are small, else each shard estimated as one table would be (``"size"`` when
    any shard was never analyzed)."""
    pages = sum(sh["pages"] for sh in shards)
    if pages <= EXACT_COUNT_MAX_PAGES:
        count, source = int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(name))).fetchone()[0]), "exact"
    else:
        count, source = 0, "statistics"
        for sh in shards:
            if sh["pages"] == 0:
                continue
            if sh["reltuples"] >= 0 and sh["relpages"] > 0:
                count += round(sh["reltuples"] / sh["relpages"] * sh["pages"])
            else:
                count, source = count + int(sh["plan_rows"] or 0), "size"
    return {
        "rows_estimate": count,
        "estimate_source": source,
        "table_bytes": sum(sh["table_bytes"] for sh in shards),
        "index_bytes": sum(sh["index_bytes"] for sh in shards),
    }


_log = logging.getLogger(__name__)


class FeatureStore:
    """A feature store on one PostgreSQL database.

    With no ``url`` (and no ``FEATURESTORE_URL``) it starts, or joins, the embedded server under
    ``home`` (default ``FEATURESTORE_HOME`` or the platform's user data dir). Use it as a context
    manager, or call :meth:`close`, to return every connection.

    ``auto_migrate``: ``None`` (default) migrates the embedded server automatically and only
    checks a database given by URL; ``True``/``False`` force either behaviour.
    ``check_schema=False`` skips the revision check (only for running migrations).

    Reads go through an in-process result cache: ``cache`` names the eviction policy (``"lru"``,
    ``"lfu"``, ``"arc"``, ``"slru"``, ``"clock"``, ``"adaptive"``, ``"w-tinylfu"``, ``"s3-fifo"``,
    ``"sieve"``; ``None`` disables it), bounded by ``cache_bytes`` (and ``cache_entries``).
    ``consistency`` is ``"local"``, ``"notify"`` or ``"strict"``: see featurestore.consistency
    for exactly what each guarantees.

    Serving: concurrent ``get_latest`` calls of one shape from several threads share one
    statement (``coalesce=False`` turns it off); ``max_concurrency`` (calls in flight) and
    ``rate_limit`` (calls per second) bound the reads and loads of this store, callers beyond
    them waiting in order for at most ``timeout`` seconds (default ``pool_timeout``)
    (featurestore.client.limits). :class:`~featurestore.AsyncFeatureStore` is the asyncio face.

    ``load_memory_rows`` (default ``FEATURESTORE_LOAD_MEMORY_ROWS``, else 12,000,000, about 0.6 GB)
    bounds the bar rows a load holds in memory at once: its appended rows are kept for the
    features step up to this many (more, and features read them back), and features are computed
    in groups of symbols that fit beside them. 0 keeps none: features always read bars back, in
    groups of up to 2M rows. ``LoadResult.held_rows_peak`` reports what a load held.
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
        cache: str | None = "arc",
        cache_bytes: int = 256 << 20,
        cache_entries: int | None = None,
        consistency: str = "local",
        load_memory_rows: int | None = None,
        coalesce: bool = True,
        max_concurrency: int | None = None,
        rate_limit: float | None = None,
        timeout: float | None = None,
        read_replicas: Sequence[str | URL] | None = None,
        replica_wait: float = 0.1,
    ) -> None:
        from featurestore.client.limits import Limits
        from featurestore.consistency import CONSISTENCY_MODES

        limits = Limits(max_concurrency, rate_limit, pool_timeout if timeout is None else timeout)  # checked first
        if consistency not in CONSISTENCY_MODES:  # checked even with cache=None: a typo must not pass
            raise ConfigError(
                f"consistency must be one of {', '.join(map(repr, CONSISTENCY_MODES))}, got {consistency!r}"
            )
        self.settings = Settings.resolve(
            url,
            home=home,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=pool_recycle,
            load_memory_rows=load_memory_rows,
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
        self.last_load: LoadResult | None = None
        self._reads: CachedReads | None = None
        self._reader: Reader | None = None
        self._reader_lock = threading.Lock()
        self._coalesce = bool(coalesce)
        self.limits = limits
        self._replicas: Replicas | None = None
        self._stamp_seen: Any = None  # newest knowledge stamp seen (see _settled)
        try:
            if auto_migrate is None:
                auto_migrate = self._server is not None
            if auto_migrate:
                _migrate.upgrade(self.db.engine, "head")
            self.schema_revision: str | None = None
            if check_schema:
                self.schema_revision = _migrate.check_schema(self.db.engine)
            if cache is not None:
                from featurestore.cache import make_cache
                from featurestore.config import libpq_url
                from featurestore.consistency import CachedReads, entry_size

                self._reads = CachedReads(
                    make_cache(cache, maxsize=cache_bytes, maxentries=cache_entries, getsizeof=entry_size),
                    consistency=consistency,
                    generation=self._generation,
                    listen_url=libpq_url(db_url) if consistency == "notify" else None,
                )
            if read_replicas:
                self._replicas = self._open_replicas(read_replicas, replica_wait)
        except sa.exc.DBAPIError as exc:
            self.db.close()
            from featurestore.pool import is_disconnect

            orig = exc.orig if exc.orig is not None else exc
            if isinstance(exc, sa.exc.OperationalError) and is_disconnect(orig):
                first = str(orig).strip().splitlines()[0]
                err = ConnectionError(f"cannot connect to {mask_url(db_url)}: {first}")
                err.sqlstate = getattr(orig, "sqlstate", None)
                raise err from None
            from featurestore.errors import database_error

            raise database_error(orig, "opening the store") from exc
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
        if self._reads is not None:
            self._reads.close()
        if self._reader is not None:
            self._reader.close()
        if self._replicas is not None:
            self._replicas.close()
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
        """Upgrade the schema to ``revision``; return the revision now current.

        Every cached result is dropped (here, and through NOTIFY in stores listening with
        ``consistency="notify"``): a migration changes what reads return.
        """
        try:
            _migrate.upgrade(self.db.engine, revision)  # on a distributed store, places what it made
        finally:  # even a failed migration may have changed something before it failed
            self._invalidate_committed(None, "a migration")
        with self.db.engine.connect() as conn:
            self.schema_revision = _migrate.current_revision(conn) or "base"
        return self.schema_revision

    def distribute(self, shard_count: int | None = None) -> dict[str, Any]:
        """Make this store a distributed one on a Citus coordinator: the per-symbol tables
        distributed by entity and colocated (one symbol's rows on one worker), the small shared
        tables reference tables (see :mod:`featurestore.placement`). Idempotent; views and
        tables made later are placed as they are created. ``shard_count``: Citus's default
        (``citus.shard_count``) when None; fixed once ``bars`` is distributed. Returns the
        placement (also in :meth:`info`). Refuses on a plain PostgreSQL (ConfigError)."""

        def run(conn: Any) -> dict[str, Any]:
            with conn.transaction():
                return _placement.distribute(conn, shard_count)

        try:
            return self.db.run(run)
        finally:
            if self._reader is not None:
                self._reader._distributed = None  # its statements' forms follow the placement
            self._invalidate_committed(None, "distribute")

    def downgrade(self, revision: str) -> str:
        """Downgrade the schema to ``revision`` (``"base"`` drops every table and its data).

        Every cached result is dropped, as for :meth:`migrate`.
        """
        if not revision:
            raise ConfigError("downgrade needs a target revision, e.g. 'base' or '0001'")
        try:
            _migrate.downgrade(self.db.engine, revision)
        finally:
            self._invalidate_committed(None, "a migration")
        with self.db.engine.connect() as conn:
            self.schema_revision = _migrate.current_revision(conn) or "base"
        return self.schema_revision

    # -- facts --------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Facts about the store: URL (password masked), server, schema, rows, pool, cache, memory.

        Everything :meth:`stats` reports, plus the server version, the schema revision and
        ``bars`` (``rows_estimate`` and its ``estimate_source``, see :meth:`stats`, counting the
        bars in history segments too, which ``in_segments`` gives exactly); ``rows``
        holds the exact counts of the small tables (entities, feature_views, loads). Fast on
        any store size: nothing scans bars or a feature table. ``featurestore info`` prints it.
        """
        with self.db.engine.connect() as conn:
            revision = _migrate.current_revision(conn)
        version = self.db.run(lambda c: c.execute("SHOW server_version").fetchall()[0][0], idempotent=True)
        stats = self.stats()
        bars = stats["server"]["tables"].get("bars", {})

        def in_segments(conn: Any) -> int:  # exact: one row per segment of up to 10,000 bars
            if conn.execute("SELECT to_regclass('bars_segments')").fetchone()[0] is None:
                return 0
            return int(conn.execute("SELECT coalesce(sum(n), 0) FROM bars_segments").fetchone()[0])

        held = self.db.run(in_segments, idempotent=True)
        placed = self.db.run(_placement.placement, idempotent=True)
        return {
            "url": self.url,
            "embedded": self.embedded,
            "data_dir": str(self._server.data_dir) if self._server else None,
            "server_version": version,
            "schema_revision": revision,
            "schema_head": _migrate.head_revision(),
            "placement": placed,
            "rows": stats["server"]["rows"],
            "bars": {
                "rows_estimate": (bars.get("rows_estimate") or 0) + held,
                "estimate_source": bars.get("estimate_source"),
                "in_segments": held,
            },
            **stats,
        }

    def stats(self) -> dict[str, Any]:
        """Memory, pool, cache, server and last-load figures, for ``featurestore info`` and monitoring.

        ``process``: RSS and this process's own peak RSS (``_peak_rss_bytes``); ``pool``: size,
        checked out, overflow; ``cache``: bytes, entries, hits, misses, hit ratio and policy;
        ``server``: database size, exact ``rows`` of the small tables (entities, feature_views,
        loads) and, per table, ``rows_estimate`` with its ``estimate_source`` (``"exact"``: counted,
        only for small tables (``EXACT_COUNT_MAX_PAGES``); ``"statistics"``: the rows per page of the last ANALYZE or VACUUM
        times the table's current pages; ``"size"``: never analyzed, the planner's estimate from
        the table's size and row width), table and index bytes; ``last_load``: the figures of this
        store's last load.
        """
        import psutil

        proc = psutil.Process()
        peak = _peak_rss_bytes(proc)

        def server(conn: Any) -> dict[str, Any]:
            db_bytes = _placement.database_bytes(conn)
            tables = _table_rows(conn)
            exact = {t: tables[t]["rows_estimate"] for t in _SMALL_TABLES if t in tables}
            return {"database_bytes": int(db_bytes), "rows": exact, "tables": tables}

        return {
            "process": {"rss_bytes": proc.memory_info().rss, "peak_rss_bytes": max(peak, proc.memory_info().rss)},
            "pool": self.db.pool_status(),
            "cache": self.cache_stats(),
            "server": self.db.run(server, idempotent=True),
            "last_load": self.last_load.as_dict() if self.last_load else None,
            "replicas": self._replicas.stats() if self._replicas is not None else None,
        }

    def cache_stats(self) -> dict[str, Any] | None:
        """The result cache's figures: policy, consistency, hits, misses, hit ratio, bytes (None when off)."""
        return self._reads.stats() if self._reads is not None else None

    def clear_cache(self) -> None:
        """Drop every cached result (and keep the counters)."""
        if self._reads is not None:
            self._reads.invalidate(None)

    def _generation(self) -> int:
        def q(conn: Any) -> int:
            return int(conn.execute("SELECT generation FROM store_state WHERE id = 1", prepare=True).fetchone()[0])

        return self.db.run(q, idempotent=True)

    # -- knowledge time ---------------------------------------------------------------------------

    def history(self, symbol: str, ts: Any) -> BarHistory:
        """Every stored version of ``symbol``'s bar at ``ts`` and of its feature rows (each view
        version), with when each became known, until when, and by which load (featurestore.history)."""
        return _history_api.history(self, symbol, ts)

    def compact_history(self, before: Any) -> CompactResult:
        """Drop versions superseded at or before ``before`` (a tz-aware time in the past), bounding
        the history's size; ``as_known_at`` earlier than ``before`` then raises HistoryError."""
        return _history_api.compact_history(self, before)

    def compress_history(self, before: Any = None, *, older_than: Any = None) -> CompressResult:
        """Move bars and feature rows older than ``before`` (or than now - ``older_than``, e.g.
        ``"90D"``) into compressed history segments (featurestore.segments): per-symbol column
        blocks that take about half the bytes of rows and read many times faster in bulk. Every
        read returns the same results either way; a later correction of segmented history moves
        the segments it touches back into rows. Unrelated to :meth:`compact_history`, which drops
        superseded versions."""
        return _history_api.compress_history(self, before, older_than=older_than)

    def export(self, path: str | os.PathLike[str], **options: Any) -> Any:
        """Write bars (and, with ``view=``, features) to Parquet, Feather or CSV, streamed by symbol batches.

        Options: ``symbols``, ``start``, ``end``, ``view``, ``version``, ``columns``, ``format``,
        ``compression``, ``chunk_symbols``, ``chunk_rows``, ``overwrite``, ``progress``; see
        featurestore.export.export. A bars export loads back into a store unchanged.
        """
        from featurestore.export import export as _export

        return _export(self, path, **options)

    # -- feature views --------------------------------------------------------------------------

    def create_view(
        self,
        name: str,
        indicators: Iterable[str | IndicatorSpec],
        *,
        columns: Iterable[str] | None = None,
        n_jobs: int = 1,
        batch_entities: int | None = None,
        progress: bool | None = None,
        available_after: Any = None,
        dtype: str = "float64",
        backend: str = "joblib",
    ) -> FeatureView:
        """Register a feature view and backfill it from the stored bars; return the view.

        ``indicators`` are spec strings (``"sma_20"``, ``"macd_12_26_9"``, ``"bbands_20_2"``) or
        ``IndicatorSpec`` objects; ``columns`` are float columns the user supplies on ingest.
        The same spec again is a no-op (or resumes an interrupted backfill); a changed spec makes
        a new version and table, and the old version stays readable until :meth:`drop_view`.
        The backfill runs in batches of entities, each its own transaction, in parallel with
        joblib when ``n_jobs != 1`` (any joblib backend, via ``joblib.parallel_config``).
        ``backend="ray"`` runs the batches as tasks on a Ray cluster (``ray.init()``'s: the one in
        ``RAY_ADDRESS`` or started by ``ray start`` here, else a local one), each worker writing
        through its own connection; a batch whose worker or node dies is retried, and a run that
        stops for good raises BackfillInterrupted and resumes when called again. ``n_jobs > 1``
        then caps the batches running at once.
        ``available_after`` (a ``timedelta`` or a string such as ``"15min"``): a feature row at bar
        time ts counts as known only from ts + this, for sources published with a delay
        (knowledge-time reads, training frames); part of the spec, so changing it makes a version.
        ``dtype="float32"`` stores the feature columns as PostgreSQL ``real`` (values computed in
        float64, rounded to float32 on write; reads return float32 columns); ``"float64"``
        (default) stores ``float8``. Part of the spec too. A backfill that meets a value the view
        cannot store (beyond float32) raises ValidationError and removes the new version; an
        interrupted one stays ``backfilling`` and the same call resumes it.
        """
        return _view_api.create_view(self, name, indicators, columns=columns, n_jobs=n_jobs, batch_entities=batch_entities, progress=progress, available_after=available_after, dtype=dtype, backend=backend)

    def list_views(self) -> list[dict[str, Any]]:
        """Every registered view version, described (name, version, table, status, columns)."""
        return _view_api.list_views(self)

    def describe_view(self, name: str, version: int | None = None) -> dict[str, Any]:
        """One view version (newest by default), with its row and entity counts."""
        return _view_api.describe_view(self, name, version)

    def drop_view(self, name: str, version: int | None = None) -> list[int]:
        """Drop one version of a view (or all of them) with its table; return the versions dropped."""
        return _view_api.drop_view(self, name, version)

    def _writable_columns(self) -> list[str]:
        """The user columns a load may carry; first, a view the load could not write fails the load
        before any data is read (a user kernel that is unregistered or registered with other code)."""
        return _view_api.writable_columns(self)

    def _views(self, conn: Any) -> list[FeatureView]:
        from featurestore import views as _views

        return _views.list_views(conn)

    # -- writing --------------------------------------------------------------------------------

    def ingest(
        self,
        data: pd.DataFrame | pa.Table,
        *,
        on_conflict: str = "update",
        create_symbols: bool = True,
        assume_tz: str | None = None,
        progress: bool | None = None,
        backend: str = "local",
    ) -> LoadResult:
        """Write a DataFrame or Arrow table of bars (and user feature columns) in one transaction.

        Columns: symbol, ts (tz-aware), open, high, low, close, volume, plus any user column of a
        registered view. ``on_conflict``: ``"update"`` corrects stored bars that differ,
        ``"ignore"`` keeps them, ``"error"`` refuses a load that would change one. Features of
        every view are computed in the same transaction. ``backend="ray"`` computes them on a
        Ray cluster (split by symbol; a large correction's recompute, say), still written here
        in the load's one transaction. Returns what the load did.
        """
        with self.limits.slot(), _write_api.compute_backend(backend):
            return _write_api.ingest(self, data, on_conflict=on_conflict, create_symbols=create_symbols, assume_tz=assume_tz, progress=progress)

    def load(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        format: str | None = None,
        symbol: str | None = None,
        column_map: Mapping[str, str | None] | None = None,
        chunk_rows: int | None = None,
        on_conflict: str = "update",
        create_symbols: bool = True,
        assume_tz: str | None = None,
        delimiter: str = ",",
        encoding: str = "utf8",
        progress: bool | None = None,
        backend: str = "local",
    ) -> LoadResult:
        """Load CSV, Parquet or Feather files (paths, directories or globs) in one transaction.

        Files stream through in chunks of ``chunk_rows`` rows, so memory stays bounded whatever
        their size. ``symbol=`` names the symbol of one-symbol files; ``column_map`` renames
        source columns (``{"Date": "ts", "Adj Close": None}``; None drops a column);
        ``delimiter`` and ``encoding`` apply to CSV. Errors name the file, its data row (counted
        from 1, header excluded) and the column. The progress bar's total is exact for Parquet
        and Feather (their metadata) and estimated from the size for CSV. ``backend``: as for
        :meth:`ingest`.
        """
        with self.limits.slot(), _write_api.compute_backend(backend):
            return _write_api.load(self, paths, format=format, symbol=symbol, column_map=column_map, chunk_rows=chunk_rows, on_conflict=on_conflict, create_symbols=create_symbols, assume_tz=assume_tz, delimiter=delimiter, encoding=encoding, progress=progress)

    def _write(
        self,
        chunks: Callable[[], Iterable[BarChunk]],
        *,
        source: str,
        on_conflict: str,
        create_symbols: bool,
        small: bool,
        progress: bool | None,
        total: int | None,
        started: float | None = None,
        validate_s: float = 0.0,
    ) -> LoadResult:
        """Run one load in one transaction; retry it whole if PostgreSQL broke a deadlock.

        Multi-chunk loads lock entities as they meet them, so two loads that meet the same symbols
        in opposite orders can deadlock; PostgreSQL then aborts one of them, which rolled back
        completely and is simply run again (``chunks`` re-reads the source).

        ``started`` is the caller's entry time (``time.perf_counter()``) and ``validate_s`` the
        validation it already did: the result's ``elapsed_s`` covers everything until return.
        Once the transaction has committed nothing raises any more (see ``_after_commit``).
        """
        return _write_api.write(self, chunks, source=source, on_conflict=on_conflict, create_symbols=create_symbols, small=small, progress=progress, total=total, started=started, validate_s=validate_s)

    def _after_commit(self, result: LoadResult, started: float, bar: Any = None) -> None:
        """Everything after a load committed: nothing here may turn it into an exception.

        ``last_load`` and cache invalidation come first; then ANALYZE, best effort: a failure
        (a lock timeout, a cancel, a lost connection) is logged as a warning, never raised.
        KeyboardInterrupt still propagates, but only once ``last_load`` is set.
        """
        _write_api.after_commit(self, result, started, bar)

    def _invalidate_committed(self, symbols: Sequence[str] | None, what: str) -> None:
        """Invalidate after a commit: on failure clear the whole cache; log, never raise."""
        _write_api.invalidate_committed(self, symbols, what)

    def _analyze_if_grown(self, inserted: int) -> None:
        """ANALYZE bars and the view tables after a load that grew them a lot.

        Until autovacuum gets to it, a freshly loaded table has no statistics and the planner can
        pick a nested loop that rescans bars per feature row (seconds instead of milliseconds,
        tests/test_reliability.py). Small appends never pay for this.
        """
        _write_api.analyze_if_grown(self, inserted)

    def _invalidate(self, symbols: Sequence[str] | None) -> None:
        """Drop cached results a write could have changed (None: everything), before it returns."""
        if self._reads is not None:
            self._reads.invalidate(symbols)

    # -- reading --------------------------------------------------------------------------------

    @property
    def reader(self) -> Reader:
        """The uncached read step (featurestore.read.Reader) of this store."""
        reader = self._reader
        if reader is None:
            with self._reader_lock:  # threads meeting a new store at once share one Reader (and its bulk connections)
                if self._reader is None:
                    from featurestore.read import Reader

                    self._reader = Reader(self.db, coalesce=self._coalesce)
                reader = self._reader
        return reader

    def _open_replicas(self, urls: Sequence[str | URL], wait: float) -> Replicas:
        from featurestore.client.replicas import Replica, Replicas
        from featurestore.config import normalize_url
        from featurestore.read import Reader

        if not (isinstance(wait, (int, float)) and wait >= 0):
            raise ConfigError(f"replica_wait must be a number of seconds >= 0, got {wait!r}")
        if isinstance(urls, (str, URL)):
            urls = [urls]
        out = []
        for u in urls:
            url = normalize_url(u)
            db = Database(url, pool_size=self.settings.pool_size, max_overflow=self.settings.max_overflow,
                          pool_timeout=self.settings.pool_timeout, pool_recycle=self.settings.pool_recycle)
            out.append(Replica(mask_url(url), db, Reader(db, coalesce=self._coalesce)))
        return Replicas(out, self.db, wait=wait)

    def _route(self, fn: Callable[[Reader], Any]) -> Any:
        """``fn(reader)`` on a read replica when one is configured and has this store's writes
        (featurestore.client.replicas), else on the primary's reader."""
        if self._replicas is None:
            return fn(self.reader)
        return self._replicas.run(fn, self.reader)

    def _read(self, key: tuple[Any, ...], symbols: Iterable[str], compute: Any, as_known_at: Any = None) -> Any:
        return _read_api.read(self, key, symbols, compute, as_known_at)

    def _settled(self, as_known_at: Any) -> bool:
        """True when no future write can change answers at knowledge time ``as_known_at``.

        Stamps follow commit order (taken under the store_state lock), so once a change stamped
        after ``as_known_at`` has committed, every later one is stamped later still. The newest
        stamp seen is kept: only a knowledge time at or after it costs a query.
        """
        return _read_api.settled(self, as_known_at)

    def get_bars(
        self,
        symbols: str | Sequence[str],
        start: Any = None,
        end: Any = None,
        *,
        columns: str | Sequence[str] | None = None,
        as_arrow: bool = False,
        downcast: bool = False,
        as_known_at: Any = None,
    ) -> pd.DataFrame | pa.Table:
        """Bars of ``symbols`` with ``start <= ts <= end``: a (symbol, ts)-indexed DataFrame or Arrow.

        See featurestore.read for the exact result contract (dtypes, order, missing symbols).
        ``downcast=True`` returns float32 values and categorical symbols (featurestore.read.downcast).
        ``as_known_at`` (tz-aware; default now): the bars as stored at that moment.
        """
        with self.limits.slot():
            return _read_api.get_bars(self, symbols, start, end, columns=columns, as_arrow=as_arrow, downcast=downcast, as_known_at=as_known_at)

    def get_features(
        self,
        symbols: str | Sequence[str],
        start: Any = None,
        end: Any = None,
        *,
        view: str,
        version: int | None = None,
        columns: str | Sequence[str] | None = None,
        include_bars: bool = False,
        as_arrow: bool = False,
        downcast: bool = False,
        as_known_at: Any = None,
    ) -> pd.DataFrame | pa.Table:
        """Feature rows of ``view`` for ``symbols`` with ``start <= ts <= end`` (bars too with ``include_bars``).

        ``as_known_at``: the rows as computed and stored at that moment (knowledge time).
        """
        with self.limits.slot():
            return _read_api.get_features(self, symbols, start, end, view=view, version=version, columns=columns, include_bars=include_bars, as_arrow=as_arrow, downcast=downcast, as_known_at=as_known_at)

    def get_latest(
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
        """One row per symbol: the last bar (and feature row with ``view``) at or before ``as_of`` (now).

        ``as_known_at``: what this read would have returned at that moment (``as_of`` defaults to it).
        ``as_dict``: a list of plain records ``{"symbol", "ts", <columns>}`` (no pandas: the fast
        path for a live strategy asking one symbol at a time). Concurrent calls from several
        threads are merged into one statement (``coalesce=False`` on the store turns that off).
        """
        with self.limits.slot():
            return _read_api.get_latest(self, symbols, as_of=as_of, view=view, version=version, columns=columns, as_arrow=as_arrow, downcast=downcast, as_known_at=as_known_at, as_dict=as_dict)

    def get_training_frame(
        self,
        events: pd.DataFrame,
        *,
        view: str,
        version: int | None = None,
        columns: str | Sequence[str] | None = None,
        tolerance: Any = None,
        event_time_col: str = "ts",
        symbol_col: str = "symbol",
        include_bars: bool = False,
        downcast: bool = False,
        as_known_at: Any = None,
        known_at_col: str | None = None,
        strategy: str = "auto",
    ) -> pd.DataFrame:
        """Point-in-time join: each event gets the feature row with the greatest ``ts <= event time``.

        The result has exactly the events' rows, in their order, with their other columns (labels),
        plus the features (NaN where nothing qualifies); never a row from after the event.
        ``as_known_at``: the frame as the store knew it then; ``known_at_col``: per event, as known
        at its own decision time (see :meth:`featurestore.read.Reader.get_training_frame`).
        ``strategy``: ``"auto"`` (default) picks, from the view's row counts, between one bulk read
        per symbol (``"range"``, for dense events) and one index probe per event
        (``"per_event"``, for sparse ones); both give the same frame.
        """
        with self.limits.slot():
            return _read_api.get_training_frame(self, events, view=view, version=version, columns=columns, tolerance=tolerance, event_time_col=event_time_col, symbol_col=symbol_col, include_bars=include_bars, downcast=downcast, as_known_at=as_known_at, known_at_col=known_at_col, strategy=strategy)
