"""[write] Backfill of a new view version, in batches that each commit on their own."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

import psycopg

from featurestore import placement
from featurestore.views import FeatureView
from featurestore.write.features import write_features
from featurestore.write.generation import bump_generation


def pending_backfill(conn: psycopg.Connection[Any], view: FeatureView, batch_entities: int) -> list[list[int]]:
    """Entities with bars but no state for ``view`` (not yet backfilled), in batches."""
    rows = conn.execute(
        "SELECT e.entity_id FROM entity_keys e "
        "WHERE (EXISTS (SELECT 1 FROM bars b WHERE b.entity_id = e.entity_id) "
        "OR EXISTS (SELECT 1 FROM bars_segments s WHERE s.entity_id = e.entity_id)) "
        "AND NOT EXISTS (SELECT 1 FROM indicator_state s WHERE s.view_id = %s AND s.entity_id = e.entity_id) "
        "ORDER BY e.entity_id",
        (view.view_id,),
    ).fetchall()
    ids = [r[0] for r in rows]
    return [ids[i : i + batch_entities] for i in range(0, len(ids), batch_entities)]


def backfill_batch(conn: psycopg.Connection[Any], view: FeatureView, entity_ids: Sequence[int]) -> int:
    """Compute ``view`` for entities that have no state yet, in one transaction; return rows written.

    Each batch commits on its own, so an interrupted backfill resumes with the batches left.
    """
    with conn.transaction():
        # lock the entities (id order, as loads do), then skip those whose state a backfill that
        # held a lock before us has written
        locked = placement.lock_entities(conn, entity_ids)
        done = {r[0] for r in conn.execute(
            "SELECT entity_id FROM indicator_state WHERE view_id = %s AND entity_id = ANY(%s)",
            (view.view_id, locked),
        ).fetchall()}
        ids = [e for e in locked if e not in done]
        if not ids:
            return 0
        written, _ = write_features(conn, view, ids, {}, set())
        bump_generation(conn, ids)
    return written


# a worker's connection names its process (pg_stat_activity shows which worker holds which batch)
BACKFILL_APPLICATION = "featurestore-backfill"


def _watch_client(conn: psycopg.Connection[Any]) -> None:
    """Have the server notice within a second when this worker vanishes (killed, its machine lost)
    while a statement runs or waits on a lock, and roll its batch back then, releasing the
    entity locks a retry of the batch needs; by default it would notice only when the lock came."""
    try:
        conn.execute("SET client_connection_check_interval = 1000")
    except psycopg.Error:  # a server on a platform without the check: the default behaviour
        pass


def backfill_worker(url: str, name: str, version: int, entity_ids: Sequence[int]) -> int:
    """joblib and Ray entry point: one batch on a connection of its own (workers have no pool)."""
    from featurestore.views import get_view

    app = f"{BACKFILL_APPLICATION} {socket.gethostname()[:32]} pid {os.getpid()}"
    with psycopg.connect(url, autocommit=True, application_name=app) as conn:
        _watch_client(conn)
        view = get_view(conn, name, version)
        return backfill_batch(conn, view, entity_ids)
