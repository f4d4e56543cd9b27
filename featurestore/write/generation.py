"""[write] Write generations, and the NOTIFY that tells other processes what changed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg

from featurestore import placement

NOTIFY_CHANNEL = "featurestore"
# pg_notify payloads are limited to 8000 bytes; past this, notify "everything changed"
NOTIFY_MAX_BYTES = 7900


# One statement: bump the entities' and the store's generation, stamp the knowledge time under the
# store_state row lock (held to commit: stamps follow commit order), NOTIFY with the touched
# symbols (or "everything" when there are too many for a payload), and optionally log the load
# with that stamp. One round trip at the end of every write.
_BUMP = (
    "WITH e AS (UPDATE entities SET generation = generation + 1 WHERE entity_id = ANY(%(ids)s::int4[]) "
    "RETURNING symbol), "
    "s AS (UPDATE store_state SET generation = generation + 1, known_at = greatest(known_at, clock_timestamp()) "
    "WHERE id = 1 RETURNING generation, known_at), "
    "syms AS (SELECT coalesce(array_agg(symbol ORDER BY symbol), '{{}}') AS a FROM e), "
    "msg AS (SELECT CASE WHEN %(everything)s OR octet_length(json_build_object('g', s.generation, 's', syms.a)::text) "
    "> %(max_bytes)s THEN json_build_object('g', s.generation, 's', NULL)::text "
    "ELSE json_build_object('g', s.generation, 's', syms.a)::text END AS m FROM s, syms), "
    "n AS (SELECT pg_notify(%(channel)s, msg.m) AS sent FROM msg){log} "
    "SELECT s.generation, syms.a{log_id} FROM s, syms, n{log_from}"
)
_BUMP_ONLY = _BUMP.format(log="", log_id="", log_from="")
# The loads row of a load: {stamp} is its knowledge stamp, {source} the FROM that stamp comes from.
LOAD_LOG_SQL = (
    "INSERT INTO loads (load_id, source, started_at, committed_at, rows_in, rows_inserted, rows_updated, "
    "rows_unchanged, symbols, features_written, checksum) SELECT %(load_id)s, %(source)s, %(started_at)s, "
    "{stamp}, %(rows_in)s, %(inserted)s, %(updated)s, %(unchanged)s, %(symbols)s, %(features)s, %(checksum)s"
    "{source} RETURNING load_id"
)
_BUMP_AND_LOG = _BUMP.format(
    log=", l AS (" + LOAD_LOG_SQL.format(stamp="s.known_at", source=" FROM s") + ")",
    log_id=", l.load_id",
    log_from=", l",
)


def bump_generation(
    conn: psycopg.Connection[Any], entity_ids: Sequence[int] | None, load: dict[str, Any] | None = None
) -> tuple[int, list[str]]:
    """Bump the touched entities' and the store's write generation; NOTIFY listeners.

    Returns (store generation, symbols touched). ``entity_ids=None`` means "anything may have
    changed" (a view dropped): listeners drop everything. Runs last in the write transaction, so
    the one-row ``store_state`` lock is held only until commit; the notification is delivered
    at commit, never for a rolled-back write. It also stamps the write's knowledge time
    (``store_state.known_at``); ``load`` (the ``loads`` row's values but ``committed_at``) logs
    the load with that stamp in the same statement.
    """
    ids = sorted(set(int(e) for e in entity_ids)) if entity_ids is not None else []
    params: dict[str, Any] = {
        "ids": ids,
        "everything": entity_ids is None,
        "max_bytes": NOTIFY_MAX_BYTES,
        "channel": NOTIFY_CHANNEL,
        **(load or {}),
    }
    if placement.distributed(conn):
        return _bump_distributed(conn, params, load)
    row = conn.execute(_BUMP_AND_LOG if load else _BUMP_ONLY, params, prepare=True).fetchone()
    assert row is not None
    return int(row[0]), list(row[1])


def _bump_distributed(conn: psycopg.Connection[Any], params: dict[str, Any], load: dict[str, Any] | None) -> tuple[int, list[str]]:
    """:func:`bump_generation` on a Citus store, in steps: Citus runs no data-modifying CTE over
    reference tables in one statement, nor an UPDATE with a volatile function (the stamp is
    taken under the store_state lock first, then written as a value)."""
    locked = conn.execute("SELECT known_at FROM store_state WHERE id = 1 FOR UPDATE").fetchone()
    assert locked is not None
    now = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    stamp = max(locked[0], now)
    gen = conn.execute(
        "UPDATE store_state SET generation = generation + 1, known_at = %s WHERE id = 1 RETURNING generation",
        (stamp,),
    ).fetchone()[0]  # type: ignore[index]
    symbols: list[str] = []
    if params["ids"]:
        symbols = sorted(r[0] for r in conn.execute(
            "UPDATE entities SET generation = generation + 1 WHERE entity_id = ANY(%s::int4[]) RETURNING symbol",
            (params["ids"],),
        ).fetchall())
    message = json.dumps({"g": gen, "s": symbols})
    if params["everything"] or len(message.encode()) > NOTIFY_MAX_BYTES:
        message = json.dumps({"g": gen, "s": None})
    conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, message))
    if load:
        conn.execute(LOAD_LOG_SQL.format(stamp="%(stamp)s::timestamptz", source=""), {**params, "stamp": stamp})
    return int(gen), symbols
