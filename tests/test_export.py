"""Export: bars round-trip through load() in every format; feature exports equal get_features."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc as pa_ipc
import pyarrow.parquet as pq
import pytest
from helpers import SEED_VIEW, make_bars
from sqlalchemy.engine import URL

from featurestore.client import FeatureStore
from featurestore.errors import ConfigError, NotFoundError, ValidationError
from featurestore.export import ExportResult, export, export_format

SYMBOLS = ["AAA", "BRK.B", "CCC", "DDD", "EEE", "ZZZ"]
N_BARS = 260
FORMATS = ["data.parquet", "data.feather", "data.csv", "data.csv.gz"]


@pytest.fixture(scope="module")
def src(store: FeatureStore) -> FeatureStore:
    """The source store: 6 symbols x 260 daily bars, view "seed" (7 indicators) and "mixed"
    (one indicator plus a user column with gaps)."""
    store.create_view("seed", SEED_VIEW)
    store.create_view("mixed", ["sma_5"], columns=["signal"])
    bars = make_bars(SYMBOLS, N_BARS, seed=3)
    rng = np.random.default_rng(5)
    signal = rng.normal(size=len(bars))
    signal[rng.random(len(bars)) < 0.1] = np.nan
    bars["signal"] = signal
    store.ingest(bars, progress=False)
    return store


@pytest.fixture()
def fresh(make_database: Callable[[str], URL]) -> Iterator[Callable[..., FeatureStore]]:
    """Factory of empty migrated stores (each on its own database), closed after the test."""
    opened: list[FeatureStore] = []

    def make(*views: tuple[str, list[str], list[str] | None]) -> FeatureStore:
        fs = FeatureStore(make_database("export_dst"), auto_migrate=True, cache=None)
        opened.append(fs)
        for name, indicators, columns in views:
            fs.create_view(name, indicators, columns=columns)
        return fs

    yield make
    for fs in opened:
        fs.close()


def all_bars(fs: FeatureStore) -> pd.DataFrame:
    return fs.reader.get_bars(SYMBOLS + ["NOPE"])


def all_features(fs: FeatureStore, view: str) -> pd.DataFrame:
    return fs.reader.get_features(SYMBOLS, view=view, include_bars=True)


def read_file(path: Path) -> pa.Table:
    """The exported file as an Arrow table, read by pyarrow alone (what a consumer would do)."""
    fmt = export_format(path)
    if fmt == "parquet":
        return pq.read_table(path)
    if fmt == "feather":
        with pa_ipc.open_file(path) as f:
            return f.read_all()
    table = pa_csv.read_csv(path)
    ts = pa.array(pd.to_datetime(table.column("ts").to_pandas(), utc=True).dt.as_unit("us"), pa.timestamp("us", tz="UTC"))
    return table.set_column(1, "ts", ts)


def assert_same_table(got: pa.Table, want: pa.Table) -> None:
    got = got.replace_schema_metadata(None)
    want = want.replace_schema_metadata(None)
    assert got.schema.names == want.schema.names
    assert got.num_rows == want.num_rows
    for name in want.schema.names:
        g, w = got.column(name).to_numpy(zero_copy_only=False), want.column(name).to_numpy(zero_copy_only=False)
        if g.dtype.kind == "f":
            assert np.array_equal(g, w, equal_nan=True), name
        else:
            assert (g == w).all(), name


# -- bars round-trip -----------------------------------------------------------------------


@pytest.mark.parametrize("name", FORMATS)
def test_bars_export_round_trips_through_load(
    src: FeatureStore, fresh: Callable[..., FeatureStore], tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    result = export(src, path)
    assert isinstance(result, ExportResult)
    assert (result.rows, result.symbols, result.files) == (len(SYMBOLS) * N_BARS, len(SYMBOLS), 1)
    assert result.bytes == path.stat().st_size > 0
    assert result.columns == ("symbol", "ts", "open", "high", "low", "close", "volume")
    assert result.format == export_format(name)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind

    dst = fresh(("seed", SEED_VIEW, None))  # the view exists first: load computes it
    loaded = dst.load(path, progress=False)
    assert loaded.inserted == result.rows
    pd.testing.assert_frame_equal(all_bars(dst), all_bars(src), check_exact=True)
    pd.testing.assert_frame_equal(all_features(dst, "seed"), all_features(src, "seed"), check_exact=True)


def test_stored_tables_are_identical_after_round_trip(
    src: FeatureStore, fresh: Callable[..., FeatureStore], tmp_path: Path
) -> None:
    """Compare what PostgreSQL stores, bit for bit (float8 text is exact), keyed by symbol."""
    path = tmp_path / "bars.csv"
    export(src, path)
    dst = fresh(("seed", SEED_VIEW, None))
    dst.load(path, progress=False)

    def digest(fs: FeatureStore, table: str) -> tuple[Any, ...]:
        with fs.db.connection() as conn:
            cols = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                "AND column_name NOT IN ('entity_id') ORDER BY ordinal_position", (table,)
            ).fetchall()]
            row = ", ".join(f't."{c}"' for c in cols)
            return conn.execute(
                f"SELECT count(*), md5(string_agg((e.symbol, {row})::text, '|' ORDER BY e.symbol, t.ts)) "
                f'FROM "{table}" t JOIN entities e USING (entity_id)'
            ).fetchone()

    def view_table(fs: FeatureStore) -> str:
        with fs.db.connection() as conn:
            return conn.execute("SELECT table_name FROM feature_views WHERE name = 'seed'").fetchone()[0]

    assert digest(dst, "bars") == digest(src, "bars")
    assert digest(dst, view_table(dst)) == digest(src, view_table(src))


# -- feature exports -------------------------------------------------------------------------


@pytest.mark.parametrize("name", FORMATS)
def test_features_export_equals_get_features(src: FeatureStore, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    result = export(src, path, view="seed")
    want = src.reader.get_features(SYMBOLS, view="seed", include_bars=True, as_arrow=True)
    assert result.columns == tuple(want.schema.names)
    assert result.rows == want.num_rows
    assert_same_table(read_file(path), want)


def test_features_export_does_not_load_back(src: FeatureStore, fresh: Callable[..., FeatureStore], tmp_path: Path) -> None:
    path = tmp_path / "features.parquet"
    export(src, path, view="seed")
    dst = fresh(("seed", SEED_VIEW, None))
    with pytest.raises(ValidationError, match="unexpected column 'sma_20'"):
        dst.load(path, progress=False)
    assert dst.reader.get_bars(SYMBOLS).empty  # nothing was written


def test_user_columns_export_round_trips(src: FeatureStore, fresh: Callable[..., FeatureStore], tmp_path: Path) -> None:
    """columns=<the view's user columns>: loadable into a store where that view exists."""
    path = tmp_path / "user.feather"
    result = export(src, path, view="mixed", columns=["signal"])
    assert result.columns[-1] == "signal"
    dst = fresh(("mixed", ["sma_5"], ["signal"]))
    dst.load(path, progress=False)
    got, want = all_features(dst, "mixed"), all_features(src, "mixed")
    assert want["signal"].isna().any() and want["signal"].notna().any()
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_metadata_names_the_view(src: FeatureStore, tmp_path: Path) -> None:
    export(src, tmp_path / "f.parquet", view="seed", start="2020-03-01 UTC")
    meta = json.loads(pq.read_schema(tmp_path / "f.parquet").metadata[b"featurestore"])
    assert meta == {"view": "seed", "version": 1, "start": "2020-03-01 UTC", "end": None}


# -- chunking and filters --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.parquet", "a.feather", "a.csv"])
def test_chunked_export_equals_unchunked(src: FeatureStore, tmp_path: Path, name: str) -> None:
    whole = export(src, tmp_path / f"whole-{name}", view="seed")
    by_one = export(src, tmp_path / f"one-{name}", view="seed", chunk_symbols=1)
    by_rows = export(src, tmp_path / f"rows-{name}", view="seed", chunk_symbols=4, chunk_rows=300)
    assert whole.rows == by_one.rows == by_rows.rows
    want = read_file(tmp_path / f"whole-{name}")
    assert_same_table(read_file(tmp_path / f"one-{name}"), want)
    assert_same_table(read_file(tmp_path / f"rows-{name}"), want)
    if name.endswith(".csv"):
        assert (tmp_path / f"one-{name}").read_bytes() == (tmp_path / f"whole-{name}").read_bytes()


def test_batches_adapt_to_rows_per_symbol() -> None:
    from featurestore.export import _Batches

    b = _Batches([f"S{i}" for i in range(10)], chunk_symbols=4, chunk_rows=500)
    first = b.next()
    assert first == ["S0", "S1", "S2", "S3"]
    b.observe(4, 1000)  # 250 rows per symbol -> 2 symbols per batch
    assert b.next() == ["S4", "S5"]
    b.observe(2, 100_000)  # huge symbols: never fewer than one
    assert b.next() == ["S6"]


def test_symbols_start_end_filters(src: FeatureStore, tmp_path: Path) -> None:
    start, end = pd.Timestamp("2020-03-01", tz="UTC"), "2020-05-31T23:59:59Z"
    path = tmp_path / "f.parquet"
    result = export(src, path, symbols=["DDD", "AAA", "NOPE", "AAA"], start=start, end=end)
    want = src.reader.get_bars(["AAA", "DDD"], start, end, as_arrow=True)
    assert 0 < result.rows == want.num_rows < 2 * N_BARS
    assert result.symbols == 2
    got = pq.read_table(path)
    assert_same_table(got, want)
    assert got.column("ts").to_pandas().min() >= start

    one = export(src, tmp_path / "one.csv", symbols="CCC", end=end)
    assert one.symbols == 1 and one.rows == len(src.reader.get_bars("CCC", None, end))

    with_view = export(src, tmp_path / "v.feather", symbols=["EEE"], start=start, view="seed")
    want_view = src.reader.get_features(["EEE"], start, None, view="seed", include_bars=True, as_arrow=True)
    assert_same_table(read_file(tmp_path / "v.feather"), want_view)
    # every EEE bar from 2020-03-01 on (daily bars from 2020-01-01: day 60 onwards)
    assert with_view.rows == want_view.num_rows == N_BARS - 60 and with_view.symbols == 1


def test_empty_export_writes_a_valid_file(src: FeatureStore, tmp_path: Path) -> None:
    result = export(src, tmp_path / "none.parquet", symbols=["NOPE"])
    assert (result.rows, result.symbols) == (0, 0)
    table = pq.read_table(tmp_path / "none.parquet")
    assert table.num_rows == 0
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")


# -- errors --------------------------------------------------------------------------------------


def test_format_from_extension_or_argument(tmp_path: Path) -> None:
    assert export_format("x.PARQUET") == "parquet"
    assert export_format("x.arrow") == export_format("x.ipc") == "feather"
    assert export_format("x.csv.gz") == "csv"
    assert export_format("x.dat", "Feather") == "feather"
    with pytest.raises(ConfigError, match="unknown export format 'xlsx'"):
        export_format("x.parquet", "xlsx")
    with pytest.raises(ConfigError, match="cannot tell the export format"):
        export_format("x.dat")


def test_bad_arguments(src: FeatureStore, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown export format"):
        export(src, tmp_path / "a.parquet", format="xlsx")
    with pytest.raises(ConfigError, match="cannot tell the export format"):
        export(src, tmp_path / "a.json")
    with pytest.raises(ConfigError, match="compression"):
        export(src, tmp_path / "a.feather", compression="snappy")
    with pytest.raises(ConfigError, match="chunk_symbols"):
        export(src, tmp_path / "a.parquet", chunk_symbols=0)
    with pytest.raises(ConfigError, match="pass view="):
        export(src, tmp_path / "a.parquet", version=1)
    with pytest.raises(ConfigError, match="does not exist"):
        export(src, tmp_path / "no" / "a.parquet")
    with pytest.raises(NotFoundError, match=r"no view 'no_such_view'; registered views: mixed v1, seed v1"):
        export(src, tmp_path / "a.parquet", view="no_such_view")
    with pytest.raises(NotFoundError, match="unknown column"):
        export(src, tmp_path / "a.parquet", view="seed", columns=["nope"])
    with pytest.raises(ValidationError, match="naive"):
        export(src, tmp_path / "a.parquet", start="2020-01-01")
    with pytest.raises(ConfigError, match="symbols must be strings"):
        export(src, tmp_path / "a.parquet", symbols=[1, 2])  # type: ignore[list-item]
    assert list(tmp_path.iterdir()) == []  # nothing written by any failed export


def test_existing_file_needs_overwrite(src: FeatureStore, tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("keep me")
    with pytest.raises(ConfigError, match="already exists"):
        export(src, path)
    assert path.read_text() == "keep me"
    result = export(src, path, overwrite=True, compression="none")
    assert result.rows == len(SYMBOLS) * N_BARS and path.read_text().startswith('"symbol","ts"')


def test_compression_choices(src: FeatureStore, tmp_path: Path) -> None:
    plain = export(src, tmp_path / "a.feather", compression="none")
    zstd = export(src, tmp_path / "b.feather", compression="zstd")
    assert plain.compression is None and zstd.compression == "zstd"
    assert zstd.bytes < plain.bytes
    assert_same_table(read_file(tmp_path / "b.feather"), read_file(tmp_path / "a.feather"))
    with pa_ipc.open_file(tmp_path / "b.feather") as f:
        assert f.read_all().num_rows == plain.rows
    snappy = export(src, tmp_path / "c.parquet", compression="snappy")
    assert pq.ParquetFile(tmp_path / "c.parquet").metadata.row_group(0).column(0).compression == "SNAPPY"
    assert snappy.compression == "snappy"
    gz = export(src, tmp_path / "d.csv.gz")
    assert gz.compression == "gzip"
    assert (tmp_path / "d.csv.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert_same_table(read_file(tmp_path / "d.csv.gz"), read_file(tmp_path / "c.parquet"))


def test_failed_export_leaves_no_file(src: FeatureStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read failing half way (after one batch was written) removes the partial file."""
    reader = src.reader
    real = reader.get_bars
    calls: list[int] = []

    def failing(symbols: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(symbols))
        if len(calls) == 3:  # the schema probe, batch 1, then batch 2 fails
            raise RuntimeError("connection lost")
        return real(symbols, *args, **kwargs)

    monkeypatch.setattr(reader, "get_bars", failing)
    with pytest.raises(RuntimeError, match="connection lost"):
        export(src, tmp_path / "a.parquet", chunk_symbols=2)
    assert calls[:2] == [0, 2]
    assert list(tmp_path.iterdir()) == []


def test_repeated_exports_open_no_new_connections(src: FeatureStore, tmp_path: Path) -> None:
    """Reads run on the caller's thread: its one ADBC connection is reused, none leak per export."""

    def backends() -> int:
        with src.db.connection() as conn:
            q = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            return int(conn.execute(q).fetchone()[0])

    export(src, tmp_path / "0.parquet", chunk_symbols=2)
    before = backends()
    for i in range(3):
        export(src, tmp_path / f"{i + 1}.feather", chunk_symbols=2, view="seed")
    assert backends() == before
