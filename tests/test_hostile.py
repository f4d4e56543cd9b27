"""Hostile and broken input through the public API: a clear error and an unchanged store, every time.

Each case goes through ``store.load`` / ``store.ingest`` / ``store.create_view`` / the reads on
one store (this module's ``store`` fixture, seeded with bars and a view) and asserts

* the error is a FeatureStoreError subclass whose message names the problem (and stays short,
  even for a 10,000-character symbol), and
* the store's fingerprint (every table a load can change, view tables included) is unchanged.

The few inputs that must load (mixed UTC offsets) are checked for the exact UTC values stored.
A hypothesis fuzzer throws malformed frames at ``ingest``: each either loads exactly what was
given or fails cleanly with the store unchanged.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pytest
from helpers import fingerprint, make_bars
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore.client import FeatureStore
from featurestore.errors import (
    ConfigError,
    FeatureStoreError,
    IndicatorError,
    NotFoundError,
    ValidationError,
)

VIEW = ["sma_5", "ema_10", "rsi_14"]
HEADER = "symbol,ts,open,high,low,close,volume"
GOOD_ROW = "AAA,2030-01-02T00:00:00Z,10,11,9,10.5,100"
MAX_MESSAGE = 600  # characters: an error names the problem, it does not echo a megabyte of input

HOSTILE_SYMBOLS = [
    "",
    "A" * 10_000,
    'A"B',
    "A'B",
    "A;B",
    "'; DROP TABLE bars; --",
    "A\x00B",
    "🚀",
    "AA\u200bPL",  # zero-width space
    " AAPL",
    "AAPL\n",
    "$(rm -rf /)",
    "A" * 65,  # one past SYMBOL_MAX_LEN
    "...",  # no letter or digit
]
# odd but legal by the documented symbol rule: they must load and read back unchanged
ODD_LEGAL_SYMBOLS = ["../../etc/passwd", "A" * 64, "BRK.B", "^GSPC", "EUR/USD", "ES=F", "X:Y@Z+1", "-1"]
HOSTILE_NAMES = [
    "",
    "bars",  # fine as a view name? it only becomes fv_bars_v1: must not be rejected for the wrong reason
    "x" * 10_000,
    "Tech",
    "tech-v2",
    "te'ch",
    'te"ch',
    "tech; DROP TABLE bars; --",
    "tech\x00",
    "🚀",
    "1tech",
    "tech v2",
    "pg_catalog.pg_class",
]


# -- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(store: FeatureStore) -> FeatureStore:
    store.ingest(make_bars(["AAA", "BBB"], 60, seed=1))
    store.create_view("tech", VIEW)
    return store


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


def _fp(fs: FeatureStore) -> dict[str, Any]:
    with fs.db.connection() as conn:
        out = fingerprint(conn)
        out["relations"] = conn.execute(
            "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = current_schema()"
        ).fetchone()
    return out


def rejected(
    fs: FeatureStore,
    call: Callable[[], Any],
    match: str,
    exc: type[FeatureStoreError] = ValidationError,
) -> FeatureStoreError:
    """``call()`` raises ``exc`` with a message matching ``match``, and the store is unchanged."""
    before = _fp(fs)
    with pytest.raises(FeatureStoreError) as info:
        call()
    err = info.value
    assert isinstance(err, exc), f"{type(err).__name__}: {err}"
    text = str(err)
    assert re.search(match, text, re.IGNORECASE | re.DOTALL), text
    assert len(text) <= MAX_MESSAGE, f"message of {len(text)} characters: {text[:200]}..."
    assert _fp(fs) == before
    return err


def frame(rows: int = 3, symbol: str = "HOS", start: str = "2031-01-01") -> pd.DataFrame:
    df = make_bars([symbol], rows, start=start, seed=7)
    return df


def write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


# -- files -----------------------------------------------------------------------------------


def test_empty_file(seeded: FeatureStore, files: Path) -> None:
    p = write(files / "empty.csv", b"")
    rejected(seeded, lambda: seeded.load(p), r"empty")


def test_header_only(seeded: FeatureStore, files: Path) -> None:
    p = write(files / "header.csv", HEADER + "\n")
    err = rejected(seeded, lambda: seeded.load(p), r"no data rows")
    assert str(p) in str(err)


def test_wrong_delimiter(seeded: FeatureStore, files: Path) -> None:
    p = write(files / "semi.csv", HEADER.replace(",", ";") + "\n" + GOOD_ROW.replace(",", ";") + "\n")
    rejected(seeded, lambda: seeded.load(p), r"delimiter=';'")
    t = write(files / "tab.csv", HEADER.replace(",", "\t") + "\n" + GOOD_ROW.replace(",", "\t") + "\n")
    rejected(seeded, lambda: seeded.load(t), r"delimiter='\\t'")


@pytest.mark.parametrize("fmt", ["parquet", "feather"])
@pytest.mark.parametrize("cut", [0.5, 0.97, 8])
def test_truncated_binary_files(seeded: FeatureStore, files: Path, fmt: str, cut: float) -> None:
    src = files / f"good.{fmt}"
    df = make_bars(["TRU"], 2000, seed=3)
    df.to_parquet(src) if fmt == "parquet" else df.to_feather(src)
    data = src.read_bytes()
    keep = int(len(data) * cut) if cut < 1 else int(cut)
    p = write(files / f"truncated_{keep}.{fmt}", data[:keep])
    rejected(seeded, lambda: seeded.load(p), "Parquet" if fmt == "parquet" else "Feather|Arrow IPC")


def test_non_utf8_csv(seeded: FeatureStore, files: Path) -> None:
    p = write(files / "latin1.csv", (HEADER + "\n" + "M\u00dcNCHEN,2030-01-02T00:00:00Z,10,11,9,10.5,100\n").encode("latin-1"))
    rejected(seeded, lambda: seeded.load(p), r"not valid utf8.*encoding")


def test_csv_header_that_is_one_gigantic_field(seeded: FeatureStore, files: Path) -> None:
    # an unterminated quote makes the "header" swallow the whole file: the reader must fail
    # cleanly (and quickly) instead of buffering a gigantic column name
    body = '"' + "x" * 2_000_000 + "\n" + (GOOD_ROW + "\n") * 10
    p = write(files / "giant_header.csv", body)
    rejected(seeded, lambda: seeded.load(p), r"giant_header\.csv")
    # the same with the quote closed: one 2 MB column name, which must not be echoed in full
    p2 = write(files / "giant_name.csv", '"' + "y" * 2_000_000 + '",ts\nA,1\n')
    rejected(seeded, lambda: seeded.load(p2), r"missing required column|unexpected column")


def test_parquet_footer_claiming_gigabytes(seeded: FeatureStore, files: Path) -> None:
    src = files / "footer.parquet"
    make_bars(["PQF"], 50).to_parquet(src)
    data = bytearray(src.read_bytes())
    assert data[-4:] == b"PAR1"
    data[-8:-4] = struct.pack("<I", 0xFFFFFFF0)  # metadata length: ~4 GB
    p = write(files / "footer_huge.parquet", bytes(data))
    rejected(seeded, lambda: seeded.load(p), r"Parquet")


def test_feather_footer_claiming_gigabytes(seeded: FeatureStore, files: Path) -> None:
    src = files / "footer.feather"
    feather.write_feather(make_bars(["FTF"], 50), src, compression="uncompressed")
    data = bytearray(src.read_bytes())
    assert data[-6:] == b"ARROW1"
    data[-10:-6] = struct.pack("<i", 0x7FFFFFF0)  # footer length: 2 GB
    p = write(files / "footer_huge.feather", bytes(data))
    rejected(seeded, lambda: seeded.load(p), r"Feather|Arrow IPC")


def test_missing_and_duplicated_columns_in_files(seeded: FeatureStore, files: Path) -> None:
    p = write(files / "missing.csv", HEADER.replace(",volume", "") + "\n" + GOOD_ROW.rsplit(",", 1)[0] + "\n")
    rejected(seeded, lambda: seeded.load(p), r"missing required column\(s\) 'volume'")
    p = write(files / "dup.csv", HEADER + ",close\n" + GOOD_ROW + ",10.5\n")
    rejected(seeded, lambda: seeded.load(p), r"duplicated column")
    t = pa.table({"symbol": ["A"], "ts": ["2030-01-01T00:00Z"], "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0]})
    t = t.append_column("close", pa.array([1.0])).append_column("volume", pa.array([1.0]))
    q = files / "dup.parquet"
    import pyarrow.parquet as pq

    pq.write_table(t, q)
    rejected(seeded, lambda: seeded.load(q), r"duplicated column")


def test_strings_in_numeric_columns_of_a_file(seeded: FeatureStore, files: Path) -> None:
    rows = [GOOD_ROW.replace("2030-01-02", f"2030-01-{d:02d}") for d in range(2, 12)]
    rows[6] = rows[6].replace(",10.5,", ",ten,")
    p = write(files / "strings.csv", HEADER + "\n" + "\n".join(rows) + "\n")
    err = rejected(seeded, lambda: seeded.load(p), r"row 7.*'close'.*not a number: 'ten'")
    assert isinstance(err, ValidationError) and err.row == 7 and err.column == "close"


# -- frames: columns and values -----------------------------------------------------------------


def test_missing_and_duplicated_columns_in_frames(seeded: FeatureStore) -> None:
    df = frame()
    rejected(seeded, lambda: seeded.ingest(df.drop(columns=["close"])), r"missing required column\(s\) 'close'")
    dup = pd.concat([df, df[["high"]]], axis=1)
    rejected(seeded, lambda: seeded.ingest(dup), r"duplicated column name\(s\): 'high'")
    rejected(seeded, lambda: seeded.ingest(df.assign(extra=1.0)), r"unexpected column 'extra'")
    rejected(seeded, lambda: seeded.ingest(pd.DataFrame()), r"missing required column")


def test_strings_in_numeric_columns_of_a_frame(seeded: FeatureStore) -> None:
    df = frame(5).astype({"open": object})
    df.loc[3, "open"] = "12,5"
    rejected(seeded, lambda: seeded.ingest(df), r"row 3.*'open'.*not a number: '12,5'")
    df = frame(5).astype({"volume": object})
    df.loc[1, "volume"] = "'; DROP TABLE bars; --"
    rejected(seeded, lambda: seeded.ingest(df), r"'volume'.*not a number")
    df = frame(5).assign(close=True)
    rejected(seeded, lambda: seeded.ingest(df), r"'close'.*bool")


@pytest.mark.parametrize(
    ("ts", "match"),
    [
        (["0001-01-01T00:00:00Z"], r"outside the allowed range"),
        (["9999-12-31T23:59:59+00:00"], r"outside the allowed range"),
        ([dt.datetime(1, 1, 1, tzinfo=dt.UTC)], r"'ts': timestamp 0001-01-01T00:00:00\.000000Z is outside the allowed range"),
        ([dt.datetime(9999, 12, 31, tzinfo=dt.UTC)], r"'ts': timestamp 9999-12-31T00:00:00\.000000Z is outside the allowed range"),
        (["2030-01-02 10:00"], r"naive.*assume_tz"),
        ([pd.Timestamp("2030-01-02 10:00")], r"naive.*assume_tz"),
        ([1_900_000_000], r"numeric.*unit"),
        ([1_900_000_000_000.0], r"numeric.*unit"),
        (["1900000000"], r"cannot parse timestamp"),
        (["not a date"], r"cannot parse timestamp '?not a date"),
        ([None], r"missing timestamp"),
        (["2030-01-02T10:00:00.1234567Z"], r"more than microsecond"),
        (["2030-02-30T10:00Z"], r"cannot parse"),
    ],
)
def test_bad_timestamps(seeded: FeatureStore, ts: list[Any], match: str) -> None:
    df = frame(1)
    df["ts"] = pd.Series(ts, dtype=object)
    rejected(seeded, lambda: seeded.ingest(df), match)


def test_epoch_of_the_wrong_unit_in_arrow(seeded: FeatureStore) -> None:
    ms = pd.date_range("2030-01-01", periods=3, freq="D", tz="UTC").as_unit("ms").asi8
    df = frame(3)
    table = pa.Table.from_pandas(df.drop(columns=["ts"]), preserve_index=False).append_column(
        "ts", pa.array(ms, pa.timestamp("s", tz="UTC"))  # milliseconds read as seconds: year ~60000
    )
    rejected(seeded, lambda: seeded.ingest(table), r"outside the allowed range")


def test_mixed_offsets_load_as_the_right_utc_instants(seeded: FeatureStore, files: Path) -> None:
    stamps = ["2030-03-01T09:30:00-05:00", "2030-03-02T15:30:00+01:00", "2030-03-03T14:30:00Z", "2030-03-04T20:00:00+05:30"]
    utc = pd.to_datetime(["2030-03-01T14:30Z", "2030-03-02T14:30Z", "2030-03-03T14:30Z", "2030-03-04T14:30Z"], utc=True)
    rows = [f"MIXTZ,{s},10,11,9,10.5,100" for s in stamps]
    p = write(files / "mixed.csv", HEADER + "\n" + "\n".join(rows) + "\n")
    seeded.load(p)
    got = seeded.get_bars("MIXTZ")
    assert list(got.index.get_level_values("ts")) == list(utc)
    # the same through a DataFrame of offset-carrying strings, and of Timestamps in several zones
    df = pd.DataFrame({"symbol": "MIXTZ2", "ts": stamps, "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 100.0})
    seeded.ingest(df)
    assert list(seeded.get_bars("MIXTZ2").index.get_level_values("ts")) == list(utc)
    # tz-aware Timestamp objects (an object column, offsets differing by row) are timezone-aware
    # times: they load, converted to UTC like the strings above
    objs = pd.Series([pd.Timestamp(s) for s in stamps], dtype=object)
    assert {str(t.utcoffset()) for t in objs} == {"-1 day, 19:00:00", "1:00:00", "0:00:00", "5:30:00"}
    seeded.ingest(df.assign(symbol="MIXTZ3", ts=objs))
    assert list(seeded.get_bars("MIXTZ3").index.get_level_values("ts")) == list(utc)


def test_a_number_among_timestamps_is_rejected(seeded: FeatureStore) -> None:
    """Found by the fuzzer's independent oracle: an integer in an object ts column of tz-aware
    Timestamps was silently read as microseconds since 1970 (a guessed unit, which the contract refuses)."""
    df = frame(3).astype({"ts": object})
    df.iloc[1, df.columns.get_loc("ts")] = 1_900_000_000
    err = rejected(seeded, lambda: seeded.ingest(df), r"row 1\b.*'ts'.*numeric.*unit")
    assert err.row == 1 and err.column == "ts"  # type: ignore[attr-defined]


def test_a_bool_among_numbers_is_rejected(seeded: FeatureStore) -> None:
    """A boolean in an object price/volume column is not a number (a bool column already is refused)."""
    df = frame(3).astype({"volume": object})
    df.iloc[2, df.columns.get_loc("volume")] = True
    err = rejected(seeded, lambda: seeded.ingest(df), r"row 2\b.*'volume'.*bool")
    assert err.row == 2 and err.column == "volume"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [
        ("open", np.nan, r"'open'.*missing value"),
        ("high", np.inf, r"'high'.*not finite"),
        ("low", -np.inf, r"'low'.*not finite"),
        ("close", 1e308, r"'close'.*above the maximum"),
        ("close", -1.0, r"'close'.*negative price"),
        ("open", -0.0001, r"'open'.*negative price"),
        ("volume", np.nan, r"'volume'.*missing value"),
        ("volume", -5.0, r"'volume'.*negative volume"),
        ("volume", np.inf, r"'volume'.*not finite"),
        ("high", 5e-324, r"'high'.*below"),
    ],
)
def test_bad_numbers(seeded: FeatureStore, column: str, value: float, match: str) -> None:
    df = frame(4)
    df.loc[2, column] = value
    err = rejected(seeded, lambda: seeded.ingest(df), match)
    assert isinstance(err, ValidationError) and err.row == 2


# -- symbols, names, and reads -----------------------------------------------------------------


@pytest.mark.parametrize("symbol", HOSTILE_SYMBOLS, ids=range(len(HOSTILE_SYMBOLS)))
def test_hostile_symbols_are_rejected(seeded: FeatureStore, files: Path, symbol: str) -> None:
    df = frame(3)
    df.loc[1, "symbol"] = symbol
    err = rejected(seeded, lambda: seeded.ingest(df), r"'symbol'.*(invalid symbol|missing symbol)")
    assert err.row == 1  # type: ignore[attr-defined]
    # a file: its first data row, the symbol column (an empty CSV field is a missing value)
    err = rejected(
        seeded, lambda: seeded.load(_csv_with_symbol(files, symbol)),
        r"sym\.csv, data row 1, column 'symbol': " + ("missing symbol" if symbol == "" else "invalid symbol"),
    )
    assert err.row == 1 and err.column == "symbol"  # type: ignore[attr-defined]
    # symbol= for a whole file: no row to name, the rule is stated
    err = rejected(
        seeded, lambda: seeded.load(_parquet(files, df.drop(columns=["symbol"])), symbol=symbol),
        r"column 'symbol': invalid symbol .*a symbol must be 1-64 characters of letters, digits",
    )
    assert err.row is None and err.column == "symbol"  # type: ignore[attr-defined]


def test_odd_but_legal_symbols_round_trip(seeded: FeatureStore) -> None:
    df = pd.concat([make_bars([s], 3, start="2033-01-01", seed=i) for i, s in enumerate(ODD_LEGAL_SYMBOLS)], ignore_index=True)
    seeded.ingest(df)
    got = seeded.get_bars(ODD_LEGAL_SYMBOLS)
    assert sorted(set(got.index.get_level_values("symbol"))) == sorted(ODD_LEGAL_SYMBOLS)
    for s in ODD_LEGAL_SYMBOLS:
        expected = df[df.symbol == s]["close"].to_numpy()
        assert np.array_equal(got.loc[s]["close"].to_numpy(), expected)


def _csv_with_symbol(files: Path, symbol: str) -> Path:
    field = '"' + symbol.replace('"', '""') + '"'
    return write(files / "sym.csv", HEADER + "\n" + GOOD_ROW.replace("AAA", field, 1) + "\n")


def _parquet(files: Path, df: pd.DataFrame) -> Path:
    p = files / "nosym.parquet"
    df.to_parquet(p)
    return p


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_hostile_view_and_column_names_create_nothing(seeded: FeatureStore, name: str) -> None:
    if name == "bars":  # a legal name (its table is fv_bars_v1): must work, then be dropped
        seeded.create_view(name, ["sma_5"])
        assert seeded.drop_view(name) == [1]
        return
    rejected(seeded, lambda: seeded.create_view(name, ["sma_5"]), r"invalid view name", ConfigError)
    rejected(seeded, lambda: seeded.create_view("okview", ["sma_5"], columns=[name]), r"invalid view column name", ConfigError)
    if name:
        rejected(
            seeded, lambda: seeded.create_view("okview", [f"sma_5{name}"]),
            r"^.sma_5.*: period must be a non-negative number, got .5", IndicatorError,
        )


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("sma_5; DROP TABLE bars", r"^'sma_5; DROP TABLE bars': period must be a non-negative number, got '5; drop table bars'$"),
        ("sma_-5", r"^'sma_-5': period must be a non-negative number, got '-5'$"),
        ("sma_1e3", r"^'sma_1e3': period must be a non-negative number, got '1e3'$"),
        ("sma_0", r"^sma: parameter 'period' must be in 1\.\.100000 \(TA-Lib's range\), got 0$"),
        ("sma_99999999999999999999", r"^sma: parameter 'period' must be in 1\.\.100000 \(TA-Lib's range\), got 99999999999999999999$"),
        ("__import__", r"^unknown indicator '__import__'; known: (?:[a-z0-9_]+, )+[a-z0-9_]+$"),
        ("", r"^unknown indicator ''; known: (?:[a-z0-9_]+, )+[a-z0-9_]+$"),
        ("sma_5_5_5", r"^'sma_5_5_5': sma takes at most 1 parameters? \(period\)$"),
    ],
    ids=["sql", "negative", "float-text", "zero", "huge", "python-name", "empty", "too-many"],
)
def test_hostile_indicator_specs(seeded: FeatureStore, spec: str, match: str) -> None:
    """Each bad spec is refused naming the spec (or indicator), the parameter and the problem."""
    rejected(seeded, lambda: seeded.create_view("okview", [spec]), match, IndicatorError)


def test_hostile_reads_return_nothing_or_fail_cleanly(seeded: FeatureStore) -> None:
    before = _fp(seeded)
    for sym in (s for s in HOSTILE_SYMBOLS if "\x00" not in s):  # NUL: next test
        assert len(seeded.get_bars(sym)) == 0
        assert len(seeded.get_bars(["AAA", sym])) == 60
        latest = seeded.get_latest([sym])
        assert len(latest) == 1 and latest.isna().all().all()
    for name in (n for n in HOSTILE_NAMES if "\x00" not in n):
        if name == "bars":  # a legal name that names no view
            with pytest.raises(NotFoundError, match=r"^no view 'bars'; registered views: tech v1"):
                seeded.get_features("AAA", view=name)
        else:
            with pytest.raises(ConfigError, match=r"^invalid view name .*: use 1-48 characters, lower-case letters"):
                seeded.get_features("AAA", view=name)
        with pytest.raises(NotFoundError, match=r"^unknown column\(s\) \[.*\] in view 'tech' v1; available: \['sma_5'"):
            seeded.get_features("AAA", view="tech", columns=[name])
        with pytest.raises(NotFoundError, match=r"^unknown column\(s\) \[.*\] in bars; available: \['open'"):
            seeded.get_bars("AAA", columns=[name])
    for bad_time, problem in (
        ("'; DROP TABLE bars; --", r"is not a time"),
        ("2030-01-01", r"has no time zone \(naive\)"),
        (10**30, r"numbers are not accepted as times \(the unit would be a guess\)"),
        ("9999-99-99Z", r"is not a time: month must be in 1\.\.12"),
    ):
        with pytest.raises(ValidationError, match=r"^start=.*" + problem):
            seeded.get_bars("AAA", start=bad_time)
    assert _fp(seeded) == before


def test_nul_byte_in_a_read_argument_is_not_a_driver_error(seeded: FeatureStore) -> None:
    """PostgreSQL text cannot hold NUL: such a symbol exists nowhere, so a read of it finds nothing
    (each read's own "nothing" below); a NUL in a view name is an invalid name. psycopg's
    DataError must not escape, and nothing is written."""
    nul = "A\x00B"
    before = _fp(seeded)
    assert len(seeded.get_bars(nul)) == 0
    assert len(seeded.get_features(nul, view="tech")) == 0
    # a range read of AAA and the NUL symbol: exactly AAA's bars
    both = seeded.get_bars(["AAA", nul])
    assert set(both.index.get_level_values("symbol")) == {"AAA"}
    assert both.equals(seeded.get_bars(["AAA"]))
    # latest: one row per requested symbol, in order, all missing for the NUL symbol
    for latest in (seeded.get_latest([nul]), seeded.get_latest(nul)):
        assert len(latest) == 1 and latest.isna().all().all(), latest
    # a training frame keeps its event, with missing features
    events = pd.DataFrame({"symbol": [nul], "ts": pd.to_datetime(["2020-02-01"], utc=True)})
    frame_ = seeded.get_training_frame(events, view="tech")
    assert list(frame_["symbol"]) == [nul] and list(frame_["ts"]) == list(events["ts"])
    assert frame_.drop(columns=["symbol", "ts"]).isna().all().all()
    with pytest.raises(ConfigError, match=r"invalid view name 'te\\x00ch': use 1-48 characters"):
        seeded.get_features("AAA", view="te\x00ch")
    assert _fp(seeded) == before


# -- the fuzzer ------------------------------------------------------------------------------

# -- an independent statement of the input contract (featurestore/load's docstring), for the fuzzer --

REQUIRED_COLUMNS = ["symbol", "ts", "open", "high", "low", "close", "volume"]
NUMERIC = re.compile(r" ?[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? ?")
SYMBOL_RULE = re.compile(r"[A-Za-z0-9._\-/:=^+@]{1,64}")
ISO_WITH_OFFSET = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:?[0-9]{2})")
TS_RANGE = (pd.Timestamp("1900-01-01", tz="UTC"), pd.Timestamp("2200-01-01", tz="UTC"))  # [lo, hi)
PRICE_MAX = 1e12


def _number(v: Any) -> float | None:
    """A cell of a price/volume column as a float, or None when it is not a number at all."""
    if v is None or v is pd.NA:
        return float("nan")  # missing
    if isinstance(v, (bool, np.bool_)):
        return None  # a boolean is not a number
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    if isinstance(v, str):
        if NUMERIC.fullmatch(v):
            return float(v)
        if v.strip().lower().lstrip("+-") in ("inf", "infinity"):
            return float("inf") if not v.strip().startswith("-") else float("-inf")
        return None
    return None


def _instant(v: Any) -> pd.Timestamp | None:
    """A cell of the ts column as a UTC instant, or None when it is not a valid timezone-aware time."""
    if isinstance(v, str):
        if not ISO_WITH_OFFSET.fullmatch(v):
            return None
        try:
            v = pd.Timestamp(v)
        except ValueError:
            return None
    if not isinstance(v, (pd.Timestamp, dt.datetime)) or isinstance(v, bool):
        return None
    t = pd.Timestamp(v)
    if t.tzinfo is None or t.nanosecond:
        return None
    t = t.tz_convert("UTC")
    return t if TS_RANGE[0] <= t < TS_RANGE[1] else None


def contract(df: pd.DataFrame) -> tuple[pd.DataFrame | None, str | None, set[int]]:
    """What ingest(df) must do, by the documented rules, with plain Python and pandas.

    Returns (rows to be stored, None, set()) when df is valid; else (None, column, rows): the
    column the first failing check names (None for a wrong set of columns) and the 0-based rows
    that fail that check. Checks run in the documented order: the set of columns; symbol; ts;
    open, high, low, close, volume (each: a number, not missing, finite, >= 0, prices <= 1e12);
    high >= low, high >= max(open, close), low <= min(open, close); unique (symbol, ts).
    """
    names = list(df.columns)
    if len(set(names)) != len(names) or sorted(names) != sorted(REQUIRED_COLUMNS):
        return None, None, set()
    cells = {c: df[c].tolist() for c in REQUIRED_COLUMNS}
    n = len(df)
    bad_symbol = {
        i for i, v in enumerate(cells["symbol"])
        if not (isinstance(v, str) and SYMBOL_RULE.fullmatch(v) and re.search("[A-Za-z0-9]", v))
    }
    if bad_symbol:
        return None, "symbol", bad_symbol
    ts = [_instant(v) for v in cells["ts"]]
    if any(t is None for t in ts):
        return None, "ts", {i for i, t in enumerate(ts) if t is None}
    values: dict[str, np.ndarray] = {}
    for c in ("open", "high", "low", "close", "volume"):
        parsed = [_number(v) for v in cells[c]]
        bad = {i for i, x in enumerate(parsed) if x is None}
        if bad:
            return None, c, bad
        col = np.array(parsed, dtype=float)
        for failing in (
            np.isnan(col),
            np.isinf(col),
            col < 0,
            col > PRICE_MAX if c != "volume" else np.zeros(n, bool),
        ):
            if failing.any():
                return None, c, set(np.flatnonzero(failing).tolist())
        values[c] = col
    o, h, lo, cl = values["open"], values["high"], values["low"], values["close"]
    for column, failing in (("high", h < lo), ("high", h < np.maximum(o, cl)), ("low", lo > np.minimum(o, cl))):
        if failing.any():
            return None, column, set(np.flatnonzero(failing).tolist())
    keys = list(zip(cells["symbol"], ts))
    seen: set[tuple[Any, Any]] = set()
    dups = set()
    for i, k in enumerate(keys):
        if k in seen:
            dups.add(i)
        seen.add(k)
    if dups:
        return None, "ts", dups
    expected = pd.DataFrame({"symbol": cells["symbol"], "ts": ts, **values})
    return expected, None, set()


HOSTILE_TEXT = st.one_of(
    st.text(st.sampled_from(list("AB.-_/:=^+@'\";\\ \x00\t\n%$€🚀")), min_size=0, max_size=6),
    st.sampled_from(["DROP", "--", "AAA", "'; DROP TABLE bars; --", "A" * 65, "NaN", "inf", "1e308"]),
)
# text in a number column: decimal literals (the oracle parses them with float()) and strings
# that are no number in any notation, or one that is not finite
NUMERIC_TEXT = st.from_regex(r"\A ?[+-]?([0-9]{1,13}(\.[0-9]{0,4})?|\.[0-9]{1,4})([eE][+-]?[0-9]{1,3})? ?\Z")
NOT_A_NUMBER_TEXT = st.one_of(
    st.text(st.sampled_from(list("AB.,-_+eEx'\" \x00%$€🚀")), max_size=5).filter(lambda t: not NUMERIC.fullmatch(t)),
    st.sampled_from(["", "ten", "12,5", "1_000", "0x1F", "--1", "1e", "nan", "NaN", "inf", "-inf", "Infinity", "None"]),
)
NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, 1e308, -1.0, 1e12, 1e12 + 1, 5e-324, np.nan, np.inf]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    NUMERIC_TEXT,
    NOT_A_NUMBER_TEXT,
    st.none(),
)
MUTATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("drop"), st.sampled_from(["symbol", "ts", "open", "high", "low", "close", "volume"])),
        st.tuples(st.just("add"), HOSTILE_TEXT),
        st.tuples(st.just("symbol"), st.integers(0, 7), HOSTILE_TEXT),
        st.tuples(st.just("value"), st.integers(0, 7), st.sampled_from(["open", "high", "low", "close", "volume"]), NUMBER),
        st.tuples(st.just("ts"), st.integers(0, 7), st.one_of(HOSTILE_TEXT, st.integers(), st.sampled_from(
            ["2030-01-01", "0001-01-01Z", "9999-01-01Z", "2030-01-01T00:00+25:00", "2030-13-01Z"]))),
        st.tuples(st.just("dtype"), st.sampled_from(["open", "high", "low", "close", "volume", "ts", "symbol"]),
                  st.sampled_from(["object", "str", "float32", "int64", "category"])),
        st.tuples(st.just("duplicate_row"), st.integers(0, 7)),
    ),
    max_size=3,
)


def _mutate(df: pd.DataFrame, mutations: list[tuple[Any, ...]]) -> pd.DataFrame:
    df = df.copy()
    for m in mutations:
        kind = m[0]
        n = len(df)
        try:
            if kind == "drop" and m[1] in df.columns:
                df = df.drop(columns=[m[1]])
            elif kind == "add":
                df[m[1]] = 1.0
            elif kind == "symbol" and "symbol" in df.columns and n:
                df["symbol"] = df["symbol"].astype(object)
                df.iloc[m[1] % n, df.columns.get_loc("symbol")] = m[2]
            elif kind == "value" and m[2] in df.columns and n:
                df[m[2]] = df[m[2]].astype(object)
                df.iloc[m[1] % n, df.columns.get_loc(m[2])] = m[3]
            elif kind == "ts" and "ts" in df.columns and n:
                df["ts"] = df["ts"].astype(object)
                df.iloc[m[1] % n, df.columns.get_loc("ts")] = m[2]
            elif kind == "dtype" and m[1] in df.columns:
                df[m[1]] = df[m[1]].astype(m[2])
            elif kind == "duplicate_row" and n:
                df = pd.concat([df, df.iloc[[m[1] % n]]], ignore_index=True)
        except (ValueError, TypeError, OverflowError):
            pass  # pandas refused the mutation itself: the frame stays as it was
    return df


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    symbols=st.lists(st.sampled_from(["FZA", "FZB", "AAA", "F.Z"]), min_size=1, max_size=2, unique=True),
    n=st.integers(1, 6),
    day=st.integers(0, 30),
    mutations=MUTATIONS,
)
def test_fuzzed_frames_load_exactly_or_fail_cleanly(
    seeded: FeatureStore, symbols: list[str], n: int, day: int, mutations: list[tuple[Any, ...]]
) -> None:
    """The oracle is contract() above (the documented rules in plain pandas), never the loader."""
    base = make_bars(symbols, n, start=str(pd.Timestamp("2032-01-01") + pd.Timedelta(days=day)), seed=day)
    df = _mutate(base, mutations)
    expected, column, rows = contract(df)
    before = _fp(seeded)
    if expected is None:
        with pytest.raises(FeatureStoreError) as info:
            seeded.ingest(df)
        err = info.value
        text = str(err)
        assert isinstance(err, ValidationError), f"{type(err).__name__}: {text}"
        assert len(text) <= MAX_MESSAGE, text[:200]
        assert _fp(seeded) == before, f"a failed load changed the store: {text}"
        if column is None:  # the set of columns is wrong
            assert err.row is None and re.search(r"missing required column|unexpected column|duplicated column", text), text
        else:
            assert err.column == column, f"expected a problem in column {column!r} (rows {sorted(rows)}): {text}"
            if column != "ts":  # ts: which row a mixed-type column is blamed on is the converter's
                assert err.row in rows, f"expected one of rows {sorted(rows)} in {column!r}: {text}"
            assert f"row {err.row}" in text and f"'{column}'" in text, text
        return
    seeded.ingest(df)  # the contract says it is valid: it must load
    got = seeded.get_bars(sorted(set(expected.symbol)))
    for r in expected.itertuples(index=False):
        row = got.loc[(r.symbol, r.ts)]
        assert list(row[["open", "high", "low", "close", "volume"]]) == [r.open, r.high, r.low, r.close, r.volume], r


def test_store_survived(seeded: FeatureStore) -> None:
    """After everything above: the seeded data is intact and its features still follow the bars."""
    bars = seeded.get_bars("AAA")
    assert len(bars) >= 60
    feats = seeded.get_features("AAA", view="tech")
    assert len(feats) == len(bars)
    import talib

    close = bars["close"].to_numpy()
    assert np.array_equal(feats["sma_5"].to_numpy(), talib.SMA(close, 5), equal_nan=True)
    assert np.array_equal(feats["ema_10"].to_numpy(), talib.EMA(close, 10), equal_nan=True)
    assert np.array_equal(feats["rsi_14"].to_numpy(), talib.RSI(close, 14), equal_nan=True)
