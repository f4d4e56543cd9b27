"""Test fixtures: one real PostgreSQL server per session, a fresh database per test module.

The server is the embedded one (started once, in a temporary home) unless
``FEATURESTORE_TEST_URL`` names another PostgreSQL (a maintenance database such as
``postgresql://user:pw@host:5432/postgres``; the tests create and drop databases on it).
The database is never mocked.

``pytest --citus`` runs the store's behavioural tests (``CITUS_SUITE``) on a real Citus cluster
instead: a coordinator and two workers on 127.0.0.1 (``tests/citus.py``, Citus built once per
machine), each test module's database migrated and distributed (``FeatureStore.distribute``)
before its tests see it. Tests marked ``single_node`` (PostgreSQL plan shapes, the embedded
server's own life cycle) do not apply there and are deselected.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import guards
import psycopg
import pytest
from sqlalchemy.engine import URL

from featurestore.config import libpq_url, normalize_url
from featurestore.embedded import EmbeddedServer

REPO_ROOT = Path(__file__).resolve().parent.parent

# no test may hang the suite (tests/guards.py; pytest-timeout in pyproject.toml covers the rest)
_no_thread_outlives_its_test = guards._no_thread_outlives_its_test
pytest_sessionfinish = guards.pytest_sessionfinish
pytest_unconfigure = guards.pytest_unconfigure


# the modules whose tests describe the store's behaviour, run again on Citus by `pytest --citus`
CITUS_SUITE = frozenset({
    "test_citus_store",
    "test_read",
    "test_load",
    "test_write",
    "test_export",
    "test_consistency",
    "test_training_known",
    "test_view_status",
    "test_latest_views",
    "test_async_store",
    "test_coalesce",
    "test_knowledge_time",
    "test_segments_store",
    "test_float32_views",
    "test_write_locks",
    "test_read_inputs",
    "test_row_numbers",
    "test_export_snapshot",
    "test_after_commit",
    "test_user_kernels",
    "test_stats",
})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--citus", action="store_true",
        help="run the store's behavioural tests on a local Citus cluster (coordinator + 2 workers, tests/citus.py)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--citus"):
        return
    keep, drop = [], []
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module is not None else ""
        (keep if module in CITUS_SUITE and item.get_closest_marker("single_node") is None else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def on_citus(config: pytest.Config) -> bool:
    return bool(config.getoption("--citus"))


@pytest.fixture(scope="session")
def citus_cluster(request: pytest.FixtureRequest) -> Iterator[object | None]:
    """The session's Citus cluster under ``--citus`` (else None)."""
    if not on_citus(request.config):
        yield None
        return
    from citus import Cluster

    with Cluster.start(workers=2) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg_admin_url(citus_cluster: object | None) -> Iterator[URL]:
    """URL of the session's server, connected to its maintenance database."""
    if citus_cluster is not None:
        yield normalize_url(citus_cluster.coordinator_url)  # type: ignore[attr-defined]
        return
    env = os.environ.get("FEATURESTORE_TEST_URL")
    if env:
        yield normalize_url(env)
        return
    # Not under pytest's shared temporary root: another pytest session on this machine resets that
    # root's permissions (and prunes old runs), which would take the data directory from under a
    # running server. A private mkdtemp directory (0700, short path for the unix socket) is ours alone.
    home = Path(tempfile.mkdtemp(prefix="fs-test-"))
    server = EmbeddedServer(home, cleanup="keep")
    try:
        url = server.start()
        yield url
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(pg_admin_url: URL, citus_cluster: object | None) -> EmbeddedServer | None:
    """The embedded server object when the tests run on it (None on FEATURESTORE_TEST_URL or Citus)."""
    if os.environ.get("FEATURESTORE_TEST_URL") or citus_cluster is not None:
        return None
    host = pg_admin_url.query.get("host")
    assert isinstance(host, str)
    return EmbeddedServer(Path(host).parent, cleanup="keep")


@pytest.fixture(scope="session")
def make_database(pg_admin_url: URL, citus_cluster: Any) -> Iterator[Callable[[str], URL]]:
    """Factory: create an empty database with a unique name; all are dropped at session end.
    On Citus the database comes migrated and distributed (empty of data)."""
    created: list[str] = []

    def make(prefix: str = "t") -> URL:
        name = f"fs_{prefix[:30]}_{uuid.uuid4().hex[:8]}".lower().replace("-", "_")
        if citus_cluster is not None:
            from featurestore.client import FeatureStore

            citus_cluster.new_database(name)
            created.append(name)
            url = pg_admin_url.set(database=name)
            with FeatureStore(url, auto_migrate=True) as fs:
                fs.distribute()
            return url
        with psycopg.connect(libpq_url(pg_admin_url), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        created.append(name)
        return pg_admin_url.set(database=name)

    yield make
    if citus_cluster is not None:
        for name in created:
            citus_cluster.drop_database(name)
        return
    with psycopg.connect(libpq_url(pg_admin_url), autocommit=True) as conn:
        for name in created:
            conn.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    psycopg.sql.Identifier(name)
                )
            )


@pytest.fixture(scope="module")
def db_url(make_database: Callable[[str], URL], request: pytest.FixtureRequest, citus_cluster: Any) -> Iterator[URL]:
    """A fresh, empty database for this test module (tests never see each other's data)."""
    url = make_database(request.module.__name__.rsplit(".", 1)[-1])
    yield url
    if citus_cluster is not None:  # each Citus database keeps daemons and connections on every node
        citus_cluster.drop_database(url.database)


@pytest.fixture(scope="module")
def store(db_url: URL) -> Iterator[object]:
    """A migrated FeatureStore on this module's database."""
    from featurestore.client import FeatureStore

    fs = FeatureStore(db_url, auto_migrate=True)
    yield fs
    fs.close()


@pytest.fixture()
def raw_conn(db_url: URL) -> Iterator[psycopg.Connection[object]]:
    """A plain autocommit psycopg connection to this module's database, outside any store."""
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        yield conn
