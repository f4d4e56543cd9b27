"""[client] History maintenance: every version of a bar, compacting superseded versions, and
compressing old rows into history segments."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:

    from featurestore.client import FeatureStore
    from featurestore.history import BarHistory, CompactResult
    from featurestore.segments import CompressResult


_log = logging.getLogger('featurestore.client')


def history(store: FeatureStore, symbol: str, ts: Any) -> BarHistory:
    """The body of :meth:`FeatureStore.history`."""
    from featurestore.history import bar_history
    from featurestore.read.args import _bound
    from featurestore.views import list_views

    when = _bound(ts, "ts", ceil=False)

    def run(conn: Any) -> BarHistory:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            views = [v for v in list_views(conn) if not v.problem]
            return bar_history(conn, symbol, when, views)

    return store.db.run(run, idempotent=True)


def compact_history(store: FeatureStore, before: Any) -> CompactResult:
    """The body of :meth:`FeatureStore.compact_history`."""
    from featurestore.history import compact_history
    from featurestore.read.args import _bound
    from featurestore.views import list_views
    from featurestore.write import bump_generation

    cut = _bound(before, "before", ceil=False)
    with store.db.connection() as conn, conn.transaction():
        result = compact_history(conn, cut, [v for v in list_views(conn) if not v.problem])
        bump_generation(conn, None)  # cached answers for knowledge times before the cut must go
    store._invalidate_committed(None, "compacting history")
    return result



def compress_history(store: FeatureStore, before: Any, *, older_than: Any = None) -> CompressResult:
    """The body of :meth:`FeatureStore.compress_history`."""
    import datetime as dt

    import pandas as pd

    from featurestore.errors import ConfigError
    from featurestore.read.args import _bound
    from featurestore.segments import compress_store

    if (before is None) == (older_than is None):
        raise ConfigError("compress_history needs exactly one of before= (a tz-aware time) or older_than= (e.g. '90D')")
    if older_than is not None:
        try:
            age = pd.Timedelta(older_than).to_pytimedelta()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"older_than must be a duration such as '90D' or a timedelta, got {older_than!r}") from exc
        if age < dt.timedelta(0):
            raise ConfigError(f"older_than must not be negative, got {older_than!r}")
        cut = dt.datetime.now(dt.UTC) - age
    else:
        cut = _bound(before, "before", ceil=False)
    with store.db.connection() as conn, conn.transaction():
        result = compress_store(conn, cut)
        # the planner's row counts of the tables that shrank (ANALYZE runs inside a transaction)
        conn.execute("ANALYZE bars, bars_segments")
    _log.info("compressed history before %s: %s", cut.isoformat(), result.as_dict())
    return result
