"""``info()`` / ``stats()`` on a large store: no scan of bars, estimates that say they are estimates (issue 14)."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from helpers import make_bars
from sqlalchemy.engine import URL

import featurestore.client as client
from featurestore.cli import cli
from featurestore.client import FeatureStore
from featurestore.config import libpq_url


def _bars_scans(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT coalesce(seq_scan, 0), coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'bars'"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _flush_stats(store: FeatureStore) -> None:
    """Make the store's one backend publish its pending table counters (it does so when idle)."""
    with store.db.connection() as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")


@pytest.fixture()
def one_backend_store(make_database: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    url: URL = make_database("info_est")
    # every call of info() goes through one pooled connection, so one backend's counters tell all
    fs = FeatureStore(url, auto_migrate=True, pool_size=1, max_overflow=0, cache=None)
    try:
        yield fs, url
    finally:
        fs.close()


def test_info_does_not_scan_bars_and_estimates_after_analyze(one_backend_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fs, url = one_backend_store
    fs.create_view("est", ["sma_5"])
    fs.ingest(make_bars([f"S{i:02d}" for i in range(20)], 300))  # 6,000 bars: analyzed after the load
    monkeypatch.setattr(client, "EXACT_COUNT_MAX_PAGES", 0)  # treat every table as large
    with psycopg.connect(libpq_url(url), autocommit=True) as watch:
        with watch.cursor() as cur:
            cur.execute("ANALYZE bars")
        _flush_stats(fs)
        before = _bars_scans(watch)
        info = fs.info()
        _flush_stats(fs)
        after = _bars_scans(watch)
        assert after == before, f"info() scanned bars: (seq, idx) {before} -> {after}"
        # the counters do move for a real read: the check above can see a scan
        fs.get_latest("S00")  # a point read, through the same pooled backend
        _flush_stats(fs)
        assert _bars_scans(watch) != after
    assert info["bars"] == {"rows_estimate": info["server"]["tables"]["bars"]["rows_estimate"],
                            "estimate_source": "statistics", "in_segments": 0}
    assert abs(info["bars"]["rows_estimate"] - 6000) <= 60  # ANALYZE read every page: within 1 %
    assert info["rows"]["entities"] == 20 and info["rows"]["feature_views"] == 1  # small tables: exact
    # more rows since the ANALYZE: the estimate follows the table's size, still without a scan
    fs.ingest(make_bars([f"T{i:02d}" for i in range(10)], 300))
    grown = fs.stats()["server"]["tables"]["bars"]
    assert grown["estimate_source"] == "statistics" and abs(grown["rows_estimate"] - 9000) <= 0.05 * 9000


def test_a_never_analyzed_large_table_is_estimated_from_its_size(one_backend_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fs, url = one_backend_store
    fs.ingest(make_bars(["AAA", "BBB"], 400))  # ANALYZE after the load: undo it below
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE relname = 'bars'")
    monkeypatch.setattr(client, "EXACT_COUNT_MAX_PAGES", 0)
    t = fs.stats()["server"]["tables"]["bars"]
    assert t["estimate_source"] == "size" and 400 <= t["rows_estimate"] <= 2000, t  # width-based: near, not exact
    monkeypatch.setattr(client, "EXACT_COUNT_MAX_PAGES", 1024)
    t = fs.stats()["server"]["tables"]["bars"]
    assert t == {**t, "estimate_source": "exact", "rows_estimate": 800}  # small: counted


def test_cli_marks_an_estimate(one_backend_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fs, url = one_backend_store
    fs.ingest(make_bars(["AAA", "BBB"], 1000))  # analyzed after the load
    text = url.render_as_string(hide_password=False)
    exact = CliRunner().invoke(cli, ["--url", text, "info"])
    assert exact.exit_code == 0 and re.search(r"^\s+bars:\s+2,000 rows, ", exact.output, re.MULTILINE), exact.output
    monkeypatch.setattr(client, "EXACT_COUNT_MAX_PAGES", 0)
    est = CliRunner().invoke(cli, ["--url", text, "info"])
    assert est.exit_code == 0, est.output
    assert re.search(r"^\s+bars:\s+~[\d,]+ rows \(estimate\), ", est.output, re.MULTILINE), est.output
    assert re.search(r"^\s+entities:\s+2 rows, ", est.output, re.MULTILINE), est.output  # small tables stay exact
