"""Run the packaged Alembic migrations in code, and check a database's schema revision.

The scripts live in the top-level ``migrations/`` folder, which the build maps into the wheel as
``featurestore.migrations``; the Alembic ``Config`` is built here, so no ini file is needed.

Alembic is imported only when a migration runs or a revision must be looked up: opening a store
whose schema is already at the head (``featurestore info`` and every other command) reads the
head from the scripts' source text and the current revision with one query.
"""

from __future__ import annotations

import ast
import os
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from featurestore.errors import NotFoundError, SchemaError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = ["alembic_config", "head_revision", "current_revision", "upgrade", "downgrade", "check_schema"]

# the script files Alembic reads in versions/ (its own pattern: no __init__, no editor lock files)
_SCRIPT_FILE = re.compile(r"(?!\.\#|__init__)(.*\.py)$")


def _script_location() -> Path:
    return Path(str(resources.files("featurestore.migrations")))


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic Config for the packaged scripts, optionally bound to ``connection``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_script_location()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def _literal_revisions(path: Path) -> tuple[str, tuple[str, ...]] | None:
    """A script's ``revision`` and its ``down_revision`` (as a tuple), read from its source; None if
    either is not a plain literal at module level, or the script has a ``depends_on``."""
    found: dict[str, object] = {}
    try:
        body = ast.parse(path.read_bytes(), filename=str(path)).body
    except (OSError, SyntaxError, ValueError):  # Alembic reports it when it loads the script
        return None
    for node in body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision", "depends_on"):
            try:
                found[target.id] = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError):
                return None
    revision, down = found.get("revision"), found.get("down_revision")
    if not isinstance(revision, str) or found.get("depends_on") is not None:
        return None
    if down is None:
        return revision, ()
    if isinstance(down, str):
        return revision, (down,)
    if isinstance(down, (tuple, list)) and all(isinstance(d, str) for d in down):
        return revision, tuple(down)
    return None


# the last _source_head answer, keyed by the script files' names, sizes and modification times
_head_memo: tuple[object, str | None] | None = None


def _source_head() -> str | None:
    """The single head of the packaged scripts read from their source text, without Alembic;
    None when the scripts are not that simple (then Alembic decides)."""
    global _head_memo
    versions = _script_location() / "versions"
    try:
        files = sorted(
            (entry.name, entry.stat().st_size, entry.stat().st_mtime_ns)
            for entry in os.scandir(versions)
            if _SCRIPT_FILE.match(entry.name) and entry.is_file()
        )
    except OSError:
        return None
    if _head_memo is not None and _head_memo[0] == files:
        return _head_memo[1]
    head = _parse_head([versions / name for name, _, _ in files])
    _head_memo = (files, head)
    return head


def _parse_head(paths: list[Path]) -> str | None:
    revisions: dict[str, tuple[str, ...]] = {}
    for path in paths:
        parsed = _literal_revisions(path)
        if parsed is None or parsed[0] in revisions:
            return None
        revisions[parsed[0]] = parsed[1]
    referenced = {down for downs in revisions.values() for down in downs}
    if not referenced <= revisions.keys():
        return None
    heads = [rev for rev in revisions if rev not in referenced]
    return heads[0] if len(heads) == 1 else None


def head_revision() -> str:
    """The newest revision this code knows."""
    head = _source_head()
    if head is not None:
        return head
    heads = _script().get_heads()
    if len(heads) != 1:  # pragma: no cover - guarded by tests/test_migrations.py
        raise SchemaError(f"the packaged migrations have {len(heads)} heads: {heads}")
    return heads[0]


def _current_heads(connection: sa.Connection) -> list[str]:
    """The rows of Alembic's version table, ``alembic_version`` (its default name, which env.py keeps),
    found through the search path as Alembic finds it."""
    if connection.execute(sa.text("SELECT to_regclass('alembic_version')")).scalar() is None:
        return []
    return list(connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def current_revision(connection: sa.Connection) -> str | None:
    """The revision recorded in the database, or None for an empty database."""
    heads = _current_heads(connection)
    return heads[0] if heads else None


def _check_known(revision: str) -> None:
    if revision in ("head", "base", "heads"):
        return
    script = _script()
    try:
        script.get_revision(revision)
    except Exception:
        known = [s.revision for s in script.walk_revisions()]
        raise NotFoundError(f"unknown schema revision {revision!r}; known: {', '.join(known)}") from None


# The consistency module's channel and "anything may have changed" payload (write.bump_generation
# sends the same); repeated here so that migrating imports neither the cache nor the write path.
_NOTIFY_CHANNEL = "featurestore"
_NOTIFY_ALL = '{"g": null, "s": null}'


def _notify_everything_changed(conn: sa.Connection) -> None:
    """Tell every listening store to drop its whole cache once this migration commits.

    A migration changes what reads return (``downgrade("base")`` empties the store) without a
    write generation bump, so caches of other processes in ``notify`` mode must hear of it.
    """
    conn.execute(sa.text("SELECT pg_notify(:channel, :payload)"), {"channel": _NOTIFY_CHANNEL, "payload": _NOTIFY_ALL})


def _on_citus(conn: sa.Connection) -> int | None:
    """Prepare a migration on a Citus store; return the shard count of a distributed store
    (None on a plain PostgreSQL or a store not distributed), for :func:`_placed_again`.

    A migration is one transaction that may both change many shards (a backfilled column, a
    dropped one) and create or drop a function; Citus refuses function DDL after a parallel
    multi-shard statement in the same transaction, so its statements run over one connection
    per worker node (sequential mode keeps both legal).
    """
    if conn.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'citus'")).first() is None:
        return None
    conn.execute(sa.text("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'"))
    shards = conn.execute(sa.text(
        "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = to_regclass('bars') "
        "AND EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = to_regclass('bars') AND partmethod = 'h')"
    )).scalar_one()
    return int(shards) or None


def _placed_again(conn: sa.Connection, shard_count: int | None) -> None:
    """A store that was distributed stays distributed: the tables the migration made (new ones,
    and tables it rebuilt, bars among them) are placed in the same transaction, with the shard
    count the store had."""
    if shard_count is not None:
        from featurestore import placement

        placement.place_existing(conn.connection.driver_connection, shard_count)  # type: ignore[arg-type]


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Upgrade to ``revision`` in one transaction under an advisory lock (safe to run concurrently).

    A database already at the head, asked for the head, is left as it is without running Alembic.
    """
    _check_known(revision)
    with engine.connect().execution_options(isolation_level="READ COMMITTED") as conn:
        heads = _current_heads(conn)
        if revision in ("head", "heads") and len(heads) == 1 and heads[0] == _source_head():
            conn.rollback()
            return
        before = heads[0] if heads else None
        from alembic import command

        shards = _on_citus(conn)
        command.upgrade(alembic_config(conn), revision)
        _placed_again(conn, shards)
        if current_revision(conn) != before:
            _notify_everything_changed(conn)
        conn.commit()


def downgrade(engine: sa.Engine, revision: str) -> None:
    """Downgrade to ``revision`` (``"base"`` removes every table, data included)."""
    _check_known(revision)
    with engine.connect().execution_options(isolation_level="READ COMMITTED") as conn:
        before = current_revision(conn)
        from alembic import command

        shards = _on_citus(conn)
        command.downgrade(alembic_config(conn), revision)
        _placed_again(conn, shards)
        if current_revision(conn) != before:
            _notify_everything_changed(conn)
        conn.commit()


def check_schema(engine: sa.Engine) -> str:
    """Return the current revision if it is this code's head; else raise SchemaError saying what to run."""
    with engine.connect() as conn:
        current = current_revision(conn)
    head = head_revision()
    if current == head:
        return current
    if current is None:
        raise SchemaError(
            "this database has no featurestore schema yet: run `featurestore migrate` "
            "(or open the store with FeatureStore(..., auto_migrate=True))"
        )
    known = {s.revision for s in _script().walk_revisions()}
    if current not in known:
        raise SchemaError(
            f"the database schema ({current}) is newer than this featurestore ({head}): "
            "upgrade the featurestore package"
        )
    raise SchemaError(
        f"the database schema ({current}) is older than this featurestore ({head}): "
        "run `featurestore migrate`"
    )
