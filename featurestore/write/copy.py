"""[write] Binary COPY of numpy columns in and out, and the µs <-> timestamptz SQL helpers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from featurestore.encode import HEADER, TRAILER, decode_binary_copy, encode_rows_buffer
from featurestore.schema import ident

# Rows per COPY message while streaming: binary COPY built with numpy runs fastest in chunks of a
# few hundred thousand rows (large enough to amortise each call, small enough to stay in cache).
COPY_ROWS = 250_000

BAR_TYPES = ("int4", "timestamptz", "float8", "float8", "float8", "float8", "float8")
_NO_TS = np.iinfo(np.int64).min


def _us_sql(param: str) -> str:
    """SQL turning an int8 of microseconds since the Unix epoch into a timestamptz, exactly."""
    return f"('epoch'::timestamptz + {param} * interval '1 microsecond')"


def _ts_us_sql(col: str) -> str:
    return f"(extract(epoch from {col}) * 1000000)::int8"


def copy_in(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    columns: Sequence[str],
    arrays: Sequence[np.ndarray],
    types: Sequence[str],
    nulls: Sequence[np.ndarray | None] | None = None,
) -> None:
    """Stream numpy columns into ``table`` with binary COPY, encoding COPY_ROWS rows at a time."""
    n = len(arrays[0])
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        table, sql.SQL(", ").join(ident(c) for c in columns)
    )
    with conn.cursor() as cur, cur.copy(stmt) as cp:
        cp.write(HEADER)
        for lo in range(0, n, COPY_ROWS):
            hi = min(n, lo + COPY_ROWS)
            part_nulls = None if nulls is None else [None if m is None else m[lo:hi] for m in nulls]
            cp.write(encode_rows_buffer([a[lo:hi] for a in arrays], types, part_nulls))
        cp.write(TRAILER)


def copy_out(
    conn: psycopg.Connection[Any], query: sql.Composable, params: Sequence[Any] | None, types: Sequence[str]
) -> list[np.ndarray]:
    """Run ``query`` as ``COPY (...) TO STDOUT (FORMAT BINARY)`` and decode it into numpy columns."""
    stmt = sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)
    buf = bytearray()
    # read() into one bytearray: 2x faster than joining the per-row blocks psycopg yields
    with conn.cursor() as cur, cur.copy(stmt, params) as cp:
        while chunk := cp.read():
            buf += chunk
    return decode_binary_copy(buf, types)
