"""Schema: identifiers are validated before quoting; the bars primary key serves the reads."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from plans import assert_plan_uses_index

from featurestore.errors import ConfigError
from featurestore.schema import ident, validate_identifier


@pytest.mark.parametrize("name", ["prices", "fv1", "a", "x_" + "y" * 46])
def test_valid_identifiers(name: str) -> None:
    assert validate_identifier(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "", "1abc", "Abc", "a-b", "a b", "a;drop table bars", 'a"b', "a'b", "é", "a\x00", "x" * 49, "_a",
        # a trailing newline passed re.match(r"^...$") (issue 11 item 11): the match must be full
        "tech\n", "a\n", "x" * 48 + "\n",
    ],
)
def test_invalid_identifiers(name: str) -> None:
    with pytest.raises(ConfigError, match="invalid view name"):
        validate_identifier(name, what="view name")


def test_ident_quotes(raw_conn: psycopg.Connection[Any]) -> None:
    assert ident("bars").as_string(raw_conn) == '"bars"'


@pytest.fixture(scope="module")
def big_bars(store: Any) -> Any:
    """1,000 entities x 250 bars = 250k rows, analyzed: a realistic planner input."""
    with store.db.connection() as conn:
        conn.execute(
            "WITH n AS (INSERT INTO entities (symbol) SELECT 'S' || g FROM generate_series(1, 1000) g "
            "RETURNING entity_id) INSERT INTO entity_keys SELECT entity_id FROM n"
        )
        conn.execute(
            "INSERT INTO bars SELECT e, 0, '2020-01-01'::timestamptz + d * interval '1 day', "
            "100, 101, 99, 100.5, 1000 FROM generate_series(1, 1000) e, generate_series(0, 249) d"
        )
        conn.execute("ANALYZE bars")
    return store


def test_range_read_uses_primary_key(big_bars: Any) -> None:
    with big_bars.db.connection() as conn:
        assert_plan_uses_index(
            conn,
            "SELECT * FROM bars WHERE entity_id = ANY(%s) AND ts >= %s AND ts < %s ORDER BY entity_id, ts",
            ([1, 2, 3], "2020-03-01", "2020-06-01"),
            index="bars_pkey",
            no_seq_scan_on=("bars",),
        )


def test_latest_read_scans_primary_key_backward(big_bars: Any) -> None:
    with big_bars.db.connection() as conn:
        assert_plan_uses_index(
            conn,
            "SELECT * FROM bars WHERE entity_id = %s ORDER BY ts DESC LIMIT 1",
            (7,),
            index="bars_pkey",
            direction="Backward",
            no_seq_scan_on=("bars",),
            require_limit=True,
        )


def test_plan_helper_fails_with_the_plan(big_bars: Any) -> None:
    with big_bars.db.connection() as conn, pytest.raises(AssertionError, match="Seq Scan|expected"):
        assert_plan_uses_index(
            conn,
            "SELECT * FROM bars WHERE close > %s",
            (0,),
            index="bars_pkey",
            no_seq_scan_on=("bars",),
        )
