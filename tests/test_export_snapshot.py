"""An export is one consistent state of the store, even when a load commits while it runs (issue 11 item 13).

The export reads symbols in batches. A load that commits between two batches, changing symbols of
both the batches already read and the ones still to come, must be in none of the file: every
batch reads the snapshot taken when the export started. The interleaving is deterministic: the
load runs inside the export's own progress callback, after the first batch was read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_bars
from sqlalchemy.engine import URL

from featurestore.client import FeatureStore
from featurestore.export import export

SYMBOLS = [f"S{i}" for i in range(6)]
N_BARS = 50


@pytest.fixture()
def fs(make_database: Callable[[str], URL]) -> Iterator[FeatureStore]:
    store = FeatureStore(make_database("export_snap"), auto_migrate=True, cache=None)
    store.create_view("tech", ["sma_3", "ema_5"])
    store.ingest(make_bars(SYMBOLS, N_BARS, seed=21), progress=False)
    yield store
    store.close()


def a_load_changing_every_symbol() -> pd.DataFrame:
    """A correction of every symbol's last bar, one new bar for each, and a new symbol."""
    bars = make_bars([*SYMBOLS, "S9"], N_BARS + 1, seed=21)
    last = bars.groupby("symbol").tail(2).copy()  # bar 49 (a correction) and bar 50 (new)
    last[["open", "high", "low", "close"]] *= 1.05
    return last[last["symbol"] != "S9"].pipe(lambda d: pd.concat([d, bars[bars["symbol"] == "S9"]]))


def state(fs: FeatureStore, view: str | None) -> pd.DataFrame:
    """What an export of everything should hold, read directly (pandas, sorted by symbol and ts)."""
    names = sorted([*SYMBOLS, "S9"])
    if view is None:
        return fs.reader.get_bars(names).reset_index()
    return fs.reader.get_features(names, view=view, include_bars=True).reset_index()


def file_frame(path: Path) -> pd.DataFrame:
    table: pa.Table = pq.read_table(path)
    df = table.replace_schema_metadata(None).to_pandas()
    df["symbol"] = df["symbol"].astype(str)
    return df


def same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return False
    if not (a["symbol"].astype(str).to_numpy() == b["symbol"].astype(str).to_numpy()).all():
        return False
    if not (a["ts"].to_numpy() == b["ts"].to_numpy()).all():
        return False
    values = [c for c in a.columns if c not in ("symbol", "ts")]
    return bool(np.array_equal(a[values].to_numpy(), b[values].to_numpy(), equal_nan=True))


@pytest.mark.parametrize("view", [None, "tech"])
def test_an_export_overlapping_a_load_holds_the_state_before_it(fs: FeatureStore, tmp_path: Path, view: str | None) -> None:
    before = state(fs, view)
    calls: list[tuple[int, int, int]] = []

    def load_after_first_batch(rows: int, done: int, total: int) -> None:
        calls.append((rows, done, total))
        if len(calls) == 1:
            result = fs.ingest(a_load_changing_every_symbol(), progress=False)  # commits now
            assert result.updated == len(SYMBOLS) and result.inserted == len(SYMBOLS) + N_BARS + 1

    path = tmp_path / "all.parquet"
    result = export(fs, path, view=view, chunk_symbols=2, progress=load_after_first_batch)
    after = state(fs, view)

    # the load really overlapped the export: batches came after it, and it changed every symbol
    assert [c[1:] for c in calls] == [(2, 6), (4, 6), (6, 6)]
    changed = {
        s for s in SYMBOLS
        if not same(before[before["symbol"] == s].reset_index(drop=True), after[after["symbol"] == s].reset_index(drop=True))
    }
    assert changed == set(SYMBOLS)
    assert "S9" in set(after["symbol"]) and "S9" not in set(before["symbol"])

    got = file_frame(path)
    assert same(got, before), "the export mixed states: " + ", ".join(
        f"{s}: {'before' if same(got[got.symbol == s].reset_index(drop=True), before[before.symbol == s].reset_index(drop=True)) else 'after/mixed'}"
        for s in SYMBOLS
    )
    assert result.rows == len(before) and result.symbols == len(SYMBOLS)

    # an export started after the load holds all of it
    again = export(fs, tmp_path / "again.parquet", view=view, chunk_symbols=2)
    assert same(file_frame(tmp_path / "again.parquet"), after) and again.symbols == len(SYMBOLS) + 1


def test_the_view_version_is_fixed_when_the_export_starts(fs: FeatureStore, tmp_path: Path) -> None:
    """A new version of the view finishing its backfill mid-export does not switch versions half way."""
    before = state(fs, "tech")
    calls: list[int] = []

    def new_version_after_first_batch(rows: int, done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 1:
            assert fs.create_view("tech", ["sma_3", "ema_5", "rsi_3"]).version == 2  # ready now

    path = tmp_path / "v.parquet"
    export(fs, path, view="tech", chunk_symbols=2, progress=new_version_after_first_batch)
    got = file_frame(path)
    assert same(got, before)
    meta = pq.read_schema(path).metadata[b"featurestore"]
    assert b'"version": 1' in meta
    assert "rsi_3" in fs.reader.get_features("S0", view="tech").columns  # reads by name moved on to v2
