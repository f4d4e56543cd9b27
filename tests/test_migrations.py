"""Alembic owns the schema: one head, upgrade/downgrade round trips, no drift, works installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import REPO_ROOT
from sqlalchemy.engine import URL

from featurestore import migrate
from featurestore.client import FeatureStore
from featurestore.config import libpq_url
from featurestore.errors import ConfigError, NotFoundError, SchemaError
from featurestore.schema import is_view_table, metadata


def _tables(url: URL) -> set[str]:
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def test_one_head_and_linear_history() -> None:
    script = migrate._script()
    assert script.get_heads() == ["0006"]
    assert [s.revision for s in script.walk_revisions()] == ["0006", "0005", "0004", "0003", "0002", "0001"]


def test_head_read_from_the_sources_is_alembics() -> None:
    assert migrate._source_head() == migrate.head_revision() == migrate._script().get_heads()[0]


@pytest.mark.parametrize(
    ("scripts", "head"),
    [
        ({"a.py": 'revision = "1"\ndown_revision = None', "b.py": 'revision: str = "2"\ndown_revision: str | None = "1"'}, "2"),
        ({"a.py": 'revision = "1"\ndown_revision = None', "b.py": 'revision = "2"\ndown_revision = None'}, None),  # two heads
        ({"a.py": 'revision = "1"\ndown_revision = None', "m.py": 'revision = "3"\ndown_revision = ("1", "2")'}, None),
        ({"a.py": 'revision = "1"\ndown_revision = None', "b.py": 'revision = "2"\ndown_revision = "1"\ndepends_on = "1"'}, None),
        ({"a.py": 'revision = make_id()\ndown_revision = None'}, None),  # not a literal
        ({"a.py": "down_revision = None"}, None),  # no revision
        ({"a.py": "revision = (\n"}, None),  # not Python
        ({"a.py": 'revision = "1"\ndown_revision = None', "b.py": 'revision = "1"\ndown_revision = None'}, None),
    ],
)
def test_head_from_sources_leaves_anything_unusual_to_alembic(tmp_path: Path, scripts: dict[str, str], head: str | None) -> None:
    for name, text in scripts.items():
        (tmp_path / name).write_text(text + "\n")
    assert migrate._parse_head([tmp_path / name for name in sorted(scripts)]) == head


def test_current_revision_reads_what_alembic_reads(make_database: Callable[[str], URL]) -> None:
    url = make_database("current")
    engine = sa.create_engine(url, poolclass=sa.NullPool)

    def both() -> tuple[str | None, str | None]:
        with engine.connect() as conn:
            heads = MigrationContext.configure(conn).get_current_heads()
            return migrate.current_revision(conn), (heads[0] if heads else None)

    assert both() == (None, None)  # no version table
    migrate.upgrade(engine, "0002")
    assert both() == ("0002", "0002")
    migrate.upgrade(engine, "head")
    assert both() == ("0006", "0006")
    migrate.upgrade(engine, "head")  # at the head already: nothing runs, nothing changes
    assert both() == ("0006", "0006")
    migrate.downgrade(engine, "base")
    assert both() == (None, None)  # the version table stays, empty
    engine.dispose()


def test_upgrade_downgrade_upgrade_keeps_data(make_database: Callable[[str], URL]) -> None:
    url = make_database("mig")
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    migrate.upgrade(engine, "head")
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("INSERT INTO entities (symbol) VALUES ('AAA'), ('BBB')")
        conn.execute("INSERT INTO entity_keys SELECT entity_id FROM entities")
        conn.execute(
            "INSERT INTO bars SELECT 1, 0, t, 1, 2, 0.5, 1.5, 10 "
            "FROM generate_series('2024-01-01'::timestamptz, '2024-01-10', '1 day') t"
        )
        conn.execute("INSERT INTO feature_views (name, version, spec, table_name) VALUES ('v', 1, '{}', 'fv_v_v1')")
        conn.execute("CREATE TABLE fv_v_v1 (entity_id int4, load_id int4, ts timestamptz, PRIMARY KEY (entity_id, ts))")
    # down to 0001: the registry (and its view tables) go, bars and entities survive
    migrate.downgrade(engine, "0001")
    assert _tables(url) == {"alembic_version", "entities", "bars"}
    with psycopg.connect(libpq_url(url)) as conn:
        assert conn.execute("SELECT count(*) FROM bars").fetchone() == (10,)
        assert conn.execute("SELECT count(*) FROM entities").fetchone() == (2,)
    migrate.upgrade(engine, "head")
    with psycopg.connect(libpq_url(url)) as conn:
        assert conn.execute("SELECT count(*) FROM bars").fetchone() == (10,)
        seeded, now_us = conn.execute(
            "SELECT generation, (extract(epoch FROM clock_timestamp()) * 1000000)::int8 FROM store_state"
        ).fetchone()
        assert 0 < now_us - seeded < 600 * 10**6  # seeded with its creation time (µs), not 0
    # down to base: everything goes; up again from empty works
    migrate.downgrade(engine, "base")
    assert _tables(url) == {"alembic_version"}
    migrate.upgrade(engine, "head")
    assert {"entities", "bars", "feature_views", "indicator_state", "loads", "store_state"} <= _tables(url)
    engine.dispose()


def test_models_and_migrations_do_not_drift(make_database: Callable[[str], URL]) -> None:
    url = make_database("drift")
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    migrate.upgrade(engine, "head")
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TABLE fv_ignored_v1 (entity_id int4 PRIMARY KEY)"))
        conn.commit()

        def include(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
            return not (type_ == "table" and (is_view_table(name) or name == "alembic_version"))

        ctx = MigrationContext.configure(
            conn,
            opts={"include_object": include, "compare_type": True, "compare_server_default": True},
        )
        diff = compare_metadata(ctx, metadata)
    engine.dispose()
    assert diff == [], diff


def test_store_on_empty_database_says_migrate(make_database: Callable[[str], URL]) -> None:
    url = make_database("empty")
    with pytest.raises(SchemaError, match="featurestore migrate"):
        FeatureStore(url)
    with FeatureStore(url, auto_migrate=True) as fs:
        assert fs.schema_revision == migrate.head_revision()


def test_store_refuses_newer_schema(make_database: Callable[[str], URL]) -> None:
    url = make_database("newer")
    with FeatureStore(url, auto_migrate=True):
        pass
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaError, match="newer than this featurestore"):
        FeatureStore(url)


def test_store_on_older_schema_says_migrate(make_database: Callable[[str], URL]) -> None:
    url = make_database("older")
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    migrate.upgrade(engine, "0002")
    engine.dispose()
    with pytest.raises(SchemaError, match="older than this featurestore"):
        FeatureStore(url)
    with FeatureStore(url, check_schema=False) as fs:
        assert fs.migrate() == "0006"


def test_unknown_revision_is_a_clear_error(make_database: Callable[[str], URL]) -> None:
    url = make_database("unknown")
    with FeatureStore(url, auto_migrate=True) as fs, pytest.raises(NotFoundError, match="known: 0006"):
        fs.migrate("abc")


def test_concurrent_migrations_serialize(make_database: Callable[[str], URL]) -> None:
    url = make_database("concurrent")
    code = (
        "import sys, sqlalchemy as sa; from featurestore import migrate; "
        "e = sa.create_engine(sys.argv[1], poolclass=sa.NullPool); migrate.upgrade(e, 'head')"
    )
    target = url.render_as_string(hide_password=False)
    procs = [subprocess.Popen([sys.executable, "-c", code, target]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with psycopg.connect(libpq_url(url)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0006",)]


def test_alembic_cli_from_repo_root(make_database: Callable[[str], URL]) -> None:
    url = make_database("cli")
    env = dict(os.environ, FEATURESTORE_URL=url.render_as_string(hide_password=False))
    out = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert {"bars", "entities", "store_state"} <= _tables(url)


def test_wheel_ships_the_migrations_and_every_module(tmp_path: Path) -> None:
    # build from a clean copy of the sources: setuptools reuses a checkout's build/ directory,
    # which can hold modules the package list no longer (or not yet) names
    src = tmp_path / "src"
    shutil.copytree(REPO_ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", "tests", "benchmarks", ".*cache*", ".hypothesis"))
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("featurestore-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "featurestore/migrations/env.py",
        "featurestore/migrations/script.py.mako",
        "featurestore/migrations/versions/0001_entities_bars.py",
        "featurestore/migrations/versions/0003_loads_generation.py",
        "featurestore/migrations/versions/0004_knowledge_time.py",
    ):
        assert expected in names
    # every module of the package tree (subpackages such as cache/, read/, load/ included)
    package = REPO_ROOT / "featurestore"
    modules = {f"featurestore/{p.relative_to(package).as_posix()}" for p in package.rglob("*.py")}
    assert modules and not modules - names, sorted(modules - names)


def _bars_of(fs: FeatureStore, symbol: str) -> int:
    return len(fs.get_bars(symbol))


@pytest.mark.parametrize("consistency", ["local", "strict", "notify"])
def test_migrations_drop_cached_results(make_database: Callable[[str], URL], consistency: str) -> None:
    """After downgrade("base") and migrate() a read must not come from the cache (issue 11 item 10)."""
    from helpers import make_bars

    url = make_database("migcache")
    with FeatureStore(url, auto_migrate=True, cache="lru", consistency=consistency) as fs:
        fs.ingest(make_bars(["AAA"], 30, seed=1))  # generation 1
        assert _bars_of(fs, "AAA") == 30  # cached, computed at generation 1
        assert fs.downgrade("base") == "base"
        assert fs.migrate() == migrate.head_revision()
        fs.ingest(make_bars(["BBB"], 5, seed=2))  # generation 1 again, and it does not touch AAA
        assert _bars_of(fs, "AAA") == 0  # the store is empty of AAA now; before the fix: 30, cached
        assert _bars_of(fs, "BBB") == 5


def test_migrations_tell_listening_stores(make_database: Callable[[str], URL]) -> None:
    """A store in another process (here: another store) with consistency="notify" drops its cache too."""
    from helpers import make_bars

    url = make_database("migpeer")
    with FeatureStore(url, auto_migrate=True, cache=None) as admin, FeatureStore(
        url, cache="lru", consistency="notify"
    ) as peer:
        admin.ingest(make_bars(["AAA"], 30, seed=1))
        for _ in range(2000):  # the peer hears of the load (bounded wait, no timing assumption)
            if _bars_of(peer, "AAA") == 30:
                break
            threading.Event().wait(0.01)
        assert _bars_of(peer, "AAA") == 30
        admin.downgrade("base")
        admin.migrate()
        for _ in range(2000):
            if _bars_of(peer, "AAA") == 0:
                break
            threading.Event().wait(0.01)
        assert _bars_of(peer, "AAA") == 0


@pytest.mark.parametrize("cache", [None, "lru"])
def test_consistency_is_validated_even_without_a_cache(db_url: URL, cache: str | None) -> None:
    with pytest.raises(ConfigError, match=r"consistency must be one of 'local', 'notify', 'strict', got 'strcit'"):
        FeatureStore(db_url, auto_migrate=True, cache=cache, consistency="strcit")


def test_strict_peers_never_see_a_repeated_generation(make_database: Callable[[str], URL]) -> None:
    """downgrade("base") + upgrade re-creates store_state: its generation must not repeat an old one."""
    from helpers import make_bars

    url = make_database("migstrict")
    with FeatureStore(url, auto_migrate=True, cache=None) as admin, FeatureStore(
        url, cache="lru", consistency="strict"
    ) as peer:
        admin.ingest(make_bars(["AAA"], 30, seed=1))
        assert _bars_of(peer, "AAA") == 30  # cached by the peer at the current generation
        admin.downgrade("base")
        admin.migrate()
        admin.ingest(make_bars(["BBB"], 5, seed=2))  # one write, as before the downgrade
        assert _bars_of(peer, "AAA") == 0  # the strict peer must not serve its old entry
        assert _bars_of(peer, "BBB") == 5
