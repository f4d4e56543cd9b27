"""[read] Range, latest and point-in-time reads against the real database: known answers, a
brute-force oracle for the training frame (hypothesis), and a plan test for every read query."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from helpers import make_bars
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plans import assert_plan_uses_index, explain, nodes

from featurestore.errors import ConfigError, ConnectionError, NotFoundError, ValidationError
from featurestore.read import (
    LOOKUP_SQL,
    TRAINING_TS_COLUMN,
    Reader,
    estimate_sql,
    latest_one_sql,
    latest_sql,
    point_sql,
    range_sql,
    render,
    training_sql,
)
from featurestore.read.latest import _checked_sql
from featurestore.schema import BAR_COLUMNS

UTC = dt.UTC
D = pd.Timestamp("2024-01-01", tz="UTC")
VIEW = ["sma_3", "ema_5"]
FEATS = ["sma_3", "ema_5"]


def day(n: float) -> pd.Timestamp:
    return D + pd.Timedelta(days=n)


@pytest.fixture(scope="module")
def data(store: Any) -> dict[str, pd.DataFrame]:
    """AAA: 6 daily bars from 2024-01-01; BBB: 3 bars from 2024-01-03 at 12:00; ZZZ (created
    first, so its entity id is lower than AAA's): 2 bars. Plus a view ``v`` (sma_3, ema_5)."""
    zzz = make_bars(["ZZZ"], 2, start="2024-01-02", seed=3)
    store.ingest(zzz)
    aaa = make_bars(["AAA"], 6, start="2024-01-01", seed=1)
    bbb = make_bars(["BBB"], 3, start="2024-01-03 12:00", seed=2)
    store.ingest(pd.concat([aaa, bbb], ignore_index=True))
    store.create_view("v", VIEW)
    return {"AAA": aaa, "BBB": bbb, "ZZZ": zzz}


class AsyncReads:
    """The read API of an :class:`AsyncFeatureStore`, called synchronously, so that the read tests
    of this module run on the asyncio store too (reused, not copied). Each call opens the store
    in its own event loop and closes it: no thread outlives a test."""

    def __init__(self, url: Any) -> None:
        self.url = url

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        import asyncio

        from featurestore import AsyncFeatureStore

        async def main() -> Any:
            async with AsyncFeatureStore(self.url, cache=None) as fs:
                return await getattr(fs, name)(*args, **kwargs)

        return asyncio.run(main())

    def get_bars(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_bars", *args, **kwargs)

    def get_features(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_features", *args, **kwargs)

    def get_latest(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_latest", *args, **kwargs)

    def get_training_frame(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_training_frame", *args, **kwargs)


@pytest.fixture(scope="module", params=["sync", "async"])
def reader(request: pytest.FixtureRequest, store: Any, data: Any) -> Iterator[Any]:
    """The read step itself, and the asyncio store over the same database."""
    if request.param == "async":
        yield AsyncReads(store.db.url)
        return
    r = Reader(store.db)
    yield r
    r.close()


def stored_features(raw_conn: Any, symbol: str) -> pd.DataFrame:
    rows = raw_conn.execute(
        "SELECT f.ts, f.sma_3, f.ema_5, b.open, b.high, b.low, b.close, b.volume FROM fv_v_v1 f "
        "JOIN bars b USING (entity_id, ts) JOIN entities e USING (entity_id) WHERE e.symbol = %s ORDER BY ts",
        (symbol,),
    ).fetchall()
    df = pd.DataFrame(rows, columns=["ts", *FEATS, *BAR_COLUMNS])
    df["ts"] = pd.to_datetime(df["ts"], utc=True).astype("datetime64[us, UTC]")
    return df.set_index("ts")


def assert_contract(df: pd.DataFrame, columns: list[str]) -> None:
    assert list(df.index.names) == ["symbol", "ts"]
    assert str(df.index.dtypes["ts"]) == "datetime64[us, UTC]"
    assert pd.api.types.is_string_dtype(df.index.dtypes["symbol"])
    assert list(df.columns) == columns
    assert all(t == np.float64 for t in df.dtypes)


def assert_arrow_equal(table: pa.Table, df: pd.DataFrame) -> None:
    assert table.column_names[:2] == ["symbol", "ts"]
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("symbol").type == pa.string()
    back = table.to_pandas().set_index(["symbol", "ts"])
    pd.testing.assert_frame_equal(back, df, check_index_type=False)
    assert list(back.index) == list(df.index)


# -- range reads ------------------------------------------------------------------------------


def test_get_bars_closed_interval_and_contract(reader: Reader, data: Any) -> None:
    df = reader.get_bars(["BBB", "AAA"], "2024-01-02T00:00Z", day(4))
    assert_contract(df, list(BAR_COLUMNS))
    # symbol order is sorted, not requested; both bounds inclusive
    assert list(df.index) == [("AAA", day(i)) for i in (1, 2, 3, 4)] + [("BBB", day(2.5)), ("BBB", day(3.5))]
    aaa = data["AAA"].set_index("ts")
    np.testing.assert_array_equal(df.loc["AAA"]["close"].to_numpy(), aaa["close"].iloc[1:5].to_numpy())
    assert df.index.is_monotonic_increasing


def test_get_bars_open_ends_unknown_symbols_and_one_symbol_str(reader: Reader, data: Any) -> None:
    assert list(reader.get_bars("AAA").index) == [("AAA", day(i)) for i in range(6)]
    assert list(reader.get_bars("AAA", start=day(4)).index) == [("AAA", day(4)), ("AAA", day(5))]
    assert list(reader.get_bars("AAA", end=day(0)).index) == [("AAA", day(0))]
    df = reader.get_bars(["NOPE", "AAA", "AAA"])
    assert set(df.index.get_level_values("symbol")) == {"AAA"} and len(df) == 6
    empty = reader.get_bars(["NOPE"], columns=["close"])
    assert_contract(empty, ["close"])
    assert len(empty) == 0
    assert len(reader.get_bars([])) == 0
    # nothing in range: an empty frame, not an error
    assert len(reader.get_bars("AAA", day(100), day(200))) == 0


def test_symbol_order_does_not_follow_entity_ids(reader: Reader) -> None:
    # ZZZ was created first (lower entity id) but sorts last
    df = reader.get_bars(["ZZZ", "AAA"], columns="close")
    assert list(dict.fromkeys(df.index.get_level_values("symbol"))) == ["AAA", "ZZZ"]
    assert df.index.is_monotonic_increasing
    assert_arrow_equal(reader.get_bars(["ZZZ", "AAA"], columns="close", as_arrow=True), df)


def test_time_arguments(reader: Reader) -> None:
    same = [
        reader.get_bars("AAA", v, v)
        for v in (day(2), day(2).to_pydatetime(), "2024-01-03T00:00:00+00:00", "2024-01-03 UTC",
                  "2024-01-02T19:00-05:00", pd.Timestamp("2024-01-03 01:00", tz="Europe/Paris"))
    ]
    for df in same:
        assert list(df.index) == [("AAA", day(2))]
    for naive in (dt.datetime(2024, 1, 3), "2024-01-03", pd.Timestamp("2024-01-03")):
        with pytest.raises(ValidationError, match="no time zone"):
            reader.get_bars("AAA", naive)
        with pytest.raises(ValidationError, match="no time zone"):
            reader.get_latest("AAA", as_of=naive)
    with pytest.raises(ValidationError, match="numbers"):
        reader.get_bars("AAA", 1_700_000_000)
    with pytest.raises(ValidationError, match="not a time"):
        reader.get_bars("AAA", "yesterday-ish")
    with pytest.raises(ConfigError, match="after end"):
        reader.get_bars("AAA", day(3), day(2))
    with pytest.raises(ConfigError, match="symbols"):
        reader.get_bars(["AAA", 3])  # type: ignore[list-item]


def test_get_features_columns_include_bars(reader: Reader, raw_conn: Any) -> None:
    df = reader.get_features(["AAA", "BBB"], view="v")
    assert_contract(df, FEATS)
    ref = stored_features(raw_conn, "AAA")
    np.testing.assert_array_equal(df.loc["AAA"].to_numpy(), ref[FEATS].to_numpy())
    assert list(df.loc["AAA"].index) == list(ref.index)
    wide = reader.get_features("AAA", day(1), day(3), view="v", version=1, columns=["ema_5"], include_bars=True)
    assert_contract(wide, [*BAR_COLUMNS, "ema_5"])
    np.testing.assert_array_equal(wide.to_numpy(), ref.loc[day(1):day(3), [*BAR_COLUMNS, "ema_5"]].to_numpy())
    assert_arrow_equal(
        reader.get_features("AAA", day(1), day(3), view="v", columns=["ema_5"], include_bars=True, as_arrow=True), wide
    )
    # NaN (warm-up) survives as NaN in both forms
    assert np.isnan(df.loc["AAA"]["sma_3"].iloc[0])


def test_errors_name_what_exists(reader: Reader) -> None:
    with pytest.raises(NotFoundError, match=r"no view 'nope'.*registered views: (.*, )?v v1"):
        reader.get_features("AAA", view="nope")
    with pytest.raises(NotFoundError, match=r"version 9"):
        reader.get_features("AAA", view="v", version=9)
    with pytest.raises(NotFoundError, match=r"\['rsi'\].*available: \['sma_3', 'ema_5'\]"):
        reader.get_features("AAA", view="v", columns=["sma_3", "rsi"])
    with pytest.raises(NotFoundError, match=r"available: \['open'"):
        reader.get_bars("AAA", columns=["adj_close"])
    with pytest.raises(
        NotFoundError,
        match=r"unknown column\(s\) \['nope'\] in bars and view 'v' v1; available: "
        r"\['open', 'high', 'low', 'close', 'volume', 'sma_3', 'ema_5'\]",
    ):
        reader.get_latest("AAA", view="v", columns=["nope"])


def test_results_are_writable(reader: Reader) -> None:
    """A result is the caller's to change, and changing it changes nothing else."""
    df = reader.get_features("AAA", view="v")
    original = df.copy(deep=True)
    df.iloc[0, 0] = 1.5
    df["ema_5"] *= 2
    assert df.iloc[0, 0] == 1.5
    np.testing.assert_array_equal(df["ema_5"].to_numpy(), 2 * original["ema_5"].to_numpy())
    pd.testing.assert_frame_equal(reader.get_features("AAA", view="v"), original)  # nothing shared


# -- latest -----------------------------------------------------------------------------------


def test_latest_as_of_cases(reader: Reader, data: Any) -> None:
    aaa = data["AAA"].set_index("ts")
    df = reader.get_latest(["BBB", "NOPE", "AAA", "BBB"], as_of=day(3))
    assert_contract(df, list(BAR_COLUMNS))
    # requested order, duplicates dropped, unknown symbol present with NaT / NaN
    assert list(df.index.get_level_values("symbol")) == ["BBB", "NOPE", "AAA"]
    ts = list(df.index.get_level_values("ts"))
    assert ts[0] == day(2.5) and pd.isna(ts[1]) and ts[2] == day(3)  # between bars; exact ts
    assert df.iloc[1].isna().all()
    np.testing.assert_array_equal(df.iloc[2].to_numpy(), aaa.loc[day(3), list(BAR_COLUMNS)].to_numpy(dtype=float))
    # the one-symbol query: same answers, and a present NaN row when there is none
    for sym, as_of, want in (("AAA", day(3), day(3)), ("BBB", day(3), day(2.5)), ("BBB", day(2), None), ("NOPE", day(3), None)):
        one = reader.get_latest(sym, as_of=as_of)
        assert_contract(one, list(BAR_COLUMNS))
        assert one.index[0][0] == sym and len(one) == 1
        assert (one.index[0][1] == want) if want is not None else (pd.isna(one.index[0][1]) and one.iloc[0].isna().all())
        assert_arrow_equal(reader.get_latest(sym, as_of=as_of, as_arrow=True), one)
    before = reader.get_latest(["AAA", "BBB"], as_of=day(2))  # before BBB's first bar
    assert before.index[0] == ("AAA", day(2))
    assert pd.isna(before.index[1][1]) and before.iloc[1].isna().all()
    # as_of None means now: the last bar
    now = reader.get_latest("AAA")
    assert now.index[0] == ("AAA", day(5))
    assert_arrow_equal(reader.get_latest(["BBB", "NOPE", "AAA"], as_of=day(3), as_arrow=True), df)
    assert len(reader.get_latest([])) == 0


def test_latest_with_view(reader: Reader, raw_conn: Any) -> None:
    ref = stored_features(raw_conn, "AAA")
    df = reader.get_latest(["AAA", "NOPE"], as_of=day(4.5), view="v")
    assert_contract(df, [*BAR_COLUMNS, *FEATS])
    np.testing.assert_array_equal(df.iloc[0].to_numpy(), ref.loc[day(4), [*BAR_COLUMNS, *FEATS]].to_numpy())
    assert df.iloc[1].isna().all()
    sel = reader.get_latest("AAA", as_of=day(4.5), view="v", columns=["ema_5", "close"])
    assert list(sel.columns) == ["ema_5", "close"]
    assert sel.iloc[0].tolist() == [ref.loc[day(4), "ema_5"], ref.loc[day(4), "close"]]
    assert_arrow_equal(reader.get_latest(["AAA", "NOPE"], as_of=day(4.5), view="v", as_arrow=True), df)


# -- training frame ---------------------------------------------------------------------------


def oracle(events: pd.DataFrame, feats: dict[str, pd.DataFrame], tolerance: pd.Timedelta | None) -> pd.DataFrame:
    """Brute force: for each event, scan its symbol's rows for the greatest ts <= event time."""
    out = events.copy()
    vals: dict[str, list[float]] = {c: [] for c in FEATS}
    fts: list[Any] = []
    for sym, t in zip(events["symbol"], events["ts"]):
        best = None
        f = feats.get(sym) if isinstance(sym, str) else None
        if f is not None and not pd.isna(t):
            for ts in f.index:
                if ts <= t and (tolerance is None or ts >= t - tolerance):
                    best = ts
        for c in FEATS:
            vals[c].append(np.nan if best is None else float(f.loc[best, c]))  # type: ignore[union-attr]
        fts.append(pd.NaT if best is None else best)
    for c in FEATS:
        out[c] = np.array(vals[c], dtype=float)
    out[TRAINING_TS_COLUMN] = pd.DatetimeIndex(fts, tz=UTC).as_unit("us").array
    return out


@pytest.fixture(scope="module")
def feature_rows(reader: Reader, raw_conn_module: Any) -> dict[str, pd.DataFrame]:
    return {s: stored_features(raw_conn_module, s) for s in ("AAA", "BBB", "ZZZ")}


@pytest.fixture(scope="module")
def raw_conn_module(db_url: Any) -> Iterator[Any]:
    import psycopg

    from featurestore.config import libpq_url

    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        yield conn


@pytest.mark.parametrize("strategy", ["range", "per_event", "auto"])
def test_training_frame_known_cases(reader: Reader, feature_rows: Any, strategy: str) -> None:
    events = pd.DataFrame(
        {
            "symbol": ["AAA", "BBB", "AAA", "NOPE", "BBB", "AAA", "AAA", None, "ZZZ", "AAA"],
            "ts": [day(3), day(2), day(10), day(1), day(3.6), day(3), day(-1), day(2), pd.NaT, day(6)],
            "label": np.arange(10.0),
        },
        index=pd.Index([10, 11, 12, 13, 14, 15, 16, 17, 18, 19], name="event"),
    )
    events["ts"] = events["ts"].astype("datetime64[ns, UTC]")
    got = reader.get_training_frame(events, view="v", strategy=strategy)
    want = oracle(events, feature_rows, None)
    pd.testing.assert_frame_equal(got, want)
    # exact tie attaches that row; a duplicated event stays duplicated; later rows never attach
    assert got.loc[10, TRAINING_TS_COLUMN] == day(3) == got.loc[15, TRAINING_TS_COLUMN]
    assert got.loc[12, TRAINING_TS_COLUMN] == day(5)
    assert pd.isna(got.loc[11, TRAINING_TS_COLUMN]) and pd.isna(got.loc[16, TRAINING_TS_COLUMN])
    tol = reader.get_training_frame(events, view="v", tolerance="1D", strategy=strategy)
    pd.testing.assert_frame_equal(tol, oracle(events, feature_rows, pd.Timedelta("1D")))
    assert pd.isna(tol.loc[12, "ema_5"])  # 5 days after the last row
    assert tol.loc[14, TRAINING_TS_COLUMN] == day(3.5)
    assert tol.loc[19, TRAINING_TS_COLUMN] == day(5)  # exactly 1 day back: the tolerance is inclusive


def test_training_frame_options_and_errors(reader: Reader, feature_rows: Any) -> None:
    events = pd.DataFrame({"sym": ["AAA"], "when": [day(2).tz_convert("America/New_York")], "y": [1]})
    got = reader.get_training_frame(
        events, view="v", columns=["sma_3"], include_bars=True, event_time_col="when", symbol_col="sym"
    )
    assert list(got.columns) == ["sym", "when", "y", *BAR_COLUMNS, "sma_3", TRAINING_TS_COLUMN]
    assert got["sma_3"].iloc[0] == feature_rows["AAA"].loc[day(2), "sma_3"]
    assert got["close"].iloc[0] == feature_rows["AAA"].loc[day(2), "close"]
    one = reader.get_training_frame(
        pd.DataFrame({"symbol": ["AAA"], "ts": [day(2)]}), view="v", include_bars=True, strategy="per_event"
    )
    assert one["close"].iloc[0] == feature_rows["AAA"].loc[day(2), "close"]
    empty = reader.get_training_frame(pd.DataFrame({"symbol": pd.Series([], dtype=str), "ts": pd.DatetimeIndex([], tz=UTC)}), view="v")
    assert list(empty.columns) == ["symbol", "ts", *FEATS, TRAINING_TS_COLUMN] and len(empty) == 0
    naive = pd.DataFrame({"symbol": ["AAA"], "ts": [pd.Timestamp("2024-01-02")]})
    with pytest.raises(ValidationError, match="naive"):
        reader.get_training_frame(naive, view="v")
    with pytest.raises(ValidationError, match="tz-aware"):
        reader.get_training_frame(pd.DataFrame({"symbol": ["AAA"], "ts": ["2024-01-02"]}), view="v")
    with pytest.raises(NotFoundError, match="no column 'ts'"):
        reader.get_training_frame(pd.DataFrame({"symbol": ["AAA"]}), view="v")
    with pytest.raises(ConfigError, match="already have"):
        reader.get_training_frame(pd.DataFrame({"symbol": ["AAA"], "ts": [day(1)], "ema_5": [1.0]}), view="v")
    with pytest.raises(ConfigError, match="tolerance"):
        reader.get_training_frame(pd.DataFrame({"symbol": ["AAA"], "ts": [day(1)]}), view="v", tolerance="-1D")
    with pytest.raises(NotFoundError, match="registered views"):
        reader.get_training_frame(pd.DataFrame({"symbol": ["AAA"], "ts": [day(1)]}), view="nope")


@st.composite
def event_frames(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.Timedelta | None]:
    n = draw(st.integers(0, 25))
    symbols = draw(st.lists(st.sampled_from(["AAA", "BBB", "ZZZ", "NOPE"]), min_size=n, max_size=n))
    # half-day steps hit every stored ts exactly (ties), between bars, before and after all bars
    offsets = draw(st.lists(st.integers(-4, 16), min_size=n, max_size=n))
    jitter = draw(st.lists(st.sampled_from([0, 0, 0, 1, -1]), min_size=n, max_size=n))  # +-1 µs around ties
    ts = [day(o / 2) + pd.Timedelta(microseconds=j) for o, j in zip(offsets, jitter)]
    events = pd.DataFrame({"symbol": symbols, "ts": pd.DatetimeIndex(ts, tz=UTC) if ts else pd.DatetimeIndex([], tz=UTC)})
    events["label"] = np.arange(n, dtype=float)
    tol = draw(st.one_of(st.none(), st.integers(0, 72).map(lambda h: pd.Timedelta(hours=h))))
    return events, tol


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=event_frames())
def test_training_frame_matches_oracle(reader: Reader, feature_rows: Any, case: Any) -> None:
    events, tol = case
    want = oracle(events, feature_rows, tol)
    for strategy in ("range", "per_event"):
        got = reader.get_training_frame(events, view="v", tolerance=tol, strategy=strategy)
        pd.testing.assert_frame_equal(got, want)


# -- query plans on a realistic table ---------------------------------------------------------

N_PLAN_SYMBOLS, N_PLAN_BARS = 1_000, 200


@pytest.fixture(scope="module")
def plan_data(store: Any, data: Any, raw_conn_module: Any) -> dict[str, Any]:
    """1,000 symbols x 200 bars in bars (generate_series) and a view over them, analyzed."""
    conn = raw_conn_module
    conn.execute(
        "WITH n AS (INSERT INTO entities (symbol) SELECT 'P' || lpad(i::text, 4, '0') FROM generate_series(1, %s) i "
        "RETURNING entity_id) INSERT INTO entity_keys SELECT entity_id FROM n",
        (N_PLAN_SYMBOLS,),
    )
    conn.execute(
        "INSERT INTO bars (entity_id, load_id, ts, open, high, low, close, volume) "
        "SELECT e.entity_id, 0, timestamptz '2020-01-01 00:00+00' + b * interval '1 day', "
        "100 + b * 0.01, 101 + b * 0.01, 99 + b * 0.01, 100.5 + b * 0.01, 1000 "
        "FROM entities e, generate_series(0, %s - 1) b WHERE e.symbol LIKE 'P%%'",
        (N_PLAN_BARS,),
    )
    view = store.create_view("plan", ["sma_3"], columns=["extra"])
    conn.execute("ANALYZE")
    ids = [r[0] for r in conn.execute("SELECT entity_id FROM entities WHERE symbol LIKE 'P%' ORDER BY 1")]
    assert conn.execute("SELECT count(*) FROM bars").fetchone()[0] >= 200_000
    assert conn.execute(f"SELECT count(*) FROM {view.table_name}").fetchone()[0] >= 200_000
    return {"table": view.table_name, "ids": ids, "pkey": f"{view.table_name}_pkey", "view_id": view.view_id}


def _range_params(ids: list[int], days: tuple[int, int] | None) -> dict[str, Any]:
    first = pd.Timestamp("2020-01-01", tz="UTC")
    lo = dt.datetime(1, 1, 1, tzinfo=UTC) if days is None else (first + pd.Timedelta(days=days[0])).to_pydatetime()
    hi = dt.datetime(9999, 12, 31, tzinfo=UTC) if days is None else (first + pd.Timedelta(days=days[1])).to_pydatetime()
    return {"ids": np.array(ids, dtype=np.int32), "start": lo, "end": hi}


@pytest.mark.single_node  # PostgreSQL's own plan shapes (Citus plans: tests/test_citus_store.py)
@pytest.mark.parametrize("days", [None, (10, 60)])
def test_plan_range_reads(plan_data: Any, raw_conn_module: Any, days: Any) -> None:
    table, ids = plan_data["table"], plan_data["ids"]
    conn = raw_conn_module
    for n in (1, 100):
        params = _range_params(ids[::7][:n], days)
        for query, index in (
            (range_sql("bars", list(BAR_COLUMNS)), "bars_pkey"),
            (range_sql(table, [], ["sma_3", "extra"]), plan_data["pkey"]),
            (range_sql(table, list(BAR_COLUMNS), ["sma_3"]), plan_data["pkey"]),
        ):
            plan = assert_plan_uses_index(conn, render(query, params), index=index, no_seq_scan_on=("bars", table))
            if "JOIN bars" in query:
                assert any(node.get("Index Name") == "bars_pkey" for node in nodes(plan))


@pytest.mark.single_node  # PostgreSQL's own plan shapes (Citus plans: tests/test_citus_store.py)
def test_plan_lookup(plan_data: Any, raw_conn_module: Any) -> None:
    assert_plan_uses_index(
        raw_conn_module, LOOKUP_SQL, {"symbols": ["P0001", "P0002"]}, index="entities_symbol_key"
    )


@pytest.mark.single_node  # PostgreSQL's own plan shapes (Citus plans: tests/test_citus_store.py)
@pytest.mark.parametrize("generic", [False, True])
def test_plan_latest(plan_data: Any, raw_conn_module: Any, generic: bool) -> None:
    """Index Scan Backward + Limit per entity, also as the generic plan a prepared statement ends up with."""
    conn = raw_conn_module
    table = plan_data["table"]
    symbols = [f"P{i:04d}" for i in range(1, 1001)]
    if generic:
        conn.execute("SET plan_cache_mode = force_generic_plan")
    try:
        for query, index in (
            (latest_sql("bars", list(BAR_COLUMNS)), "bars_pkey"),
            (latest_sql(table, list(BAR_COLUMNS), ["sma_3"]), plan_data["pkey"]),
        ):
            for syms in (symbols[:1], symbols):
                params = {"symbols": syms, "as_of": dt.datetime(2020, 3, 1, tzinfo=UTC)}
                assert_plan_uses_index(
                    conn, query, params, index=index, node_types=("Index Scan", "Index Only Scan"),
                    direction="Backward", no_seq_scan_on=("bars", table), require_limit=True,
                )
        for query, index in (
            (latest_one_sql("bars", list(BAR_COLUMNS)), "bars_pkey"),
            (latest_one_sql(table, list(BAR_COLUMNS), ["sma_3"]), plan_data["pkey"]),
        ):
            params = {"symbol": "P0007", "as_of": dt.datetime(2020, 3, 1, tzinfo=UTC)}
            plan = assert_plan_uses_index(
                conn, query, params, index=index, node_types=("Index Scan", "Index Only Scan"),
                direction="Backward", no_seq_scan_on=("bars", table), require_limit=True,
            )
            assert any(node.get("Index Name") == "entities_symbol_key" for node in nodes(plan)), plan
        # the one-statement form of a cached view version: the same probe under the version check
        for pinned in (False, True):
            query = _checked_sql(latest_one_sql(table, list(BAR_COLUMNS), ["sma_3"]), pinned)
            params = {"symbol": "P0007", "as_of": dt.datetime(2020, 3, 1, tzinfo=UTC), "view_name": "pv",
                      "view_status": "ready", **({"view_version": 1} if pinned else {})}
            assert_plan_uses_index(
                conn, query, params, index=plan_data["pkey"], node_types=("Index Scan", "Index Only Scan"),
                direction="Backward", no_seq_scan_on=("bars", table), require_limit=True,
            )
    finally:
        conn.execute("RESET plan_cache_mode")


@pytest.mark.single_node  # PostgreSQL's own plan shapes (Citus plans: tests/test_citus_store.py)
def test_plan_point_in_time(plan_data: Any, raw_conn_module: Any) -> None:
    conn = raw_conn_module
    table, ids = plan_data["table"], plan_data["ids"]
    n = 5_000
    rng = np.random.default_rng(0)
    e = np.sort(rng.choice(ids, n)).astype(np.int32)
    t = (pd.Timestamp("2020-01-01", tz="UTC").value // 1000 + rng.integers(0, 200 * 86_400_000_000, n)).astype(np.int64)
    lo = np.full(n, -62_135_596_800_000_000, dtype=np.int64)
    for query in (point_sql(table, [], ["sma_3"]), point_sql(table, list(BAR_COLUMNS), ["sma_3"])):
        assert_plan_uses_index(
            conn, render(query, {"ids": e, "ts": t, "lo": lo}), index=plan_data["pkey"],
            direction="Backward", no_seq_scan_on=("bars", table), require_limit=True,
        )
    # the range read behind the default strategy: a backward probe for the lower bound, then a range scan
    ents = np.array(ids[::3], dtype=np.int32)
    first = np.full(ents.size, t.min())
    last = np.full(ents.size, t.max())
    for query in (training_sql(table, [], ["sma_3"]), training_sql(table, list(BAR_COLUMNS), ["sma_3"])):
        text = render(query, {"ids": ents, "first": first, "last": last})
        plan = assert_plan_uses_index(
            conn, text, index=plan_data["pkey"], direction="Backward", no_seq_scan_on=("bars", table), require_limit=True
        )
        assert any(
            node.get("Index Name") == plan_data["pkey"] and node.get("Scan Direction") == "Forward" for node in nodes(plan)
        ), plan
    assert_plan_uses_index(
        conn, estimate_sql(table), {"view_id": plan_data["view_id"], "ids": ids}, index=plan_data["pkey"],
        no_seq_scan_on=(table,), require_limit=True,
    )


def test_reads_on_the_realistic_table(reader: Reader, plan_data: Any) -> None:
    """The bulk path end to end on 200k rows: all symbols, and a training frame both ways."""
    symbols = [f"P{i:04d}" for i in range(1, N_PLAN_SYMBOLS + 1)]
    df = reader.get_features(symbols, view="plan")
    assert len(df) == N_PLAN_SYMBOLS * N_PLAN_BARS
    assert df.index.is_monotonic_increasing
    assert np.isnan(df["extra"]).all()
    rng = np.random.default_rng(1)
    ev = pd.DataFrame({
        "symbol": rng.choice(symbols + ["NOPE"], 20_000),
        "ts": pd.Timestamp("2019-12-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 260 * 86_400, 20_000), unit="s"),
    })
    a = reader.get_training_frame(ev, view="plan", strategy="range")
    b = reader.get_training_frame(ev, view="plan", strategy="per_event")
    pd.testing.assert_frame_equal(a, b)
    flat = df.reset_index()
    ref = pd.merge_asof(
        ev.reset_index().sort_values("ts"), flat.rename(columns={"ts": "fts"}).assign(ts=flat["ts"]).sort_values("ts"),
        on="ts", by="symbol",
    ).set_index("index").sort_index()
    np.testing.assert_array_equal(a["sma_3"].to_numpy(), ref["sma_3"].to_numpy())
    assert (a[TRAINING_TS_COLUMN].isna() == ref["fts"].isna()).all()


def test_close_is_idempotent_and_final(store: Any, data: Any) -> None:
    r = Reader(store.db)
    assert len(r.get_features("AAA", view="v")) == 6
    assert r._bulk.open_connections == 1
    r.close()
    r.close()
    assert r._bulk.open_connections == 0
    with pytest.raises(ConnectionError, match="this Reader is closed"):
        r.get_features("AAA", view="v")
    with pytest.raises(ConnectionError, match="this Reader is closed"):
        r.get_latest("AAA")


def test_downcast_halves_values_and_round_trips_within_float32(store: Any, plan_data: Any) -> None:
    from featurestore.read import downcast

    symbols = [f"P{i:04d}" for i in range(1, 201)]
    full = store.reader.get_bars(symbols)
    assert len(full) == 200 * N_PLAN_BARS
    small = downcast(full)
    assert all(t == np.float32 for t in small.dtypes)
    assert isinstance(small.index.get_level_values("symbol").dtype, pd.CategoricalDtype)
    before, after = full.memory_usage(deep=True, index=True).sum(), small.memory_usage(deep=True, index=True).sum()
    # float64 -> float32 halves the values; the categorical symbol level shrinks the index too
    assert after < 0.6 * before, (before, after)
    rel = np.abs(small.to_numpy(np.float64) - full.to_numpy()) / np.abs(full.to_numpy())
    assert float(np.nanmax(rel)) <= 2.0**-24
    assert list(small.index.get_level_values("ts")) == list(full.index.get_level_values("ts"))
    arrow = downcast(store.reader.get_bars(symbols[:5], as_arrow=True))
    assert arrow.schema.field("close").type == pa.float32()
    assert pa.types.is_dictionary(arrow.schema.field("symbol").type)
    cached = store.get_bars(symbols[:5], downcast=True)
    pd.testing.assert_frame_equal(cached, downcast(store.reader.get_bars(symbols[:5])))


@pytest.mark.single_node  # PostgreSQL's own plan shapes (Citus plans: tests/test_citus_store.py)
def test_plan_one_day_of_every_symbol_is_an_index_range_scan(make_database: Any) -> None:
    """Every symbol over one day (a cross-section read) reads index ranges, never the whole table.

    Bars loaded over time (here four loads, each symbol-major, as files are) leave
    entity_id weakly correlated with the heap order; with PostgreSQL's default random_page_cost
    (4) the planner then reads the whole bars table (sequential scan plus sort), a cost that
    grows with the store. The embedded server's settings (featurestore.embedded.server_settings)
    keep it index range scans, whose cost follows the rows returned.
    """
    import psycopg

    from featurestore.client import FeatureStore
    from featurestore.config import libpq_url

    url = make_database("xsection")
    FeatureStore(url, auto_migrate=True, cache=None).close()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("WITH n AS (INSERT INTO entities (symbol) SELECT 'X' || lpad(i::text, 4, '0') "
                     "FROM generate_series(1, 1000) i RETURNING entity_id) INSERT INTO entity_keys SELECT entity_id FROM n")
        for part in range(4):  # 1,000 symbols x 1,000 minutes in four loads, each symbol-major
            conn.execute(
                "INSERT INTO bars (entity_id, load_id, ts, open, high, low, close, volume) "
                "SELECT e.entity_id, 0, timestamptz '2020-01-01 00:00+00' + b * interval '1 minute', 100, 101, 99, "
                "100, 1 FROM entities e, generate_series(%s::int, %s::int) b ORDER BY e.entity_id, b",
                (part * 250, part * 250 + 249),
            )
        conn.execute("ANALYZE bars")
        ids = [r[0] for r in conn.execute("SELECT entity_id FROM entities ORDER BY 1")]
        first = dt.datetime(2020, 1, 1, tzinfo=UTC)
        params = {"ids": np.array(ids, dtype=np.int32), "start": first + dt.timedelta(minutes=500),
                  "end": first + dt.timedelta(minutes=580)}  # 8% of the table, as one day of 13
        query = render(range_sql("bars", list(BAR_COLUMNS)), params)
        if os.environ.get("FEATURESTORE_TEST_URL") is None:  # the embedded server has its settings
            assert conn.execute("SHOW random_page_cost").fetchone() == ("1.1",)
        with conn.transaction():
            conn.execute("SET LOCAL random_page_cost = 1.1")
            plan = assert_plan_uses_index(conn, query, index="bars_pkey", node_types=("Index Scan",),
                                          no_seq_scan_on=("bars",))
            assert not any(n["Node Type"] == "Sort" for n in nodes(plan))  # rows come in key order
        with conn.transaction():  # PostgreSQL's default: heap order, then a sort of everything read
            conn.execute("SET LOCAL random_page_cost = 4")
            kinds = [n["Node Type"] for n in nodes(explain(conn, query))]
            assert "Sort" in kinds and ("Seq Scan" in kinds or "Bitmap Heap Scan" in kinds), kinds
