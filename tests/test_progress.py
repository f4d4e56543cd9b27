"""What a file load shows while it runs: a bar with a total, then the phases after the last row."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import make_bars

from featurestore.client import FeatureStore
from featurestore.load import estimate_rows


@pytest.mark.parametrize("fmt", ["parquet", "feather", "csv"])
def test_estimate_rows_counts_the_data_rows(tmp_path: Path, fmt: str) -> None:
    df = make_bars(["AAA", "BBB"], 500)
    path = tmp_path / f"b.{fmt}"
    {"parquet": df.to_parquet, "feather": df.to_feather, "csv": lambda p: df.to_csv(p, index=False)}[fmt](path)
    rows, exact = estimate_rows([path])
    if fmt == "csv":  # estimated from the size: near, not exact
        assert not exact and 0.5 * len(df) <= rows <= 2 * len(df), rows
    else:  # from the file's metadata
        assert exact and rows == len(df)


def test_file_load_shows_a_total_and_names_its_phases(
    store: FeatureStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store.create_view("prog", ["sma_5"])
    store.create_view("prog2", ["ema_10"])
    path = tmp_path / "b.parquet"
    make_bars(["AAA", "BBB"], 1500).to_parquet(path)
    result = store.load(path, progress=True, chunk_rows=1000)
    err = capsys.readouterr().err
    assert result.inserted == 3000
    assert re.search(r"load:\s+\d+%", err) and "100%" in err, err  # a percentage, so a total
    assert "3.00k" in err or "3000" in err, err  # the bar's total is the file's row count
    # the features phase counts on its own: from 0 to its own total (two views over the 3,000 rows)
    features = err[err.find("load: features") :]
    assert re.search(r"load: features:\s+0%\|", features), features
    assert re.search(r"load: features:\s+100%\|[^|]*\| 6\.00k/6\.00k", features), features
    positions = [err.find(f"load: {phase}") for phase in ("features", "commit", "ANALYZE")]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), err
