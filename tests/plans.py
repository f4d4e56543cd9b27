"""Query-plan assertions: run EXPLAIN (FORMAT JSON) and check which index paths a query uses."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg

INDEX_SCANS = ("Index Scan", "Index Only Scan", "Bitmap Index Scan")


def explain(conn: psycopg.Connection[Any], query: Any, params: Sequence[Any] | None = None) -> dict[str, Any]:
    """The root plan node of ``query`` (EXPLAIN without ANALYZE: the query does not run)."""
    prefix = psycopg.sql.SQL("EXPLAIN (FORMAT JSON) ")
    stmt = prefix + (query if isinstance(query, psycopg.sql.Composable) else psycopg.sql.SQL(query))
    row = conn.execute(stmt, params).fetchone()
    assert row is not None
    doc = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    return doc[0]["Plan"]  # type: ignore[no-any-return]


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a plan tree, depth first."""
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def assert_plan_uses_index(
    conn: psycopg.Connection[Any],
    query: Any,
    params: Sequence[Any] | None = None,
    *,
    index: str,
    node_types: Sequence[str] = INDEX_SCANS,
    direction: str | None = None,
    no_seq_scan_on: Sequence[str] = (),
    require_limit: bool = False,
) -> dict[str, Any]:
    """Assert the plan scans ``index`` with one of ``node_types`` (and ``direction``).

    Fails with the whole plan printed. Returns the plan for further checks.
    """
    plan = explain(conn, query, params)
    shown = json.dumps(plan, indent=1)
    matches = [
        n
        for n in nodes(plan)
        if n.get("Index Name") == index
        and n.get("Node Type") in node_types
        and (direction is None or n.get("Scan Direction") == direction)
    ]
    assert matches, f"expected {node_types} on index {index!r} (direction={direction}); plan:\n{shown}"
    for n in nodes(plan):
        if n.get("Node Type") == "Seq Scan":
            assert n.get("Relation Name") not in no_seq_scan_on, f"Seq Scan on {n.get('Relation Name')}; plan:\n{shown}"
    if require_limit:
        assert any(n.get("Node Type") == "Limit" for n in nodes(plan)), f"expected a Limit node; plan:\n{shown}"
    return plan
