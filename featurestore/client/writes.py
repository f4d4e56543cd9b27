"""[client] Writes: ingest, load, the retried load transaction, and what follows a commit."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from psycopg import sql

from featurestore.errors import ConfigError
from featurestore.schema import ident

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from featurestore.client import FeatureStore
    from featurestore.load import BarChunk
    from featurestore.write import LoadResult

from featurestore.client.support import (
    _progress,
)

_log = logging.getLogger('featurestore.client')


# where a write's features are computed (featurestore.write.features.COMPUTE_BACKEND)
COMPUTE_BACKENDS = ("local", "ray")


@contextmanager
def compute_backend(backend: str) -> Iterator[None]:
    """Compute the features of the writes in the block on ``backend`` ("local" or "ray");
    ConfigError (before anything is read or written) for another, or for Ray not installed."""
    from featurestore.write import features

    if backend not in COMPUTE_BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(map(repr, COMPUTE_BACKENDS))}, not {backend!r}")
    if backend == "ray":
        from featurestore.write import on_ray

        on_ray.check_available()
    token = features.COMPUTE_BACKEND.set(backend)
    try:
        yield
    finally:
        features.COMPUTE_BACKEND.reset(token)


def ingest(store: FeatureStore,
    data: pd.DataFrame | pa.Table,
    *,
    on_conflict: str = "update",
    create_symbols: bool = True,
    assume_tz: str | None = None,
    progress: bool | None = None,
) -> LoadResult:
    """The body of :meth:`FeatureStore.ingest`."""
    started = time.perf_counter()  # elapsed_s is what the caller waits for, from here
    from featurestore import load as _load

    user_cols = store._writable_columns()
    chunk = _load.validate_frame(data, extra_columns=user_cols, assume_tz=assume_tz).sorted()
    validate_s = time.perf_counter() - started
    from featurestore.write import SMALL_WRITE_ROWS

    return store._write(lambda: [chunk], source="DataFrame", on_conflict=on_conflict,
                       create_symbols=create_symbols, small=len(chunk) < SMALL_WRITE_ROWS,
                       progress=progress, total=len(chunk), started=started, validate_s=validate_s)


def load(store: FeatureStore,
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
) -> LoadResult:
    """The body of :meth:`FeatureStore.load`."""
    started = time.perf_counter()  # elapsed_s is what the caller waits for, from here
    from featurestore import load as _load

    user_cols = store._writable_columns()
    paths_list = _load.expand_paths(paths)

    def chunks() -> Iterable[BarChunk]:
        stream = _load.read_chunks(
            paths_list,
            format=format,
            chunk_rows=chunk_rows or _load.DEFAULT_CHUNK_ROWS,
            extra_columns=user_cols,
            column_map=column_map,
            symbol=symbol,
            assume_tz=assume_tz,
            delimiter=delimiter,
            encoding=encoding,
        )

        return (c.sorted() for c in stream)

    total, _ = _load.estimate_rows(paths_list, format=format) if progress is not False else (None, False)
    source = str(paths_list[0]) if len(paths_list) == 1 else f"{paths_list[0]} (+{len(paths_list) - 1} files)"
    return store._write(chunks, source=source, on_conflict=on_conflict,
                       create_symbols=create_symbols, small=False, progress=progress, total=total,
                       started=started)


def write(store: FeatureStore,
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
    """The body of :meth:`FeatureStore._write`."""
    from featurestore.errors import DeadlockError
    from featurestore.write import LoadWriter

    if started is None:
        started = time.perf_counter()
    attempts = 4
    for attempt in range(attempts):
        bar = _progress(progress, total=total, desc="load", unit="rows")
        stage = "writing"  # -> "committing" -> "committed": what a Ctrl-C leaves in the store
        try:
            with store.db.connection() as conn:
                with conn.transaction():
                    writer = LoadWriter(conn, source=source, on_conflict=on_conflict,
                                        create_symbols=create_symbols, views=store._views(conn), small=small,
                                        memory_rows=store.settings.load_memory_rows, progress=bar.features)
                    reading = 0.0  # reading, validating and sorting file chunks happens lazily, here
                    t0 = time.perf_counter()
                    for chunk in chunks():
                        reading += time.perf_counter() - t0
                        writer.write_chunk(chunk)
                        bar.update(len(chunk))
                        t0 = time.perf_counter()
                    reading += time.perf_counter() - t0
                    bar.phase("features")  # every row is in: the bar fills, the features follow
                    result = writer.finish()
                    bar.phase("commit")
                    t_commit = time.perf_counter()
                    stage = "committing"
                # leaving the block committed (an exception there propagates: nothing committed)
                stage = "committed"
                commit_s = time.perf_counter() - t_commit
            break  # the bar stays open through the post-commit phase
        except DeadlockError as exc:  # pool.py maps DeadlockDetected / SerializationFailure
            bar.close()
            if attempt + 1 == attempts:
                raise DeadlockError(
                    f"load of {source} was aborted by {attempts} deadlocks with concurrent loads; "
                    f"nothing was written: run it again (last: {exc.server_message})",
                    sqlstate=exc.sqlstate,
                    server_message=exc.server_message,
                ) from exc
            time.sleep(0.05 * (attempt + 1))
        except KeyboardInterrupt as exc:  # the transaction rolled back (or committed, see stage)
            bar.close()
            raise _interrupted(stage, source) from exc
        except BaseException:
            bar.close()
            raise
    result.phases["validate"] = validate_s + reading
    result.phases["commit"] = commit_s
    try:
        store._after_commit(result, started, bar)
    except KeyboardInterrupt as exc:  # last_load is set: the load is in the store
        raise _interrupted("committed", source, result.load_id) from exc
    finally:
        bar.close()
    return result


def _interrupted(stage: str, source: str, load_id: int | None = None) -> BaseException:
    """The LoadInterrupted for a Ctrl-C at ``stage`` of a load."""
    from featurestore.errors import LoadInterrupted

    if stage == "writing":
        return LoadInterrupted("load interrupted: nothing was written", committed=False)
    if stage == "committing":
        return LoadInterrupted(
            f"load of {source} interrupted while committing: it may or may not be in the store "
            "(featurestore info shows the last load)", committed=None,
        )
    which = f"load {load_id}" if load_id is not None else "the load"
    return LoadInterrupted(f"load interrupted after it committed: {which} of {source} is in the store", committed=True)


def after_commit(store: FeatureStore, result: LoadResult, started: float, bar: Any = None) -> None:
    """The body of :meth:`FeatureStore._after_commit`."""
    store.last_load = result
    if result.changed_symbols:
        store._invalidate_committed(list(result.changed_symbols), f"load {result.load_id}")
    t0 = time.perf_counter()
    try:
        if bar is not None:
            bar.phase("ANALYZE")
        store._analyze_if_grown(result.inserted)
    except Exception as exc:
        _log.warning(
            "load %s committed, but ANALYZE after it failed (autovacuum will do it later): %s",
            result.load_id, exc,
        )
    finally:
        result.phases["analyze"] = time.perf_counter() - t0
        result.elapsed_s = time.perf_counter() - started


def invalidate_committed(store: FeatureStore, symbols: Sequence[str] | None, what: str) -> None:
    """The body of :meth:`FeatureStore._invalidate_committed`."""
    if store._replicas is not None:
        try:  # read-your-writes: replicas must replay up to here before they serve this store
            store._replicas.note_commit()
        except Exception:
            _log.warning("reading the WAL position after %s failed; reads go to the primary", what, exc_info=True)
            store._replicas.note_unknown()
    try:
        store._invalidate(symbols)
        return
    except Exception:
        _log.warning("cache invalidation after %s failed; clearing the cache", what, exc_info=True)
    try:
        store._invalidate(None)
    except Exception:
        _log.warning("clearing the cache after %s failed", what, exc_info=True)


def analyze_if_grown(store: FeatureStore, inserted: int) -> None:
    """The body of :meth:`FeatureStore._analyze_if_grown`."""
    if inserted < 1000:
        return

    def run(conn: Any) -> None:
        tables = ["bars", *(v.table_name for v in store._views(conn))]
        rows = conn.execute(
            "SELECT relname, reltuples FROM pg_class WHERE relname = ANY(%s) AND relkind = 'r'", (tables,)
        ).fetchall()
        for name, reltuples in rows:
            if reltuples < 0 or inserted > 0.2 * reltuples:
                conn.execute(sql.SQL("ANALYZE {}").format(ident(name)))

    store.db.run(run)

