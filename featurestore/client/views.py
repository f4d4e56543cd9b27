"""[client] Feature views: create (register + backfill), list, describe, drop."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from psycopg import sql

from featurestore.errors import ConfigError, ValidationError
from featurestore.schema import ident

if TYPE_CHECKING:

    from featurestore.client import FeatureStore
    from featurestore.indicators import IndicatorSpec
    from featurestore.views import FeatureView

from featurestore.client.support import (
    _progress,
)

_log = logging.getLogger('featurestore.client')

# where a view's backfill batches run: "joblib" (this process when n_jobs == 1, else joblib's
# workers, under any joblib backend) or "ray" (tasks on a Ray cluster, write/on_ray.py)
BACKENDS = ("joblib", "ray")


def create_view(store: FeatureStore,
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
    """The body of :meth:`FeatureStore.create_view`."""
    from featurestore import views as _views
    from featurestore import write as _write

    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, not {backend!r}")
    if backend == "ray":
        from featurestore.write import on_ray

        on_ray.check_available()
    specs, cols = _views.normalize_spec(indicators, columns)
    lag = _views.availability_lag(available_after)
    kind = _views.view_dtype(dtype)  # ConfigError before anything is written
    with store.db.connection() as conn, conn.transaction():
        view, _created = _views.register_view(conn, name, specs, cols, lag, kind)
    if view.status == "ready":
        return view
    batch = batch_entities or _write.FEATURE_BATCH_ENTITIES
    with store.db.connection() as conn:
        batches = _write.pending_backfill(conn, view, batch)
    bar = _progress(progress, total=len(batches), desc=f"backfill {name} v{view.version}", unit="batch")
    try:
        if backend == "ray" and batches:
            from featurestore.config import libpq_url
            from featurestore.write import on_ray

            in_flight = n_jobs if n_jobs > 1 else None
            on_ray.run_backfill(libpq_url(store.db.url), view, batches, in_flight=in_flight, on_batch=lambda: bar.update(1))
        else:
            _backfill(store, view, batches, n_jobs, bar)
    except ValidationError as exc:
        # A value the view cannot store (a float32 view's overflow) is in the stored bars. An
        # interrupted backfill stays 'backfilling' and resumes, but this one cannot: every retry
        # stops at the same row, and a version left behind makes each later load of that symbol
        # fail too (loads compute every version, ready or not). So the version is removed.
        bar.close()
        raise _remove_failed_version(store, view, exc) from exc
    finally:
        bar.close()
    with store.db.connection() as conn, conn.transaction():
        # reads by name now resolve to this version: other processes' caches (notify, strict) must drop theirs
        _write.bump_generation(conn, None)
        # its features are known (as_known_at) from this write's stamp on
        conn.execute(
            "UPDATE feature_views SET status = 'ready', ready_at = (SELECT known_at FROM store_state WHERE id = 1) "
            "WHERE view_id = %s",
            (view.view_id,),
        )
    # The view is complete and committed: nothing below may turn that into an exception.
    ready = dataclasses.replace(view, status="ready")
    store._invalidate_committed(None, f"creating view {name} v{view.version}")
    try:  # a fresh table has no statistics: give the planner some
        store.db.run(lambda c: c.execute(sql.SQL("ANALYZE {}").format(ident(view.table_name))))
    except Exception as exc:
        _log.warning("view %s v%s is ready, but ANALYZE of %s failed: %s", name, view.version, view.table_name, exc)
    try:
        return store.db.run(lambda c: _views.get_view(c, ready.name, ready.version), idempotent=True)
    except Exception as exc:
        _log.warning("view %s v%s is ready, but reading it back failed: %s", name, view.version, exc)
        return ready


def _backfill(store: FeatureStore, view: FeatureView, batches: list[list[int]], n_jobs: int, bar: Any) -> None:
    """Run the backfill batches, one transaction each, here or in joblib workers."""
    from featurestore import write as _write

    if n_jobs == 1 or len(batches) <= 1:
        for ids in batches:
            with store.db.connection() as conn:
                _write.backfill_batch(conn, view, ids)
            bar.update(1)
        return
    from joblib import Parallel, delayed

    from featurestore.config import libpq_url

    url = libpq_url(store.db.url)
    jobs = [delayed(_write.backfill_worker)(url, view.name, view.version, ids) for ids in batches]
    try:
        runner = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
    except ValueError:  # backends such as Ray return lists only
        runner = Parallel(n_jobs=n_jobs)
    for _ in runner(jobs):  # a worker's error is raised here (joblib stops the others)
        bar.update(1)


def _remove_failed_version(store: FeatureStore, view: FeatureView, exc: ValidationError) -> ValidationError:
    """Drop ``view`` (a version whose backfill met a value it cannot store) with its table, history
    table, state and checkpoints, in one transaction; return the error to raise, saying so."""
    from featurestore import views as _views
    from featurestore.write import bump_generation

    what = f"view {view.name!r} v{view.version}"
    try:
        with store.db.connection() as conn, conn.transaction():
            # the batches committed before this one (the failing batch wrote nothing)
            row = conn.execute(
                "SELECT count(*) FROM indicator_state WHERE view_id = %s", (view.view_id,)
            ).fetchone()
            done = int(row[0]) if row else 0
            _views.drop_view(conn, view.name, view.version)
            bump_generation(conn, None)
    except Exception as drop_exc:  # the version stays 'backfilling': say how to remove it
        _log.warning("removing %s after its failed backfill failed: %s", what, drop_exc)
        return ValidationError(
            f"{exc.message}; the backfill of {what} stopped there, and removing the version failed "
            f"({drop_exc}): drop it with store.drop_view({view.name!r}, {view.version})",
            source=exc.source, row=exc.row, column=exc.column,
        )
    store._invalidate_committed(None, f"removing {what}")
    return ValidationError(
        f"{exc.message}; the backfill of {what} stopped there and the version was removed "
        f"(its table, state and the {done} entities it had backfilled): nothing of it remains and loads "
        "are unaffected. Create the view again once the bars are corrected, or with dtype='float64'",
        source=exc.source, row=exc.row, column=exc.column,
    )


def list_views(store: FeatureStore) -> list[dict[str, Any]]:
    """The body of :meth:`FeatureStore.list_views`."""
    from featurestore import views as _views

    with store.db.connection() as conn:
        return [v.describe() for v in _views.list_views(conn)]


def describe_view(store: FeatureStore, name: str, version: int | None = None) -> dict[str, Any]:
    """The body of :meth:`FeatureStore.describe_view`."""
    from featurestore import views as _views

    with store.db.connection() as conn:
        view = _views.get_view(conn, name, version)
        out = view.describe()
        row = conn.execute(
            "SELECT count(*), coalesce(sum(n_bars), 0) FROM indicator_state WHERE view_id = %s",
            (view.view_id,),
        ).fetchone()
    out["entities"], out["rows"] = int(row[0]), int(row[1])  # type: ignore[index]
    return out


def drop_view(store: FeatureStore, name: str, version: int | None = None) -> list[int]:
    """The body of :meth:`FeatureStore.drop_view`."""
    from featurestore import views as _views
    from featurestore.write import bump_generation

    with store.db.connection() as conn, conn.transaction():
        dropped = _views.drop_view(conn, name, version)
        bump_generation(conn, None)
    store._invalidate_committed(None, f"dropping view {name}")
    return dropped


def writable_columns(store: FeatureStore) -> list[str]:
    """The body of :meth:`FeatureStore._writable_columns`."""
    with store.db.connection() as conn:
        views = store._views(conn)
    for view in views:
        if view.problem:
            from featurestore.indicators.base import UserKernelError

            raise UserKernelError(view.problem)
    return sorted({c for v in views for c in v.columns})

