"""The main job: `featurestore demo` runs end to end, is idempotent, and reports true numbers."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
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
    # a second run changes nothing and says so: its history reload keeps the stored bars (the
    # corrected one included) and its correction is already applied
    for name in ("ingest history", "append one day", "correct one old bar"):
        assert _step(second, name).get("inserted", 0) == 0 and _step(second, name).get("updated", 0) == 0, name
    assert _step(second, "correct one old bar")["recomputed"] == 0
    assert second.facts["bars stored"] == 9030
    text = second.render()
    assert "training frame" in text and "cache hit ratio" in text


@pytest.fixture()
def private_dir() -> Iterator[Path]:
    """A directory outside pytest's shared temporary root (another session may reset that root)."""
    path = Path(tempfile.mkdtemp(prefix="fs-demo-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_demo_cli_on_its_own_embedded_home_and_clean(private_dir: Path) -> None:
    home = private_dir / "demo-home"
    runner = CliRunner()
    out = runner.invoke(cli, ["demo", "--home", str(home), "--symbols", "5", "--days", "120", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)  # the step lines go to stderr
    assert report["home"] == f"embedded server, data in {home.resolve() / 'pgdata'}"
    assert (home / "pgdata" / "PG_VERSION").exists()
    refused = runner.invoke(cli, ["demo", "--home", str(home), "--clean"])  # no terminal, no --yes
    assert refused.exit_code == 2 and home.exists()
    cleaned = runner.invoke(cli, ["demo", "--home", str(home), "--clean", "--yes"])
    assert cleaned.exit_code == 0 and "removed" in cleaned.output and not home.exists()
    assert "no demo data" in runner.invoke(cli, ["demo", "--home", str(home), "--clean", "--yes"]).output


def test_demo_never_touches_featurestore_url_and_uses_featurestore_home(
    make_database: Any, private_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg
    from helpers import fingerprint

    from featurestore.client import FeatureStore
    from featurestore.config import libpq_url

    url = make_database("demo_env")
    with FeatureStore(url.render_as_string(hide_password=False), auto_migrate=True):
        pass

    def fp() -> Any:
        with psycopg.connect(libpq_url(url)) as conn:
            return fingerprint(conn)

    before = fp()
    home = private_dir / "fs-home"
    monkeypatch.setenv("FEATURESTORE_URL", url.render_as_string(hide_password=False))
    monkeypatch.setenv("FEATURESTORE_HOME", str(home))
    runner = CliRunner()
    out = runner.invoke(cli, ["demo", "--symbols", "4", "--days", "80"])
    assert out.exit_code == 0, out.output
    assert fp() == before  # the environment's database was not migrated, loaded or given a view
    where = f"embedded server, data in {home.resolve() / 'pgdata'}"
    assert out.output.splitlines()[0] == f"demo data: {where}"  # said first, before the slow steps
    assert f"featurestore demo — {where}" in out.output
    assert (home / "pgdata" / "PG_VERSION").exists()
    assert "opening the store" in out.output and "loading the indicator kernels" in out.output
    cleaned = runner.invoke(cli, ["demo", "--clean", "--yes"])
    assert cleaned.exit_code == 0 and not home.exists()


def test_stats_report_memory_pool_cache_server_and_last_load(store: Any) -> None:
    from helpers import make_bars

    store.ingest(make_bars(["AAA"], 50))
    store.get_bars("AAA")
    store.get_bars("AAA")
    st = store.stats()
    assert st["process"]["rss_bytes"] > 0 and st["process"]["peak_rss_bytes"] >= st["process"]["rss_bytes"]
    assert st["pool"]["size"] == 5 and st["pool"]["checked_out"] == 0
    assert st["cache"]["hits"] >= 1 and st["cache"]["hit_ratio"] > 0
    assert st["server"]["tables"]["bars"]["rows_estimate"] >= 50 and st["server"]["database_bytes"] > 0
    assert st["server"]["tables"]["bars"]["estimate_source"] == "exact"  # a small table is counted
    assert st["server"]["rows"]["entities"] >= 1 and "bars" not in st["server"]["rows"]
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
        assert re.search(r"^\s+hit ratio:\s+[\d.]+ %$", out.output, re.MULTILINE), out.output
        assert re.search(r"^\s+rss:\s+[\d.,]+ (MiB|GiB)$", out.output, re.MULTILINE), out.output
