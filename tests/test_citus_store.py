"""The store on a real Citus cluster (issue 16): ``distribute`` and what it places where.

A coordinator and two workers on 127.0.0.1 (``tests/citus.py``; the session's cluster under
``pytest --citus``, else one started for this module). Oracles: Citus's own catalog
(``pg_dist_partition``: kind and colocation of every table) and plain PostgreSQL's answer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pandas as pd
import psycopg
import pytest
from click.testing import CliRunner
from helpers import make_bars
from sqlalchemy.engine import URL

from featurestore import ConfigError, FeatureStore
from featurestore.cli import cli
from featurestore.config import libpq_url, normalize_url

pytestmark = pytest.mark.citus

PER_SYMBOL = {"bars", "bars_history", "bars_segments", "indicator_state", "indicator_checkpoints", "entity_keys"}
SHARED = {"entities", "feature_views", "loads", "store_state"}


@pytest.fixture(scope="module")
def cluster(citus_cluster: Any) -> Iterator[Any]:
    if citus_cluster is not None:
        yield citus_cluster
        return
    from citus import Cluster

    with Cluster.start(workers=2) as c:
        yield c


def _fresh(cluster: Any) -> URL:
    """A new database on the cluster, Citus enabled, not yet migrated."""
    name = f"fs_place_{uuid.uuid4().hex[:8]}"
    cluster.new_database(name)
    return normalize_url(cluster.coordinator_url).set(database=name)


def _catalog(url: URL) -> dict[str, tuple[str, int]]:
    """table -> (partition method, colocation id) from Citus's catalog."""
    with psycopg.connect(libpq_url(url)) as c:
        rows = c.execute(
            "SELECT logicalrelid::regclass::text, partmethod, colocationid FROM pg_dist_partition"
        ).fetchall()
    return {name: (method, coloc) for name, method, coloc in rows}


def test_distribute_places_every_table(cluster: Any) -> None:
    url = _fresh(cluster)
    with FeatureStore(url, auto_migrate=True, cache=None) as fs:
        placed = fs.distribute(shard_count=4)
        assert placed["distributed"] and placed["workers"] == 2 and placed["shard_count"] == 4
        cat = _catalog(url)
        assert {t for t, (m, _) in cat.items() if m == "n"} == SHARED
        assert {t for t, (m, _) in cat.items() if m == "h"} == PER_SYMBOL
        assert len({cat[t][1] for t in PER_SYMBOL}) == 1  # one colocation group
        assert "alembic_version" not in cat  # the coordinator's own
        assert fs.distribute() == placed  # idempotent
        assert fs.info()["placement"] == placed

        # a view made later is distributed and colocated with bars as it is created
        fs.create_view("later", ["sma_3"], progress=False)
        cat = _catalog(url)
        view_tables = {t for t in cat if t.startswith("fv_later_v1")}
        assert view_tables == {"fv_later_v1", "fv_later_v1_h", "fv_later_v1_s"}
        assert {cat[t] for t in view_tables} == {cat["bars"]}


def test_migrations_keep_working_on_a_distributed_store(cluster: Any) -> None:
    url = _fresh(cluster)
    with FeatureStore(url, auto_migrate=True, cache=None) as fs:
        fs.distribute(shard_count=4)
        fs.create_view("m", ["sma_3"], progress=False)
        before = _catalog(url)
        assert fs.downgrade("0004") == "0004"
        cat = _catalog(url)
        assert not {"bars_segments", "fv_m_v1_s", "entity_keys"} & set(cat)  # 0005's and 0006's tables are gone
        assert fs.migrate() == fs.schema_revision == "0006"
        after = _catalog(url)
        assert {t: m for t, (m, _) in after.items()} == {t: m for t, (m, _) in before.items()}
        assert after["bars_segments"][1] == after["bars"][1] == after["fv_m_v1_s"][1]
        # across 0004, which rebuilds bars and every view table: data kept, the store stays distributed
        fs.ingest(make_bars(["AAA", "BBB"], 50), progress=False)
        want = fs.get_features(["AAA", "BBB"], view="m", include_bars=True)
        assert fs.downgrade("0003") == "0003"
        older = _catalog(url)  # the tables 0003 has, each placed as before (bars rebuilt, distributed again)
        assert {"bars", "entities", "fv_m_v1"} <= set(older) and all(before[t][0] == m for t, (m, _) in older.items())
        assert fs.migrate() == "0006"
        again = _catalog(url)
        assert {t: m for t, (m, _) in again.items()} == {t: m for t, (m, _) in before.items()}
        assert len({again[t][1] for t in again if again[t][0] == "h"}) == 1  # still one colocation group
        assert fs.info()["placement"]["shard_count"] == 4
        pd.testing.assert_frame_equal(fs.get_features(["AAA", "BBB"], view="m", include_bars=True), want)
        # to base (no table left) and back: a new, empty store on the coordinator
        assert fs.downgrade("base") == "base"
        assert fs.migrate() == "0006"
        assert fs.get_bars(["AAA"]).empty


def test_cli_distribute(cluster: Any) -> None:
    url = _fresh(cluster)
    with FeatureStore(url, auto_migrate=True, cache=None):
        pass
    result = CliRunner().invoke(cli, ["--url", url.render_as_string(hide_password=False), "distribute", "--shard-count", "2", "--json"])
    assert result.exit_code == 0, result.output
    placed = json.loads(result.output)
    assert placed["shard_count"] == 2 and placed["tables"]["bars"] == "distributed"
    result = CliRunner().invoke(cli, ["--url", url.render_as_string(hide_password=False), "distribute"])
    assert result.exit_code == 0, result.output
    assert "2 worker(s), 2 shards per table" in result.output


@pytest.mark.single_node
def test_distribute_refuses_on_plain_postgresql(db_url: URL) -> None:
    with FeatureStore(db_url, auto_migrate=True, cache=None) as fs:
        with pytest.raises(ConfigError, match="plain PostgreSQL"):
            fs.distribute()
        assert fs.info()["placement"] == {"citus": None, "distributed": False}


def _tasks(conn: Any, query: str, params: Any = None) -> tuple[int, set[str]]:
    """(Citus task count, the nodes the tasks run on) from EXPLAIN (FORMAT JSON)."""
    plan = conn.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchone()[0]

    def walk(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            yield node
            for v in node.values():
                yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)

    jobs = [n for n in walk(plan) if "Task Count" in n]
    assert jobs, plan
    nodes = {str(n["Node"]) for n in walk(plan) if "Node" in n}
    return int(jobs[0]["Task Count"]), nodes


def test_one_symbol_reads_are_routed_and_many_symbols_run_on_every_worker(cluster: Any) -> None:
    import datetime as dt

    import numpy as np
    from helpers import make_bars

    from featurestore.read.sql import latest_one_sql, range_sql, render

    url = _fresh(cluster)
    symbols = [f"R{i:02d}" for i in range(24)]
    with FeatureStore(url, auto_migrate=True, cache=None) as fs:
        fs.distribute(shard_count=8)
        fs.ingest(make_bars(symbols, 30, seed=4), progress=False, create_symbols=True)
        table = fs.create_view("r", ["sma_3"], progress=False).table_name
        # the store's own one-symbol latest read answers as on one server
        assert fs.get_latest("R03", view="r", as_dict=True)[0]["symbol"] == "R03"
    with psycopg.connect(libpq_url(url)) as c:
        ids = np.array([r[0] for r in c.execute("SELECT entity_id FROM entities ORDER BY 1")], dtype=np.int32)
        window = {"start": dt.datetime(2000, 1, 1, tzinfo=dt.UTC), "end": dt.datetime(2100, 1, 1, tzinfo=dt.UTC)}
        # one symbol: a router plan (one task)
        assert _tasks(c, render(range_sql(table, ["close"], ["sma_3"]), {"ids": ids[:1], **window}))[0] == 1
        one = latest_one_sql(table, ["close"], ["sma_3"], by_id=True)
        assert _tasks(c, one, {"entity": int(ids[0]), "as_of": window["end"]})[0] == 1
        # every symbol: one task per shard holding any of them, on both workers (the adaptive
        # executor runs them in parallel)
        c.execute("SET citus.explain_all_tasks = on")
        count, nodes = _tasks(c, render(range_sql(table, ["close"], ["sma_3"]), {"ids": ids, **window}))
        assert 2 <= count <= 8
        assert len(nodes) == 2, nodes  # "host=127.0.0.1 port=... dbname=...", one per worker


def test_stats_count_the_shards(cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """info/stats on Citus read the shards' catalog (the coordinator's has no rows of a
    distributed table): estimates near the truth without a count, bytes summed over the shards."""
    from featurestore import client

    url = _fresh(cluster)
    with FeatureStore(url, auto_migrate=True, cache=None) as fs:
        fs.distribute(shard_count=4)
        fs.ingest(make_bars([f"S{i:02d}" for i in range(20)], 300), progress=False)  # 6,000 bars
        exact = fs.stats()["server"]
        assert exact["tables"]["bars"]["rows_estimate"] == 6000 and exact["tables"]["bars"]["estimate_source"] == "exact"
        assert exact["tables"]["bars"]["table_bytes"] > 0 and exact["tables"]["bars"]["index_bytes"] > 0
        assert exact["rows"]["entities"] == 20
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            one_node = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
        assert exact["database_bytes"] > one_node  # the workers' share is counted
        monkeypatch.setattr(client, "EXACT_COUNT_MAX_PAGES", 0)  # every table large: estimated
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute("ANALYZE bars")  # propagated to every shard
        est = fs.info()["bars"]
        assert est["estimate_source"] == "statistics" and abs(est["rows_estimate"] - 6000) <= 60, est
