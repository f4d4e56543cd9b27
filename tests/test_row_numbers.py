"""One documented rule for row numbers in errors (featurestore.load docstring, README):

* files (CSV, Parquet, Feather): ``data row N``, counted from 1, the header not counted;
* in-memory frames (DataFrame, Arrow Table, RecordBatch): ``row N (0-based position)``, ``.iloc[N]``.

Each source gets the same bad bar at the same place; the oracle is the source itself (the CSV's
text line, the frame's ``.iloc``), not the validator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pyarrow import feather

from featurestore.errors import ValidationError
from featurestore.load import read_chunks, validate_frame

BAD = 5  # 0-based position of the bad bar among the data rows


def frame(n: int = 10) -> pd.DataFrame:
    ts = pd.date_range("2024-01-02", periods=n, freq="D", tz="UTC")
    close = np.linspace(10, 11, n)
    df = pd.DataFrame(
        {"symbol": "AAA", "ts": ts, "open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 100.0}
    )
    df.loc[BAD, "close"] = -7.25  # a negative price
    return df


def _err(fn: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        fn()  # type: ignore[operator]
    return info.value


@pytest.mark.parametrize("kind", ["DataFrame", "Table", "RecordBatch"])
def test_frames_name_the_0_based_position(kind: str) -> None:
    df = frame()
    data = {"DataFrame": df, "Table": pa.Table.from_pandas(df), "RecordBatch": pa.RecordBatch.from_pandas(df)}[kind]
    err = _err(lambda: validate_frame(data))
    assert err.row == BAD and df.iloc[err.row]["close"] == -7.25  # .iloc[row] is the bad bar
    assert f"row {BAD} (0-based position), column 'close'" in str(err), str(err)
    assert "data row" not in str(err)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "feather"])
@pytest.mark.parametrize("chunk_rows", [3, 1000])
def test_files_name_the_1_based_data_row(tmp_path: Path, fmt: str, chunk_rows: int) -> None:
    df = frame()
    path = tmp_path / f"bars.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path)
    else:
        feather.write_feather(pa.Table.from_pandas(df, preserve_index=False), path, chunksize=4)
    err = _err(lambda: list(read_chunks(path, chunk_rows=chunk_rows)))
    assert err.row == BAD + 1
    assert f"{path}, data row {BAD + 1}, column 'close'" in str(err), str(err)
    assert "0-based" not in str(err)
    if fmt == "csv":  # oracle: the CSV text; data row N is line N + 1 (line 1 is the header)
        line = path.read_text().splitlines()[err.row]  # 0-based list index = line number - 1
        assert ",-7.25," in line


def test_duplicates_name_both_rows_by_the_same_rule(tmp_path: Path) -> None:
    df = frame().assign(close=10.0, open=10.0, high=11.0, low=9.0)
    df.loc[7, "ts"] = df.loc[2, "ts"]
    err = _err(lambda: validate_frame(df))
    assert err.row == 7 and "row 7 (0-based position)" in str(err) and "also at row 2 (0-based position)" in str(err)
    path = tmp_path / "dup.parquet"
    df.to_parquet(path)
    err = _err(lambda: list(read_chunks(path)))
    assert err.row == 8 and "data row 8" in str(err) and "also at data row 3" in str(err)


def test_the_rule_is_documented() -> None:
    from conftest import REPO_ROOT

    from featurestore import load

    doc = load.__doc__ or ""
    assert "``data row N`` counts data rows from 1" in doc and "``row N (0-based position)``" in doc
    readme = (REPO_ROOT / "README.md").read_text()
    assert "data row N" in readme and "0-based position" in readme


@pytest.mark.parametrize("source", ["DataFrame", "csv"])
def test_write_path_errors_follow_the_same_rule(store: object, tmp_path: Path, source: str) -> None:
    """An unknown symbol is found by the write step, not the validator; it names rows by the same rule."""
    from featurestore.client import FeatureStore

    assert isinstance(store, FeatureStore)
    known = frame().assign(close=10.0, open=10.0, high=11.0, low=9.0)
    store.ingest(known)
    bars = pd.concat([known, known.iloc[:3].assign(symbol="ZZZ")], ignore_index=True)
    pos = int(np.flatnonzero(bars["symbol"].to_numpy() == "ZZZ")[0])  # oracle: the frame itself
    if source == "DataFrame":
        err = _err(lambda: store.ingest(bars, create_symbols=False))
        assert f"row {pos} (0-based position), column 'symbol'" in str(err), str(err)
        assert err.row == pos
    else:
        path = tmp_path / "bars.csv"
        bars.to_csv(path, index=False)
        lines = path.read_text().splitlines()
        err = _err(lambda: store.load(path, create_symbols=False))
        assert f"data row {pos + 1}, column 'symbol'" in str(err), str(err)
        assert lines[err.row].startswith("ZZZ,")  # data row N is text line N + 1 (line 0 is the header)
    assert "unknown symbol 'ZZZ'" in str(err)
