"""Shared test helpers: realistic bars, a store fingerprint, and the TA-Lib oracle for stored features."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

SEED_VIEW = ["sma_20", "ema_50", "rsi_14", "macd_12_26_9", "bbands_20_2", "atr_14", "adx_14"]


def make_bars(
    symbols: list[str] | int,
    n: int,
    *,
    start: str = "2020-01-01",
    freq: str = "D",
    seed: int = 0,
    tick: float | None = 0.01,
) -> pd.DataFrame:
    """A seeded random walk of valid OHLCV bars (high >= max(open, close), low <= min(open, close))."""
    rng = np.random.default_rng(seed)
    names = [f"S{i:04d}" for i in range(symbols)] if isinstance(symbols, int) else symbols
    frames = []
    for sym in names:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.015, n)))
        open_ = close * (1 + rng.normal(0, 0.004, n))
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.004, n)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.004, n)))
        if tick:
            open_, close = np.round(open_ / tick) * tick, np.round(close / tick) * tick
            high = np.ceil(np.maximum(high, np.maximum(open_, close)) / tick) * tick
            low = np.floor(np.minimum(low, np.minimum(open_, close)) / tick) * tick
        frames.append(
            pd.DataFrame(
                {
                    "symbol": sym,
                    "ts": pd.date_range(start, periods=n, freq=freq, tz="UTC"),
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": rng.integers(100, 10_000, n).astype(float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def fingerprint(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Everything a load can change, as comparable values (counts and content hashes)."""
    out: dict[str, Any] = {}
    for table, order, row in (
        ("entities", "entity_id", "(t.entity_id, t.symbol, t.generation)"),  # not created_at
        ("bars", "entity_id, ts", "t"),
        ("bars_history", "entity_id, ts, superseded_by", "t"),
        ("feature_views", "view_id", "t"),
        ("indicator_state", "view_id, entity_id", "t"),
        ("indicator_checkpoints", "view_id, entity_id, ts", "t"),
        ("loads", "load_id", "t"),
        ("store_state", "id", "t"),
    ):
        q = sql.SQL("SELECT count(*), md5(coalesce(string_agg({r}::text, '|' ORDER BY {o}), '')) FROM {t} t").format(
            t=sql.Identifier(table), o=sql.SQL(order), r=sql.SQL(row)
        )
        out[table] = conn.execute(q).fetchone()
    for (name,) in conn.execute("SELECT table_name FROM feature_views ORDER BY 1").fetchall():
        for table in (name, name + "_h"):  # the view's rows and their superseded versions
            q = sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t"
            ).format(sql.Identifier(table))
            out[table] = conn.execute(q).fetchone()
    return out


def stored(conn: psycopg.Connection[Any], table: str, symbol: str) -> pd.DataFrame:
    """All rows of ``table`` (bars or a view table) for one symbol, ordered by ts."""
    q = sql.SQL(
        "SELECT t.* FROM {} t JOIN entities e USING (entity_id) WHERE e.symbol = %s ORDER BY t.ts"
    ).format(sql.Identifier(table))
    cur = conn.execute(q, (symbol,))
    cols = [d.name for d in cur.description or []]
    return pd.DataFrame(cur.fetchall(), columns=cols)


def talib_reference(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    """TA-Lib's values of the seed view's outputs over one symbol's full bar history."""
    import talib

    c = bars["close"].to_numpy(dtype=float)
    h = bars["high"].to_numpy(dtype=float)
    low = bars["low"].to_numpy(dtype=float)
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(c, 20, 2, 2, 0)
    return {
        "sma_20": talib.SMA(c, 20),
        "ema_50": talib.EMA(c, 50),
        "rsi_14": talib.RSI(c, 14),
        "macd_12_26_9": macd,
        "macd_signal_12_26_9": signal,
        "macd_hist_12_26_9": hist,
        "bbands_upper_20_2": upper,
        "bbands_middle_20_2": middle,
        "bbands_lower_20_2": lower,
        "atr_14": talib.ATR(h, low, c, 14),
        "adx_14": talib.ADX(h, low, c, 14),
    }


def assert_features_match_talib(conn: psycopg.Connection[Any], table: str, symbol: str) -> None:
    """The stored features of ``symbol`` equal TA-Lib over its stored bars, bit for bit."""
    bars = stored(conn, "bars", symbol)
    feats = stored(conn, table, symbol)
    assert list(feats["ts"]) == list(bars["ts"]), f"{symbol}: feature rows do not match bar rows"
    for name, ref in talib_reference(bars).items():
        got = feats[name].to_numpy(dtype=float)
        assert np.array_equal(got, ref, equal_nan=True), (
            f"{symbol} {name}: {int((~np.isclose(got, ref, equal_nan=True)).sum())} values differ; "
            f"max abs diff {np.nanmax(np.abs(got - ref)) if got.size else 0}"
        )
