"""The Citus test cluster (tests/citus.py) works: built from the vendored release, a coordinator and
two workers on 127.0.0.1, a database with Citus on every node, reference and distributed tables
written with binary COPY through the coordinator, router and multi-shard plans.

The first run on a machine builds Citus (about a minute on 2 cores; cached after that).
Deselect with ``-m "not citus"``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from citus import Cluster

pytestmark = [pytest.mark.citus, pytest.mark.timeout(900)]  # a cold build takes minutes


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster.start(workers=2)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def db(cluster: Cluster) -> Iterator[str]:
    name = f"fs_citus_{uuid.uuid4().hex[:8]}"
    url = cluster.new_database(name)
    try:
        yield url
    finally:
        cluster.drop_database(name)


def _connect(url: str) -> psycopg.Connection[Any]:
    # no statement may hang the test: a server-side limit besides pytest-timeout
    return psycopg.connect(url, autocommit=True, connect_timeout=30, options="-c statement_timeout=60s")


def _job(conn: psycopg.Connection[Any], query: str) -> dict[str, Any]:
    """The Citus part of ``EXPLAIN (FORMAT JSON) query``: its plan's top node must be Citus's scan."""
    row = conn.execute("EXPLAIN (FORMAT JSON) " + query).fetchone()
    assert row is not None
    plan = row[0][0]["Plan"]
    assert plan["Node Type"] == "Custom Scan" and plan["Custom Plan Provider"] == "Citus Adaptive", plan
    job: dict[str, Any] = plan["Distributed Query"]["Job"]
    return job


def test_the_cluster_has_two_workers_in_a_new_database(cluster: Cluster, db: str) -> None:
    assert db.startswith("postgresql://postgres@127.0.0.1:") and len(cluster.worker_urls) == 2
    with _connect(db) as conn:
        workers = conn.execute("SELECT node_name, node_port FROM citus_get_active_worker_nodes() ORDER BY 2").fetchall()
        assert sorted(workers) == sorted(("127.0.0.1", int(u.split(":")[-1].split("/")[0])) for u in cluster.worker_urls)
        groups = conn.execute("SELECT groupid FROM pg_dist_node WHERE isactive ORDER BY 1").fetchall()
        assert [g for (g,) in groups] == [0, 1, 2]  # the coordinator (group 0) is in the metadata too
    for url in cluster.worker_urls:  # the database and the extension exist on every worker
        with _connect(url.rsplit("/", 1)[0] + "/" + db.rsplit("/", 1)[1]) as conn:
            assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'citus'").fetchone() is not None


def test_reference_and_distributed_tables_with_binary_copy(db: str) -> None:
    rows = [(k, f"v{k}", k / 4) for k in range(1, 2001)]
    with _connect(db) as conn:
        conn.execute("CREATE TABLE ref (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("SELECT create_reference_table('ref')")
        conn.execute("CREATE TABLE t (k bigint NOT NULL, v text, x float8)")
        conn.execute("SELECT create_distributed_table('t', 'k')")
        with conn.cursor() as cur:
            with cur.copy("COPY ref (id, name) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["int4", "text"])
                for i in range(10):
                    cp.write_row((i, f"n{i}"))
            with cur.copy("COPY t (k, v, x) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["int8", "text", "float8"])
                for r in rows:
                    cp.write_row(r)
        assert conn.execute("SELECT k, v, x FROM t ORDER BY k").fetchall() == rows
        assert conn.execute("SELECT v FROM t WHERE k = 1").fetchall() == [("v1",)]
        joined = conn.execute("SELECT count(*) FROM t JOIN ref ON ref.id = t.k % 10").fetchone()
        assert joined == (len(rows),)
        # the rows are spread over the workers' shards, the reference table copied to every node
        placed = conn.execute(
            "SELECT s.logicalrelid::text, count(DISTINCT p.groupid) FROM pg_dist_shard s "
            "JOIN pg_dist_placement p USING (shardid) GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert placed == [("ref", 3), ("t", 2)]


def test_router_and_multi_shard_plans(db: str) -> None:
    with _connect(db) as conn:
        conn.execute("CREATE TABLE t (k bigint NOT NULL, v text)")
        conn.execute("SELECT create_distributed_table('t', 'k')")
        conn.execute("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g")
        shards = conn.execute("SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 't'::regclass").fetchone()
        assert shards is not None and shards[0] == int(conn.execute("SHOW citus.shard_count").fetchone()[0])  # type: ignore[index]
        assert _job(conn, "SELECT * FROM t WHERE k = 1")["Task Count"] == 1  # a router plan: one shard
        assert _job(conn, "SELECT * FROM t")["Task Count"] == shards[0]  # every shard


def test_databases_are_independent_and_dropped_everywhere(cluster: Cluster) -> None:
    name = f"fs_citus_{uuid.uuid4().hex[:8]}"
    url = cluster.new_database(name)
    with _connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM citus_get_active_worker_nodes()").fetchone() == (2,)
    cluster.drop_database(name)
    for node_url in [cluster.coordinator_url, *cluster.worker_urls]:
        with _connect(node_url) as conn:
            assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone() == (0,)


def test_the_cluster_of_a_killed_session_is_reaped_by_the_next() -> None:
    import subprocess
    import sys
    from pathlib import Path

    import psutil

    here = Path(__file__).resolve().parent
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from citus import Cluster; c = Cluster.start(workers=1); "
        "print(c.dir, flush=True); import time; time.sleep(300)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(here)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        orphan = Path(proc.stdout.readline().strip())
        assert (orphan / "coordinator" / "data" / "postmaster.pid").exists()
        pid = int((orphan / "coordinator" / "data" / "postmaster.pid").read_text().split()[0])
    finally:
        proc.kill()  # SIGKILL: no clean-up runs, the servers stay up
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert psutil.pid_exists(pid)
    with Cluster.start(workers=1) as c:  # the next session stops and removes them first
        assert not orphan.exists()
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert c.dir.exists()
