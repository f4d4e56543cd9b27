"""[client] Knowledge-time maintenance: every version of a bar, and compacting history."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:

    from featurestore.client import FeatureStore
    from featurestore.history import BarHistory, CompactResult


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

