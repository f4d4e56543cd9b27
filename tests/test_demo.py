"""The main job: `featurestore demo` runs end to end, is idempotent, and reports true numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import URL

from featurestore.cli import cli
from featurestore.demo import generate_bars, run_demo


def test_generated_bars_are_valid_and_clustered() -> None:
    df = generate_bars(20, 800, seed=3)
    assert len(df) == 16_000 and df["ts"].dt.tz is not None
    assert (df["high"] >= df[["open", "close"]].max(axis=1)).all()
    assert (df["low"] <= df[["open", "close"]].min(axis=1)).all() and (df["low"] > 0).all()
    # volatility clustering: squared returns are autocorrelated (they are not for i.i.d. noise)
    r = np.log(df[df.symbol == "SYM0000"]["close"].to_numpy())
    r2 = np.diff(r) ** 2
    assert np.corrcoef(r2[:-1], r2[1:])[0, 1] > 0.05


def _step(report: Any, name: str) -> dict[str, Any]:
    return next(s for s in report.steps if s["step"].strip() == name)


def test_demo_runs_twice_idempotently(make_database: Any) -> None:
    url: URL = make_database("demo")
    first = run_demo(url=url.render_as_string(hide_password=False), symbols=30, days=300, progress=False)
    ingest = _step(first, "ingest history")
    assert ingest["inserted"] == 9000 and ingest["features"] == 9000
    assert _step(first, "append one day")["inserted"] == 30
    assert _step(first, "correct one old bar")["updated"] == 1
    assert _step(first, "range read, 100 symbols x 1 year")["rows"] > 0
    assert _step(first, "latest, all symbols")["rows"] == 30
    assert _step(first, "training frame, 100k events")["rows"] == 100_000
    assert first.facts["cache hit ratio"] > 0 and first.facts["bars stored"] == 9030
    second = run_demo(url=url.render_as_string(hide_password=False), symbols=30, days=300, progress=False)
    # the second run's history reload only reverts the bar the first run corrected; then it
    # corrects it again: the end state is the same
    assert _step(second, "ingest history")["inserted"] == 0
    assert _step(second, "ingest history")["updated"] == 1
    assert _step(second, "ingest history")["unchanged"] == 8999
    assert _step(second, "append one day")["inserted"] == 0
    assert second.facts["bars stored"] == 9030
    text = second.render()
    assert "training frame" in text and "cache hit ratio" in text


def test_demo_cli_on_its_own_embedded_home_and_clean(tmp_path: Path) -> None:
    home = tmp_path / "demo-home"
    runner = CliRunner()
    out = runner.invoke(cli, ["demo", "--home", str(home), "--symbols", "5", "--days", "120", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["home"] == str(home) and (home / "pgdata" / "PG_VERSION").exists()
    cleaned = runner.invoke(cli, ["demo", "--home", str(home), "--clean"])
    assert cleaned.exit_code == 0 and "removed" in cleaned.output and not home.exists()
    assert "no demo data" in runner.invoke(cli, ["demo", "--home", str(home), "--clean"]).output


def test_stats_report_memory_pool_cache_server_and_last_load(store: Any) -> None:
    from helpers import make_bars

    store.ingest(make_bars(["AAA"], 50))
    store.get_bars("AAA")
    store.get_bars("AAA")
    st = store.stats()
    assert st["process"]["rss_bytes"] > 0 and st["process"]["peak_rss_bytes"] >= st["process"]["rss_bytes"]
    assert st["pool"]["size"] == 5 and st["pool"]["checked_out"] == 0
    assert st["cache"]["hits"] >= 1 and st["cache"]["hit_ratio"] > 0
    assert st["server"]["rows"]["bars"] >= 50 and st["server"]["database_bytes"] > 0
    assert st["server"]["tables"]["bars"]["index_bytes"] > 0
    assert st["last_load"]["inserted"] == 50 and st["last_load"]["peak_rss_bytes"] > 0


@pytest.mark.parametrize("flag", ["--json", None])
def test_info_prints_stats(store: Any, db_url: URL, flag: str | None) -> None:
    args = ["--url", db_url.render_as_string(hide_password=False), "info"] + ([flag] if flag else [])
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    if flag:
        facts = json.loads(out.output)
        assert {"process", "pool", "cache", "server"} <= set(facts)
    else:
        assert "hit_ratio" in out.output and "rss_bytes" in out.output
