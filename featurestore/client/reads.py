"""[client] Reads through the result cache: keys, knowledge-time settling, the get_* calls."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from featurestore.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from featurestore.client import FeatureStore

from featurestore.client.support import (
    _ckey,
    _frame_digest,
    _maybe_downcast,
    _syms,
    _tkey,
)

_log = logging.getLogger('featurestore.client')


def read(store: FeatureStore, key: tuple[Any, ...], symbols: Iterable[str], compute: Any, as_known_at: Any = None) -> Any:
    """The body of :meth:`FeatureStore._read`."""
    if store._reads is None:
        return compute()
    if as_known_at is not None and store._settled(as_known_at):
        # a past knowledge time no write can change: cached without invalidation
        return store._reads.read(key, (), compute, immutable=True)
    return store._reads.read(key, symbols, compute)


def settled(store: FeatureStore, as_known_at: Any) -> bool:
    """The body of :meth:`FeatureStore._settled`."""
    from featurestore.read.args import knowledge_time

    t = knowledge_time(as_known_at)
    if t is None:
        return False
    if store._stamp_seen is not None and t < store._stamp_seen:
        return True

    def q(conn: Any) -> Any:
        return conn.execute("SELECT known_at FROM store_state WHERE id = 1", prepare=True).fetchone()[0]

    stamp = store.db.run(q, idempotent=True)
    if store._stamp_seen is None or stamp > store._stamp_seen:
        store._stamp_seen = stamp
    return bool(t < stamp)


def get_bars(store: FeatureStore,
    symbols: str | Sequence[str],
    start: Any = None,
    end: Any = None,
    *,
    columns: str | Sequence[str] | None = None,
    as_arrow: bool = False,
    downcast: bool = False,
    as_known_at: Any = None,
) -> pd.DataFrame | pa.Table:
    """The body of :meth:`FeatureStore.get_bars`."""
    syms = _syms(symbols)
    key = ("bars", syms, _tkey(start), _tkey(end), _ckey(columns), as_arrow, downcast, _tkey(as_known_at))
    return store._read(
        key,
        syms,
        _maybe_downcast(downcast, lambda: store._route(lambda r: r.get_bars(
            list(syms), start, end, columns=columns, as_arrow=as_arrow, as_known_at=as_known_at
        ))),
        as_known_at,
    )


def get_features(store: FeatureStore,
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
    """The body of :meth:`FeatureStore.get_features`."""
    syms = _syms(symbols)
    key = ("features", syms, _tkey(start), _tkey(end), view, version, _ckey(columns), include_bars, as_arrow,
           downcast, _tkey(as_known_at))
    return store._read(
        key,
        syms,
        _maybe_downcast(downcast, lambda: store._route(lambda r: r.get_features(
            list(syms), start, end, view=view, version=version, columns=columns,
            include_bars=include_bars, as_arrow=as_arrow, as_known_at=as_known_at,
        ))),
        as_known_at,
    )


def get_latest(store: FeatureStore,
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
    """The body of :meth:`FeatureStore.get_latest`."""
    syms = _syms(symbols)
    key = latest_key(syms, as_of, view, version, columns, as_arrow, downcast, as_known_at, as_dict)
    if as_dict:
        # cached as tuples of pairs (immutable); each caller gets new dicts
        records = store._read(key, syms, lambda: tuple(tuple(d.items()) for d in store._route(lambda r: r.get_latest(
            list(syms), as_of=as_of, view=view, version=version, columns=columns, as_known_at=as_known_at,
            as_dict=True,
        ))), as_known_at)
        return [dict(r) for r in records]
    return store._read(
        key,
        syms,
        _maybe_downcast(downcast, lambda: store._route(lambda r: r.get_latest(
            list(syms), as_of=as_of, view=view, version=version, columns=columns, as_arrow=as_arrow,
            as_known_at=as_known_at,
        ))),
        as_known_at,
    )


def latest_key(
    syms: tuple[str, ...], as_of: Any, view: Any, version: Any, columns: Any, as_arrow: bool, downcast: bool,
    as_known_at: Any, as_dict: bool,
) -> tuple[Any, ...]:
    """The cache key of a latest read (the sync and the asyncio store share one cache)."""
    if as_dict:
        return ("latest-dict", syms, _tkey(as_of), view, version, _ckey(columns), _tkey(as_known_at))
    return ("latest", syms, _tkey(as_of), view, version, _ckey(columns), as_arrow, downcast, _tkey(as_known_at))


def get_training_frame(store: FeatureStore,
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
    """The body of :meth:`FeatureStore.get_training_frame`."""
    import pandas as pd

    if not isinstance(events, pd.DataFrame):
        raise ConfigError(f"events must be a pandas DataFrame, not {type(events).__name__}")
    digest = _frame_digest(events)
    key = ("training", digest, view, version, _ckey(columns), str(tolerance), event_time_col, symbol_col, include_bars,
           downcast, _tkey(as_known_at), known_at_col, strategy)
    syms: Iterable[str] = ()
    if symbol_col in events.columns:
        syms = [s for s in pd.unique(events[symbol_col]) if isinstance(s, str)]
    # known_at_col: the answer is settled once its latest decision time is (older ones are
    # then too); until then it invalidates as "now"
    settles_at = as_known_at
    if known_at_col is not None and as_known_at is None and known_at_col in events.columns:
        decided = events[known_at_col]
        if isinstance(decided.dtype, pd.DatetimeTZDtype) and decided.notna().any():
            settles_at = decided.max()
    return store._read(
        key,
        syms,
        _maybe_downcast(downcast, lambda: store._route(lambda r: r.get_training_frame(
            events, view=view, version=version, columns=columns, tolerance=tolerance,
            event_time_col=event_time_col, symbol_col=symbol_col, include_bars=include_bars,
            as_known_at=as_known_at, known_at_col=known_at_col, strategy=strategy,
        ))),
        settles_at,
    )

