"""load: every rule of the input contract, file formats, chunking, and a real CSV. No database."""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path
from typing import Any

import backtesting.test
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pyarrow import feather

from featurestore.errors import ConfigError, ValidationError
from featurestore.load import (
    SYMBOL_PATTERN,
    TS_MAX_US,
    TS_MIN_US,
    BarChunk,
    LoadInputError,
    expand_paths,
    read_chunks,
    validate_frame,
    validate_symbol,
)

US = 1_000_000


def us(text: str) -> int:
    """UTC ISO time -> microseconds since the epoch."""
    return int(pd.Timestamp(text).value // 1000)


def bars(n: int = 10, *, symbols: tuple[str, ...] = ("AAPL", "MSFT"), seed: int = 0) -> pd.DataFrame:
    """A valid frame: n rows, aware ISO strings, consistent OHLC."""
    rng = np.random.default_rng(seed)
    sym = np.array(symbols)[np.arange(n) % len(symbols)]
    ts = pd.Timestamp("2024-01-02T14:30:00Z") + pd.to_timedelta(np.arange(n) // len(symbols), unit="min")
    o = rng.uniform(10, 20, n).round(2)
    c = rng.uniform(10, 20, n).round(2)
    return pd.DataFrame(
        {
            "symbol": sym,
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "open": o,
            "high": np.maximum(o, c) + 0.5,
            "low": np.minimum(o, c) - 0.5,
            "close": c,
            "volume": rng.integers(0, 10_000, n).astype(np.int64),
        }
    )


def error_of(data: Any, **kwargs: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate_frame(data, **kwargs)
    return info.value


def assert_error(err: ValidationError, *, row: int | None, column: str | None, match: str) -> None:
    assert err.row == row, str(err)
    assert err.column == column, str(err)
    assert re.search(match, str(err)), str(err)
    if row is not None:
        assert f"row {row}" in str(err)
    if column is not None:
        assert repr(column) in str(err)


def test_valid_frame_converts() -> None:
    df = bars(6)
    chunk = validate_frame(df)
    assert len(chunk) == 6 and chunk.source == "DataFrame"
    assert chunk.symbol.dtype == object and list(chunk.symbol[:2]) == ["AAPL", "MSFT"]
    assert chunk.ts.dtype == np.int64 and chunk.ts[0] == us("2024-01-02T14:30:00Z")
    for name in ("open", "high", "low", "close", "volume"):
        col = getattr(chunk, name)
        assert col.dtype == np.float64 and col.flags.c_contiguous
    np.testing.assert_array_equal(chunk.volume, df.volume.to_numpy(dtype=float))
    np.testing.assert_array_equal(chunk.rows, np.arange(6))


# --- columns -----------------------------------------------------------------------------------


def test_missing_column_is_named_and_present_listed() -> None:
    err = error_of(bars().drop(columns=["volume"]))
    assert_error(err, row=None, column=None, match=r"missing required column\(s\) 'volume'.*present: 'symbol', 'ts'")


def test_duplicated_column_names() -> None:
    df = bars()
    df = pd.concat([df, df[["open"]]], axis=1)
    assert_error(error_of(df), row=None, column=None, match=r"duplicated column name\(s\): 'open'")


def test_unexpected_column_hints_column_map() -> None:
    df = bars().assign(**{"Adj Close": 1.0})
    err = error_of(df)
    assert_error(err, row=None, column="Adj Close", match=r"column_map=\{'Adj Close': None\}")
    assert len(validate_frame(df, column_map={"Adj Close": None})) == 10


def test_column_names_are_case_sensitive() -> None:
    err = error_of(bars().rename(columns={"open": "Open"}))
    assert "missing required column(s) 'open'" in str(err)


def test_column_map_renames_and_two_sources_on_one_target() -> None:
    df = bars().rename(columns={"ts": "Date", "close": "Close"})
    chunk = validate_frame(df, column_map={"Date": "ts", "Close": "close", "NotThere": "x"})
    np.testing.assert_array_equal(chunk.close, df.Close.to_numpy())
    err = error_of(bars().assign(Date="x"), column_map={"Date": "ts"})
    assert "columns 'ts' and 'Date' both map to 'ts'" in str(err)


def test_extra_columns_allow_nan_but_not_inf() -> None:
    df = bars().assign(sentiment=[0.5, np.nan] + [1.0] * 8)
    chunk = validate_frame(df, extra_columns=["sentiment"])
    assert np.isnan(chunk.extra["sentiment"][1]) and chunk.extra["sentiment"].dtype == np.float64
    df.loc[7, "sentiment"] = -np.inf
    assert_error(error_of(df, extra_columns=["sentiment"]), row=7, column="sentiment", match="not finite")
    # declared extra columns are optional: a load without them is fine
    assert validate_frame(bars(), extra_columns=["sentiment"]).extra == {}
    with pytest.raises(ConfigError, match="may not repeat a required column"):
        validate_frame(bars(), extra_columns=["close"])


def test_symbol_argument() -> None:
    df = bars(symbols=("X",)).drop(columns=["symbol"])
    chunk = validate_frame(df, symbol="GOOG")
    assert set(chunk.symbol) == {"GOOG"}
    err = error_of(bars(), symbol="GOOG")
    assert_error(err, row=None, column="symbol", match=r"symbol='GOOG' was given.*column_map=\{'symbol': None\}")
    assert len(validate_frame(bars(symbols=("X",)), symbol="GOOG", column_map={"symbol": None})) == 10
    with pytest.raises(ValidationError, match="invalid symbol"):
        validate_frame(df, symbol="bad symbol")


def test_datetime_index_and_multiindex() -> None:
    df = bars(4, symbols=("X",))
    indexed = df.assign(ts=pd.to_datetime(df.ts, utc=True)).set_index("ts")
    chunk = validate_frame(indexed)
    np.testing.assert_array_equal(chunk.ts, validate_frame(df).ts)
    multi = bars(6).assign(ts=lambda d: pd.to_datetime(d.ts, utc=True)).set_index(["symbol", "ts"])
    chunk = validate_frame(multi)
    assert list(chunk.symbol) == list(bars(6).symbol)
    plain = bars(4, symbols=("X",)).drop(columns="ts")
    assert "missing required column(s) 'ts'" in str(error_of(plain))


def test_empty_frame_gives_empty_chunk() -> None:
    chunk = validate_frame(bars().iloc[:0], extra_columns=())
    assert len(chunk) == 0 and chunk.ts.dtype == np.int64 and chunk.symbol.dtype == object
    assert len(chunk.sorted()) == 0


def test_wrong_input_type() -> None:
    with pytest.raises(ConfigError, match="use read_chunks"):
        validate_frame("bars.csv")  # type: ignore[arg-type]


# --- symbol ------------------------------------------------------------------------------------

BAD_SYMBOLS = [
    "",
    "A B",
    "X;DROP TABLE bars",
    "'quoted'",
    '"Q"',
    "A\x00B",
    "🚀",
    "A" * 65,
    "Z" * 10_000,
    "---",
    "A\n",
    "tab\t",
]


@pytest.mark.parametrize("bad", BAD_SYMBOLS, ids=range(len(BAD_SYMBOLS)))
def test_bad_symbols_name_row_and_value(bad: str) -> None:
    df = bars(8)
    df.loc[[3, 6], "symbol"] = bad
    err = error_of(df)
    assert_error(err, row=3, column="symbol", match="invalid symbol")
    assert repr(bad)[:20] in str(err)
    assert len(str(err)) < 300  # the 10,000-character value is truncated
    with pytest.raises(ValidationError, match="invalid symbol"):
        validate_symbol(bad)


@pytest.mark.parametrize("good", ["BRK.B", "BRK/B", "^GSPC", "EUR/USD:FX", "ES=F", "a_b-c+d@e", "7203.T", "A" * 64])
def test_good_symbols(good: str) -> None:
    assert validate_symbol(good) == good
    assert re.fullmatch(SYMBOL_PATTERN, good)
    df = bars(2).assign(symbol=[good, "X"])
    assert validate_frame(df).symbol[0] == good


def test_symbol_missing_or_not_a_string() -> None:
    df = bars(5).astype({"symbol": object})
    df.loc[2, "symbol"] = None
    assert_error(error_of(df), row=2, column="symbol", match="missing symbol")
    df.loc[2, "symbol"] = 42
    assert_error(error_of(df), row=2, column="symbol", match="expected a string, got int 42")
    assert_error(error_of(bars(3).assign(symbol=[1, 2, 3])), row=0, column="symbol", match="expected strings")
    with pytest.raises(ValidationError, match="must be a string"):
        validate_symbol(5)


def test_categorical_symbols() -> None:
    df = bars(6).astype({"symbol": "category"})
    assert list(validate_frame(df).symbol) == list(bars(6).symbol)


# --- timestamps --------------------------------------------------------------------------------


def test_mixed_offsets_convert_to_utc() -> None:
    df = bars(3, symbols=("X",)).assign(
        ts=["2024-01-02T09:30:00-05:00", "2024-01-02T15:31:00+01:00", "2024-01-02 14:32:00Z"]
    )
    chunk = validate_frame(df)
    assert chunk.ts.tolist() == [us("2024-01-02T14:30Z"), us("2024-01-02T14:31Z"), us("2024-01-02T14:32Z")]
    df["ts"] = ["2024-01-02T09:30:00-0500", "2024-01-02T15:31:00+01", "2024-01-02T14:32:00.000000000Z"]
    assert validate_frame(df).ts.tolist() == chunk.ts.tolist()


def test_naive_strings_are_rejected_with_the_hint() -> None:
    df = bars(4, symbols=("X",))
    df.loc[2, "ts"] = "2024-01-02 14:32:00"
    err = error_of(df)
    assert_error(err, row=2, column="ts", match=r"no UTC offset \(naive\); pass assume_tz='UTC' to treat naive")
    assert isinstance(err, LoadInputError) and "--assume-tz" not in str(err)  # Python shows Python
    assert err.render_cli().endswith("no UTC offset (naive); pass --assume-tz UTC to treat naive times as that zone")
    chunk = validate_frame(df, assume_tz="UTC")
    assert chunk.ts[2] == us("2024-01-02T14:32Z")
    df["ts"] = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]
    assert_error(error_of(df), row=0, column="ts", match="naive")
    assert validate_frame(df, assume_tz="UTC").ts[0] == us("2024-01-02T00:00Z")


def test_assume_tz_localizes_and_rejects_dst_gaps() -> None:
    df = bars(2, symbols=("X",)).assign(ts=["2024-01-02 09:30", "2024-07-01 09:30"])
    chunk = validate_frame(df, assume_tz="America/New_York")
    assert chunk.ts.tolist() == [us("2024-01-02T14:30Z"), us("2024-07-01T13:30Z")]
    df["ts"] = ["2024-03-09 02:30", "2024-03-10 02:30"]  # the second does not exist in New York
    assert_error(error_of(df, assume_tz="America/New_York"), row=1, column="ts", match="does not exist or is ambiguous")
    with pytest.raises(ConfigError, match="not a known time zone"):
        validate_frame(df, assume_tz="Mars/Olympus")


def test_datetime64_columns() -> None:
    base = bars(3, symbols=("X",))
    aware = pd.to_datetime(base.ts, utc=True).dt.tz_convert("Asia/Tokyo")
    chunk = validate_frame(base.assign(ts=aware))
    assert chunk.ts[0] == us("2024-01-02T14:30Z")
    naive = aware.dt.tz_convert("UTC").dt.tz_localize(None)
    assert_error(error_of(base.assign(ts=naive)), row=0, column="ts", match="naive.*assume_tz='UTC'")
    assert validate_frame(base.assign(ts=naive), assume_tz="UTC").ts.tolist() == chunk.ts.tolist()
    for unit in ("s", "ms", "us", "ns"):
        assert validate_frame(base.assign(ts=aware.dt.as_unit(unit))).ts.tolist() == chunk.ts.tolist()


def test_nanoseconds_are_rejected() -> None:
    base = bars(3, symbols=("X",))
    ts = pd.to_datetime(base.ts, utc=True).dt.as_unit("ns")
    ts[1] += pd.Timedelta(1, "ns")
    assert_error(error_of(base.assign(ts=ts)), row=1, column="ts", match="nanoseconds")
    base.loc[2, "ts"] = "2024-01-02T14:30:00.1234567Z"
    assert_error(error_of(base), row=2, column="ts", match="more than microsecond precision")


def test_numeric_ts_is_rejected() -> None:
    base = bars(3, symbols=("X",))
    for values in ([1.7e9, 1.7e9 + 60, 1.7e9 + 120], [1, 2, 3]):
        err = error_of(base.assign(ts=values))
        assert_error(err, row=0, column="ts", match="ts is numeric; convert to datetime with an explicit unit")
    table = pa.Table.from_pandas(base.assign(ts=[1, 2, 3]), preserve_index=False)
    assert "ts is numeric" in str(error_of(table))


def test_unparseable_and_missing_ts() -> None:
    base = bars(5, symbols=("X",))
    base.loc[3, "ts"] = "31/01/2024 10:00"
    assert_error(error_of(base), row=3, column="ts", match=r"cannot parse timestamp '31/01/2024 10:00'")
    base.loc[3, "ts"] = "2024-02-30T00:00:00Z"
    assert_error(error_of(base), row=3, column="ts", match="cannot parse")
    base.loc[3, "ts"] = "x" * 500
    err = error_of(base)
    assert_error(err, row=3, column="ts", match=r"cannot parse timestamp 'xxxx.*\.\.\.")
    assert len(str(err)) < 250
    base.loc[3, "ts"] = None
    assert_error(error_of(base), row=3, column="ts", match="missing timestamp")
    dt = pd.to_datetime(bars(5, symbols=("X",)).ts, utc=True)
    dt[1] = pd.NaT
    assert_error(error_of(bars(5, symbols=("X",)).assign(ts=dt)), row=1, column="ts", match="missing timestamp")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("0001-01-01T00:00:00Z", False),
        ("9999-12-31T00:00:00Z", False),
        ("1899-12-31T23:59:59.999999Z", False),
        ("1900-01-01T00:00:00Z", True),
        ("1900-01-01T00:30:00+01:00", False),
        ("2199-12-31T23:59:59.999999Z", True),
        ("2200-01-01T00:00:00Z", False),
    ],
)
def test_ts_range(value: str, ok: bool) -> None:
    df = bars(2, symbols=("X",))
    df.loc[1, "ts"] = value
    if ok:
        validate_frame(df)
    else:
        assert_error(error_of(df), row=1, column="ts", match="outside the allowed range 1900-01-01 <= ts < 2200-01-01")


def test_wrong_unit_epoch_in_arrow_is_out_of_range() -> None:
    seconds = np.array([1_700_000_000_000, 1_700_000_060_000])  # milliseconds stored as seconds
    table = pa.Table.from_pandas(bars(2, symbols=("X",)).drop(columns="ts"), preserve_index=False)
    table = table.append_column("ts", pa.array(seconds, pa.timestamp("s", "UTC")))
    assert_error(error_of(table), row=0, column="ts", match="outside the allowed range")
    assert TS_MIN_US == us("1900-01-01T00:00Z") and TS_MAX_US == us("2200-01-01T00:00Z")


def test_arrow_ts_types() -> None:
    base = bars(3, symbols=("X",))
    want = validate_frame(base).ts
    table = pa.Table.from_pandas(base.drop(columns="ts"), preserve_index=False)
    aware = pa.array(pd.to_datetime(base.ts, utc=True)).cast(pa.timestamp("ms", "Europe/Berlin"))
    assert validate_frame(table.append_column("ts", aware)).ts.tolist() == want.tolist()
    naive = aware.cast(pa.timestamp("ms"))
    assert "naive" in str(error_of(table.append_column("ts", naive)))
    days = pa.array([19724, 19725, 19726], pa.date32())
    assert "naive" in str(error_of(table.append_column("ts", days)))
    got = validate_frame(table.append_column("ts", days), assume_tz="UTC").ts
    assert got[0] == us("2024-01-02T00:00Z")


# --- prices and volume -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [
        ("open", np.nan, r"missing value \(null or NaN\)"),
        ("high", np.inf, "value inf is not finite"),
        ("low", -1.0, "negative price -1.0"),
        ("high", 1e308, "above the maximum 1e\\+12"),
        ("high", 1.0000001e12, "above the maximum"),
        ("volume", np.nan, "missing value"),
        ("volume", -5.0, "negative volume -5.0"),
        ("volume", -np.inf, "not finite"),
    ],
)
def test_bad_numbers(column: str, value: float, match: str) -> None:
    df = bars(9)
    df[column] = df[column].astype(float)
    df.loc[[4, 7], column] = value
    assert_error(error_of(df), row=4, column=column, match=match)


def test_string_in_numeric_column_names_the_value() -> None:
    df = bars(6).astype({"high": object})
    df.loc[4, "high"] = "12.5abc"
    assert_error(error_of(df), row=4, column="high", match="not a number: '12.5abc'")
    text = bars(6).astype({"open": str})
    text.loc[5, "open"] = "N/A"
    assert_error(error_of(text), row=5, column="open", match="not a number: 'N/A'")
    assert_error(
        error_of(bars(3).assign(volume=[True, False, True])), row=0, column="volume", match="expected numbers"
    )


def test_numeric_strings_decimals_and_nullable_ints_are_accepted() -> None:
    df = bars(4)
    want = validate_frame(df)
    as_text = df.astype({"open": str, "close": str})
    np.testing.assert_array_equal(validate_frame(as_text).open, want.open)
    nullable = df.astype({"volume": "Int64"})
    np.testing.assert_array_equal(validate_frame(nullable).volume, want.volume)


@pytest.mark.parametrize(
    ("o", "h", "low", "c", "column", "match"),
    [
        (10, 9, 9.5, 9.5, "high", "high 9.0 is below low 9.5"),
        (10, 9.9, 9, 9.5, "high", "high 9.9 is below open 10.0 or close 9.5"),
        (9.5, 9.9, 9, 10, "high", "below open 9.5 or close 10.0"),
        (9, 10, 9.5, 9.7, "low", "low 9.5 is above open 9.0 or close 9.7"),
        (9.7, 10, 9.5, 9, "low", "above open 9.7 or close 9.0"),
    ],
)
def test_bar_consistency(o: float, h: float, low: float, c: float, column: str, match: str) -> None:
    df = bars(5)
    df.loc[3, ["open", "high", "low", "close"]] = [o, h, low, c]
    assert_error(error_of(df), row=3, column=column, match=match)


def test_flat_bar_is_valid() -> None:
    df = bars(2)
    df.loc[0, ["open", "high", "low", "close", "volume"]] = [5.0, 5.0, 5.0, 5.0, 0]
    chunk = validate_frame(df)
    assert len(chunk) == 2 and chunk.rows.tolist() == [0, 1]
    assert (chunk.open[0], chunk.high[0], chunk.low[0], chunk.close[0], chunk.volume[0]) == (5.0, 5.0, 5.0, 5.0, 0.0)


def test_timestamp_objects_in_several_zones_are_converted_to_utc() -> None:
    """An object column of tz-aware pd.Timestamp / datetime values is accepted like offset strings."""
    import datetime as dt

    stamps = ["2030-03-01T09:30:00-05:00", "2030-03-02T15:30:00+01:00", "2030-03-03T14:30:00Z", "2030-03-04T20:00:00+05:30"]
    df = bars(4, symbols=("X",))
    df["ts"] = pd.Series([pd.Timestamp(s) for s in stamps], dtype=object)
    want = [us(t) for t in ("2030-03-01T14:30Z", "2030-03-02T14:30Z", "2030-03-03T14:30Z", "2030-03-04T14:30Z")]
    assert validate_frame(df).ts.tolist() == want
    df["ts"] = pd.Series([dt.datetime.fromisoformat(s) for s in stamps], dtype=object)
    assert validate_frame(df).ts.tolist() == want
    # one naive object among aware ones is rejected, naming its position, unless assume_tz is given
    df["ts"] = pd.Series([pd.Timestamp(stamps[0]), pd.Timestamp("2030-03-02 14:30"), *map(pd.Timestamp, stamps[2:])], dtype=object)
    err = error_of(df)
    assert err.row == 1 and err.column == "ts" and "is naive but earlier ones are tz-aware" in str(err)
    df["ts"] = df["ts"].iloc[[1, 0, 2, 3]].reset_index(drop=True)  # naive first: the aware one is odd
    err = error_of(df)
    assert err.row == 1 and "is tz-aware but earlier ones are naive" in str(err)


def test_checks_run_in_documented_order_and_report_first_row() -> None:
    df = bars(10)
    df.loc[8, "symbol"] = "bad symbol"
    df.loc[1, "open"] = -1.0  # earlier row, but prices are checked after symbols
    assert_error(error_of(df), row=8, column="symbol", match="invalid symbol")
    df = bars(10)
    df.loc[6, "open"] = -1.0
    df.loc[2, "close"] = -1.0  # close is checked after open: open's row 6 wins
    assert_error(error_of(df), row=6, column="open", match="negative price")


def test_duplicate_symbol_ts_names_both_rows() -> None:
    df = bars(8)
    df.loc[6, ["symbol", "ts"]] = df.loc[2, ["symbol", "ts"]].to_numpy()
    df.loc[6, "ts"] = "2024-01-02T15:31:00+01:00"  # the same instant as row 2, another offset
    err = error_of(df)
    assert_error(err, row=6, column="ts", match=r"duplicate \(symbol, ts\) = \('AAPL', 2024-01-02T14:31:00.000000Z\): also at row 2")


def test_row_offset_shifts_error_rows() -> None:
    df = bars(5)
    df.loc[3, "volume"] = -1
    assert_error(error_of(df, row_offset=100), row=103, column="volume", match="negative volume")


def test_sorted_is_stable_by_symbol_then_ts() -> None:
    df = bars(12, symbols=("MSFT", "AAPL", "GOOG"))
    chunk = validate_frame(df.iloc[::-1].reset_index(drop=True))
    s = chunk.sorted()
    keys = list(zip(s.symbol, s.ts, strict=True))
    assert keys == sorted(keys)
    assert s.rows.tolist() == [int(r) for r in np.lexsort((chunk.ts, chunk.symbol.astype(str)))]
    np.testing.assert_array_equal(s.close, chunk.close[s.rows])
    assert len(BarChunk.concat([s, s])) == 24


# --- files -------------------------------------------------------------------------------------


def frame_for_files(n: int) -> pd.DataFrame:
    df = bars(n, symbols=("AAA", "BBB", "CCC"))
    return df.assign(feat=np.where(np.arange(n) % 4 == 0, np.nan, np.arange(n) * 0.25))


def write_all_formats(df: pd.DataFrame, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {fmt: folder / f"bars.{fmt}" for fmt in ("csv", "parquet", "feather")}
    df.to_csv(paths["csv"], index=False)
    typed = df.assign(ts=pd.to_datetime(df.ts, utc=True))
    typed.to_parquet(paths["parquet"], index=False, row_group_size=13)
    feather.write_feather(pa.Table.from_pandas(typed, preserve_index=False), paths["feather"], chunksize=17)
    return paths


def assert_same_chunk(a: BarChunk, b: BarChunk) -> None:
    for name in ("symbol", "ts", "open", "high", "low", "close", "volume", "rows"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.extra.keys() == b.extra.keys()
    for name in a.extra:
        np.testing.assert_array_equal(a.extra[name], b.extra[name])


def test_three_formats_give_the_same_chunks(tmp_path: Path) -> None:
    df = frame_for_files(50)
    paths = write_all_formats(df, tmp_path)
    whole = validate_frame(df, extra_columns=["feat"], row_offset=1)
    for fmt, path in paths.items():
        chunks = list(read_chunks(path, chunk_rows=7, extra_columns=["feat"]))
        assert [len(c) for c in chunks] == [7] * 7 + [1], fmt
        assert all(c.source == str(path) for c in chunks)
        joined = BarChunk.concat(chunks)
        assert joined.rows.tolist() == list(range(1, 51)), fmt  # 1-based data rows, across chunks
        assert_same_chunk(joined, whole)
        (single,) = read_chunks(path, extra_columns=["feat"])
        assert_same_chunk(single, whole)


def test_format_argument_and_compressed_csv(tmp_path: Path) -> None:
    df = frame_for_files(20)
    gz = tmp_path / "bars.csv.gz"
    with gzip.open(gz, "wt") as fh:
        df.to_csv(fh, index=False)
    odd = tmp_path / "bars.data"
    df.to_csv(odd, index=False)
    want = validate_frame(df, extra_columns=["feat"], row_offset=1)
    assert_same_chunk(BarChunk.concat(list(read_chunks(gz, extra_columns=["feat"], chunk_rows=6))), want)
    assert_same_chunk(next(read_chunks(odd, format="csv", extra_columns=["feat"])), want)
    with pytest.raises(ValidationError, match="unknown file type"):
        next(read_chunks(odd))
    with pytest.raises(ConfigError, match="unknown format 'xlsx'"):
        next(read_chunks(odd, format="xlsx"))
    with pytest.raises(ConfigError, match="chunk_rows"):
        next(read_chunks(odd, chunk_rows=0))


@pytest.mark.parametrize("fmt", ["csv", "parquet", "feather"])
def test_error_rows_continue_across_chunks(tmp_path: Path, fmt: str) -> None:
    df = frame_for_files(40)
    df.loc[[22, 30], "low"] = -3.0  # data row 23 in the file (1-based)
    path = write_all_formats(df, tmp_path)[fmt]
    chunks = read_chunks(path, chunk_rows=10, extra_columns=["feat"])
    assert len(next(chunks)) == 10 and len(next(chunks)) == 10
    with pytest.raises(ValidationError) as info:
        next(chunks)
    assert_error(info.value, row=23, column="low", match="negative price -3.0")
    assert info.value.source == str(path) and str(path) in str(info.value)


def test_csv_text_in_number_column_names_row_and_value(tmp_path: Path) -> None:
    df = frame_for_files(40).astype({"close": object})
    df.loc[33, "close"] = "12,50"
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    with pytest.raises(ValidationError) as info:
        list(read_chunks(path, chunk_rows=8, extra_columns=["feat"]))
    assert_error(info.value, row=34, column="close", match="not a number: '12,50'")
    assert isinstance(info.value.__cause__, pa.ArrowInvalid)


def test_file_column_map_and_symbol(tmp_path: Path) -> None:
    df = bars(6, symbols=("ONLY",)).drop(columns="symbol").rename(columns={"ts": "Date", "close": "Close"})
    df["Adj Close"] = 1.0
    path = tmp_path / "one.parquet"
    df.to_parquet(path, index=False)
    (chunk,) = read_chunks(path, symbol="ONLY", column_map={"Date": "ts", "Close": "close", "Adj Close": None})
    assert set(chunk.symbol) == {"ONLY"} and len(chunk) == 6
    with pytest.raises(ValidationError, match=r"unexpected column 'Adj Close'"):
        next(read_chunks(path, symbol="ONLY", column_map={"Date": "ts", "Close": "close"}))


def goog_csv() -> Path:
    return Path(os.path.dirname(backtesting.test.__file__)) / "GOOG.csv"


GOOG_MAP = {"": "ts", "Open": "open", "High": "high", "Low": "low", "Close": "close", "Volume": "volume"}


def test_real_goog_csv() -> None:
    path = goog_csv()
    with pytest.raises(ValidationError, match=r"row 1, column 'ts': timestamp '2004-08-19' has no UTC offset"):
        next(read_chunks(path, symbol="GOOG", column_map=GOOG_MAP))
    chunks = list(read_chunks(path, symbol="GOOG", column_map=GOOG_MAP, assume_tz="UTC", chunk_rows=1000))
    chunk = BarChunk.concat(chunks)
    ref = pd.read_csv(path, index_col=0, parse_dates=True)
    assert len(chunk) == len(ref) == 2148
    assert chunk.rows[0] == 1 and chunk.rows[-1] == 2148
    assert chunk.ts[0] == us("2004-08-19T00:00Z")
    np.testing.assert_array_equal(chunk.ts, ref.index.as_unit("us").asi8)
    np.testing.assert_array_equal(chunk.close, ref.Close.to_numpy())
    np.testing.assert_array_equal(chunk.volume, ref.Volume.to_numpy(dtype=float))
    # The real data satisfies every consistency rule (checked by validation itself, and here again).
    assert (chunk.high >= np.maximum(chunk.open, chunk.close)).all()
    assert (chunk.low <= np.minimum(chunk.open, chunk.close)).all()
    frame = pd.read_csv(path, index_col=0, parse_dates=True).rename(columns=str.lower)
    assert_same_chunk(
        validate_frame(frame, symbol="GOOG", assume_tz="UTC", row_offset=1), chunk
    )  # DataFrame indexed by date: the index is ts


def test_empty_header_only_and_wrong_delimiter(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ValidationError, match="empty.csv: file is empty"):
        next(read_chunks(empty))
    header = tmp_path / "header.csv"
    header.write_text("symbol,ts,open,high,low,close,volume\n")
    with pytest.raises(ValidationError, match="header.csv: file has no data rows"):
        next(read_chunks(header))
    semi = tmp_path / "semi.csv"
    bars(3).to_csv(semi, index=False, sep=";")
    with pytest.raises(ValidationError, match=r"found a single column named 'symbol;ts;open.*is the delimiter ';'"):
        next(read_chunks(semi))
    assert len(next(read_chunks(semi, delimiter=";"))) == 3
    empty_pq = tmp_path / "empty.parquet"
    bars(3).iloc[:0].to_parquet(empty_pq)
    with pytest.raises(ValidationError, match="no data rows"):
        next(read_chunks(empty_pq))


def test_non_utf8_csv(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    text = bars(3).to_csv(index=False).replace("MSFT", "Soci\u00e9t\u00e9")
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValidationError, match=r"latin.csv: file is not valid utf8 text.*encoding='latin-1'") as info:
        next(read_chunks(path))
    assert info.value.__cause__ is not None
    with pytest.raises(ValidationError, match=r"row 2, column 'symbol': invalid symbol 'Soci\\xe9t\\xe9'|invalid symbol 'Société'"):
        next(read_chunks(path, encoding="latin-1"))


def test_ragged_csv(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text(bars(3).to_csv(index=False) + "AAPL,2024-01-02T15:00:00Z,1\n")
    with pytest.raises(ValidationError, match="ragged.csv: cannot read CSV: CSV parse error: Expected 7 columns, got 3"):
        list(read_chunks(path))


@pytest.mark.parametrize("fmt", ["parquet", "feather"])
def test_corrupt_and_truncated_binary_files(tmp_path: Path, fmt: str) -> None:
    path = write_all_formats(frame_for_files(200), tmp_path)[fmt]
    data = path.read_bytes()
    garbage = tmp_path / f"garbage.{fmt}"
    garbage.write_bytes(b"this is not a columnar file" * 10)
    truncated = tmp_path / f"truncated.{fmt}"
    truncated.write_bytes(data[: len(data) // 2])
    for bad in (garbage, truncated):
        with pytest.raises(ValidationError) as info:
            list(read_chunks(bad, extra_columns=["feat"]))
        assert info.value.source == str(bad)
        assert info.value.__cause__ is not None


def test_expand_paths(tmp_path: Path) -> None:
    paths = write_all_formats(frame_for_files(5), tmp_path / "d")
    (tmp_path / "d" / "notes.txt").write_text("ignored")
    sub = tmp_path / "d" / "sub"
    sub.mkdir()
    frame_for_files(5).to_csv(sub / "more.csv", index=False)
    assert expand_paths(tmp_path / "d") == sorted([*paths.values(), sub / "more.csv"])
    assert expand_paths(str(tmp_path / "d" / "*.csv")) == [paths["csv"]]
    assert expand_paths([paths["csv"], paths["csv"], paths["parquet"]]) == [paths["csv"], paths["parquet"]]
    with pytest.raises(ValidationError, match="no such file or directory"):
        expand_paths(tmp_path / "missing.csv")
    with pytest.raises(ValidationError, match="no file matches this pattern"):
        expand_paths(str(tmp_path / "*.parquet"))
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(ValidationError, match="directory has no supported files"):
        expand_paths(tmp_path / "emptydir")
    chunks = list(read_chunks(tmp_path / "d", extra_columns=["feat"]))
    assert [c.source for c in chunks] == [str(p) for p in expand_paths(tmp_path / "d")]


# --- property: valid random frames pass and round-trip -------------------------------------------

symbol_text = st.text(alphabet="ABCXYZabc0189._-/:=^+@", min_size=1, max_size=64).filter(
    lambda s: re.search(r"[A-Za-z0-9]", s) is not None
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    symbols=st.lists(symbol_text, min_size=1, max_size=4, unique=True),
    n=st.integers(1, 60),
    seed=st.integers(0, 2**32 - 1),
    offset_minutes=st.sampled_from([0, -300, 330, 60]),
)
def test_valid_random_frames_round_trip(symbols: list[str], n: int, seed: int, offset_minutes: int) -> None:
    rng = np.random.default_rng(seed)
    sym = np.array(symbols, dtype=object)[rng.integers(0, len(symbols), n)]
    ts_us = rng.integers(TS_MIN_US, TS_MAX_US, n)
    assume(len(np.unique(ts_us)) == n)
    o, c = rng.uniform(0, 1e6, n), rng.uniform(0, 1e6, n)
    h = np.maximum(o, c) + rng.uniform(0, 10, n)
    low = np.maximum(np.minimum(o, c) - rng.uniform(0, 10, n), 0)
    vol = rng.uniform(0, 1e12, n)
    local = pd.DatetimeIndex(ts_us.astype("datetime64[us]")) + pd.Timedelta(minutes=offset_minutes)
    sign = "+" if offset_minutes >= 0 else "-"
    suffix = "Z" if offset_minutes == 0 else f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    text = local.strftime("%Y-%m-%dT%H:%M:%S.%f") + suffix
    df = pd.DataFrame({"symbol": sym, "ts": text, "open": o, "high": h, "low": low, "close": c, "volume": vol})
    chunk = validate_frame(df)
    np.testing.assert_array_equal(chunk.ts, ts_us)
    assert chunk.symbol.tolist() == sym.tolist()
    for name, values in (("open", o), ("high", h), ("low", low), ("close", c), ("volume", vol)):
        np.testing.assert_array_equal(getattr(chunk, name), values)
    table = pa.table(
        {
            "symbol": pa.array(sym, pa.string()),
            "ts": pa.array(ts_us, pa.timestamp("us", "UTC")),
            "open": o, "high": h, "low": low, "close": c, "volume": vol,
        }
    )
    assert_same_chunk(validate_frame(table), chunk)
    s = chunk.sorted()
    assert list(zip(s.symbol, s.ts, strict=True)) == sorted(zip(sym, ts_us, strict=True))
