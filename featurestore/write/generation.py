"""[write] Write generations, and the NOTIFY that tells other processes what changed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg

NOTIFY_CHANNEL = "featurestore"
# pg_notify payloads are limited to 8000 bytes; past this, notify "everything changed"
NOTIFY_MAX_BYTES = 7900


def bump_generation(conn: psycopg.Connection[Any], entity_ids: Sequence[int] | None) -> tuple[int, list[str]]:
    """Bump the touched entities' and the store's write generation; NOTIFY listeners.

    Returns (store generation, symbols touched). ``entity_ids=None`` means "anything may have
    changed" (a view dropped): listeners drop everything. Runs last in the write transaction, so
    the one-row ``store_state`` lock is held only until commit; the notification is delivered
    at commit, never for a rolled-back write. It also stamps the write's knowledge time
    (``store_state.known_at``), which the caller records on its load and view rows.
    """
    symbols: list[str] = []
    if entity_ids is not None:
        ids = sorted(set(int(e) for e in entity_ids))
        rows = conn.execute(
            "UPDATE entities SET generation = generation + 1 WHERE entity_id = ANY(%s) RETURNING symbol", (ids,)
        ).fetchall()
        symbols = sorted(r[0] for r in rows)
    # known_at: the knowledge stamp of this write, taken under the store_state row lock, which
    # is held to commit: stamps follow commit order (see docs/ARCHITECTURE.md, knowledge time)
    row = conn.execute(
        "UPDATE store_state SET generation = generation + 1, known_at = greatest(known_at, clock_timestamp()) "
        "WHERE id = 1 RETURNING generation"
    ).fetchone()
    assert row is not None
    generation = int(row[0])
    payload = json.dumps({"g": generation, "s": symbols if entity_ids is not None else None})
    if len(payload) > NOTIFY_MAX_BYTES:
        payload = json.dumps({"g": generation, "s": None})
    conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, payload))
    return generation, symbols
