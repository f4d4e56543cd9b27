"""[store] Where the tables live: one PostgreSQL, or a Citus cluster with the store distributed.

``distribute`` (``FeatureStore.distribute``, ``featurestore distribute``) makes a store on a
Citus coordinator a distributed one: the per-symbol tables — ``bars``, its history and
segments, ``indicator_state``, ``indicator_checkpoints`` and every view's tables — are
distributed by ``entity_id`` and colocated, so one symbol's rows of every table sit in one
shard group (a one-symbol read or write is routed to one worker, a join by entity stays on the
worker); the small tables every statement consults — ``entities``, ``feature_views``, ``loads``,
``store_state`` — become reference tables (a copy on every node), so that a per-symbol join with
them also stays on one worker and the knowledge-time function can read them anywhere.
``alembic_version`` stays a local table of the coordinator (only migrations read it).

Tables made later (a new view version, a migration's table) are distributed when they are
created (:func:`place_new`), or by running ``distribute`` again (it is idempotent). On a plain
PostgreSQL every function here is a no-op except ``distribute``, which refuses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from featurestore.errors import ConfigError
from featurestore.schema import is_view_table

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "REFERENCE_TABLES",
    "DISTRIBUTED_TABLES",
    "citus_version",
    "is_distributed",
    "distribute",
    "place_existing",
    "place_new",
    "placement",
    "distributed",
    "per_entity",
    "shard_groups",
    "lock_entities",
    "shard_sizes",
    "database_bytes",
]

REFERENCE_TABLES = ("entities", "feature_views", "loads", "store_state")
DISTRIBUTED_TABLES = (
    "bars", "bars_history", "bars_segments", "indicator_state", "indicator_checkpoints", "entity_keys",
)
DISTRIBUTION_COLUMN = "entity_id"
ANCHOR = "bars"  # every distributed table is colocated with it


def citus_version(conn: psycopg.Connection[Any]) -> str | None:
    """The Citus extension's version in this database, or None (plain PostgreSQL)."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'citus'").fetchone()
    return None if row is None else str(row[0])


def is_distributed(conn: psycopg.Connection[Any]) -> bool:
    """True when ``bars`` is a Citus distributed table here."""
    if citus_version(conn) is None:
        return False
    row = conn.execute(
        "SELECT 1 FROM pg_dist_partition WHERE logicalrelid = to_regclass(%s) AND partmethod = 'h'", (ANCHOR,)
    ).fetchone()
    return row is not None


# (host, port, database) -> is the store there distributed; asked once per database per process
_DISTRIBUTED: dict[tuple[str, int, str], bool] = {}


def distributed(conn: psycopg.Connection[Any]) -> bool:
    """:func:`is_distributed`, remembered per database (the statements a store builds depend on
    it). A store distributed by another process is seen as such by stores opened after it."""
    info = conn.info
    key = (info.host, info.port, info.dbname)
    known = _DISTRIBUTED.get(key)
    if known is None:
        known = _DISTRIBUTED[key] = is_distributed(conn)
    return known


def per_entity(rows: str, alias: str, columns: str, dist: bool) -> str:
    """A FROM item of one row per requested entity: ``rows`` (an ``unnest(...)`` of entity ids
    first, then any per-entity arrays) as ``alias(columns)``. On a distributed store the same
    rows come joined to ``entity_keys``, the entity id taken from it: Citus pushes the LATERAL
    probes that follow down to the workers only when they correlate with a distributed
    relation's distribution column (rows of ids that are no entity drop out there)."""
    if not dist:
        return f"{rows} AS {alias}({columns})"
    first, *rest = [c.strip() for c in columns.split(",")]
    more = "".join(f", u.{c}" for c in rest)
    return (
        f"(SELECT k.entity_id AS {first}{more} FROM entity_keys k JOIN {rows} AS u({columns}) "
        f"ON u.{first} = k.entity_id) AS {alias}"
    )


def shard_groups(conn: psycopg.Connection[Any], ids: Sequence[int] | np.ndarray) -> list[np.ndarray]:
    """Positions of ``ids`` grouped by the shard group their entity lives in (Citus's own hash,
    asked of the coordinator), each group in the order given: a statement over many entities
    runs once per group, routed to one worker."""
    import numpy as np  # not at import: `featurestore info` loads this module, not the compute stack

    arr = np.asarray(ids, dtype=np.int32)
    if arr.size == 0:
        return []
    uniq, inverse = np.unique(arr, return_inverse=True)
    rows = conn.execute(
        "SELECT get_shard_id_for_distribution_column(%s, e) FROM unnest(%s::int4[]) AS u(e)", (ANCHOR, uniq.tolist())
    ).fetchall()
    shard = np.array([r[0] for r in rows], dtype=np.int64)[inverse]
    order = np.argsort(shard, kind="stable")
    bounds = np.flatnonzero(np.diff(shard[order])) + 1
    return [g for g in np.split(order, bounds) if g.size]


# a writer's per-entity lock: the entity's row in entity_keys (not entities: on Citus that is a
# reference table, where Citus turns any row lock into a lock of the whole table)
_LOCK_KEYS = "SELECT entity_id FROM entity_keys WHERE entity_id = ANY(%s::int4[]) ORDER BY entity_id FOR UPDATE"


def lock_entities(conn: psycopg.Connection[Any], ids: Iterable[int] | None) -> list[int]:
    """Lock entities ``ids`` for writing (``None``: every entity), in the caller's transaction,
    until it ends; return the ids locked (those that exist), ascending.

    Writers of the same entity queue here; writers of other entities do not meet. Every writer
    locks in one global order, so two never wait for each other crosswise: entity id on one
    PostgreSQL; on Citus, shard group then entity id, one statement per shard group (Citus takes
    row locks only in a statement routed to one shard), so the locks stay row locks on the
    workers."""
    if ids is None:
        if not distributed(conn):
            return [r[0] for r in conn.execute("SELECT entity_id FROM entity_keys ORDER BY entity_id FOR UPDATE").fetchall()]
        ids = [r[0] for r in conn.execute("SELECT entity_id FROM entity_keys").fetchall()]
    want = sorted({int(e) for e in ids})
    if not want:
        return []
    if len(want) == 1 or not distributed(conn):  # one entity: one shard, a router statement as it is
        return [r[0] for r in conn.execute(_LOCK_KEYS, (want,)).fetchall()]
    locked: list[int] = []
    for group in shard_groups(conn, want):
        locked += [r[0] for r in conn.execute(_LOCK_KEYS, ([want[i] for i in group.tolist()],)).fetchall()]
    return sorted(locked)


# per shard of a distributed table (run_command_on_shards puts the shard's name at %1$s): what
# the catalog says of it, as one text line (the command returns text)
_SHARD_SIZE = (
    "SELECT c.reltuples::float8 || ',' || c.relpages || ',' || "
    "pg_relation_size(c.oid) / current_setting('block_size')::int8 || ',' || pg_table_size(c.oid) || ',' || "
    "pg_indexes_size(c.oid) FROM pg_class c WHERE c.oid = '%1$s'::regclass"
)
_SHARD_PLAN_ROWS = "EXPLAIN (FORMAT JSON) SELECT 1 FROM %1$s"


def shard_sizes(conn: psycopg.Connection[Any]) -> dict[str, list[dict[str, Any]]]:
    """Per distributed table of the store, its shards' catalog figures: ``reltuples``,
    ``relpages``, ``pages`` (now), ``table_bytes``, ``index_bytes``, and ``plan_rows`` (the
    planner's estimate) for a shard never analyzed. The coordinator's own catalog knows nothing
    of these tables' rows: they live in the shards, on the workers. Empty on one PostgreSQL."""
    if not distributed(conn):
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for table, kind in sorted(_kinds(conn).items()):
        if kind != "distributed":
            continue
        shards: list[dict[str, Any]] = []
        for shard_id, ok, text in conn.execute(
            "SELECT shardid, success, result FROM run_command_on_shards(%s::regclass, %s)", (table, _SHARD_SIZE)
        ).fetchall():
            if not ok:
                raise RuntimeError(f"reading the size of a shard of {table} failed: {text}")
            tuples, relpages, pages, table_bytes, index_bytes = text.split(",")
            shards.append({
                "shard": int(shard_id), "reltuples": float(tuples), "relpages": int(relpages), "pages": int(pages),
                "table_bytes": int(table_bytes), "index_bytes": int(index_bytes), "plan_rows": None,
            })
        if any(sh["pages"] > 0 and (sh["reltuples"] < 0 or sh["relpages"] == 0) for sh in shards):
            import json

            plans = {int(i): t for i, ok, t in conn.execute(
                "SELECT shardid, success, result FROM run_command_on_shards(%s::regclass, %s)", (table, _SHARD_PLAN_ROWS)
            ).fetchall() if ok}
            for sh in shards:
                if sh["shard"] in plans:
                    sh["plan_rows"] = int(json.loads(plans[sh["shard"]])[0]["Plan"]["Plan Rows"])
        out[table] = shards
    return out


def database_bytes(conn: psycopg.Connection[Any]) -> int:
    """The database's size on disk: on Citus, summed over the coordinator and every worker."""
    if distributed(conn):
        row = conn.execute(
            "SELECT sum(result::int8) FROM run_command_on_all_nodes('SELECT pg_database_size(current_database())') "
            "WHERE success"
        ).fetchone()
    else:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _kinds(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Citus tables of the current schema -> 'distributed' or 'reference'."""
    rows = conn.execute(
        "SELECT c.relname, p.partmethod FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid "
        "WHERE c.relnamespace = current_schema()::regnamespace"
    ).fetchall()
    return {name: ("reference" if method == "n" else "distributed") for name, method in rows}


def _store_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """The tables of the current schema (views' included), by name."""
    rows = conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p') "
        "ORDER BY relname"
    ).fetchall()
    return [r[0] for r in rows]


def distribute(conn: psycopg.Connection[Any], shard_count: int | None = None) -> dict[str, Any]:
    """Distribute the store's tables on a Citus coordinator (see the module); idempotent.
    Returns :func:`placement`. Runs in the caller's transaction."""
    version = citus_version(conn)
    if version is None:
        raise ConfigError(
            "this database is plain PostgreSQL (no citus extension): distribute needs a Citus coordinator "
            "(CREATE EXTENSION citus, and worker nodes added with citus_add_node)"
        )
    if shard_count is not None and (not isinstance(shard_count, int) or isinstance(shard_count, bool) or not 1 <= shard_count <= 64000):
        raise ConfigError(f"shard_count must be an integer from 1 to 64000, got {shard_count!r}")
    if not conn.execute("SELECT citus_is_coordinator()").fetchone()[0]:  # type: ignore[index]
        raise ConfigError("distribute must run on the Citus coordinator (this node is not one: citus_is_coordinator() is false)")
    tables = set(_store_tables(conn))
    missing = [t for t in (*REFERENCE_TABLES, ANCHOR) if t not in tables]
    if missing:
        raise ConfigError(f"the store's schema is not complete (missing {', '.join(missing)}): run `featurestore migrate` first")
    place_existing(conn, shard_count)
    return placement(conn)


def place_existing(conn: psycopg.Connection[Any], shard_count: int | None = None) -> None:
    """:func:`distribute`'s placement of whatever store tables exist, not yet placed: after a
    migration of a distributed store (an older schema lacks tables of later revisions, and
    ``base`` has none; a rebuilt ``bars`` is a new table). Runs in the caller's transaction."""
    tables = set(_store_tables(conn))
    kinds = _kinds(conn)
    for t in REFERENCE_TABLES:
        if t in tables and t not in kinds:
            conn.execute("SELECT create_reference_table(%s)", (t,))
    if ANCHOR in tables and ANCHOR not in kinds:
        if shard_count is None:
            conn.execute("SELECT create_distributed_table(%s, %s)", (ANCHOR, DISTRIBUTION_COLUMN))
        else:
            conn.execute("SELECT create_distributed_table(%s, %s, shard_count => %s)", (ANCHOR, DISTRIBUTION_COLUMN, shard_count))
    if ANCHOR in tables:
        rest = [t for t in DISTRIBUTED_TABLES if t != ANCHOR and t in tables] + sorted(t for t in tables if is_view_table(t))
        _colocate(conn, [t for t in rest if t not in kinds])
    _DISTRIBUTED.clear()


def _colocate(conn: psycopg.Connection[Any], tables: Iterable[str]) -> None:
    for t in tables:
        conn.execute(
            "SELECT create_distributed_table(%s, %s, colocate_with => %s)", (t, DISTRIBUTION_COLUMN, ANCHOR)
        )


def place_new(conn: psycopg.Connection[Any], tables: Iterable[str]) -> None:
    """Tables just made (in the caller's transaction) join the store's placement: distributed
    and colocated with ``bars`` when the store is distributed; nothing on one PostgreSQL."""
    if is_distributed(conn):
        _colocate(conn, tables)


def placement(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """How the store is laid out: ``{"citus": version or None, "distributed": bool, ...}``; on
    a distributed store also the worker count, the shard count and each table's kind."""
    version = citus_version(conn)
    if version is None or not is_distributed(conn):
        return {"citus": version, "distributed": False}
    workers = conn.execute("SELECT count(*) FROM citus_get_active_worker_nodes()").fetchone()
    shards = conn.execute(
        "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = to_regclass(%s)", (ANCHOR,)
    ).fetchone()
    return {
        "citus": version,
        "distributed": True,
        "workers": int(workers[0]) if workers else 0,
        "shard_count": int(shards[0]) if shards else 0,
        "tables": dict(sorted(_kinds(conn).items())),
    }
