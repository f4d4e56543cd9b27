"""History segments (issue 14): rows moved into per-entity column blocks and back, bit for bit.

The oracle is the table's own rows read with a plain ``SELECT`` before anything moves: after
:func:`segments.compress`, the rows left plus the decoded segments must equal them exactly
(values compared by their bits, so NaN payloads, -0.0 and NULLs count); after
:func:`segments.expand`, the table must hold them again. Hypothesis picks the rows (NaNs with
payloads, infinities, NULLs in view columns, float4 views), the cut-off times, the segment size
and the points expanded from.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from featurestore import segments as S
from featurestore.schema import BAR_COLUMNS

T0 = dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC)
FEATS = ("f_a", "f_b", "f_c")

# values that a lossy codec would change: NaN payloads, signed zero, infinities, extremes
_SPECIAL = [
    struct.unpack(">d", bytes.fromhex(h))[0]
    for h in ("7ff8000000000000", "7ff4000000000001", "fff8000000000abc", "8000000000000000", "7ff0000000000000")
] + [1e-310, 1.7976931348623157e308, -2.5]
_SPECIAL4 = [
    struct.unpack(">f", bytes.fromhex(h))[0]
    for h in ("7fc00000", "7fa00001", "ffc00abc", "80000000", "7f800000", "00000001", "7f7fffff", "c0200000")
]


@pytest.fixture()
def conn(raw_conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """Fresh tables shaped like bars and two view tables (float8 and float4, nullable)."""
    c = raw_conn
    for t in ("bars", "bars_segments", "fv_t_v1", "fv_t_v1_s", "fv_f_v1", "fv_f_v1_s"):
        c.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(t)))
    c.execute(
        "CREATE TABLE bars (entity_id int4 NOT NULL, load_id int4 NOT NULL, ts timestamptz NOT NULL, "
        + ", ".join(f"{x} float8 NOT NULL" for x in BAR_COLUMNS)
        + ", PRIMARY KEY (entity_id, ts))"
    )
    for t, typ in (("fv_t_v1", "float8"), ("fv_f_v1", "real")):
        c.execute(
            f"CREATE TABLE {t} (entity_id int4 NOT NULL, load_id int4 NOT NULL, ts timestamptz NOT NULL, "
            + ", ".join(f"{x} {typ}" for x in FEATS)
            + ", PRIMARY KEY (entity_id, ts))"
        )
    layouts = [S.bars_layout(), S.view_layout("fv_t_v1", FEATS), S.view_layout("fv_f_v1", FEATS, float32=True)]
    for lay in layouts:
        S.create_segment_table(c, lay)
    yield c


def _snapshot(c: psycopg.Connection[Any], layout: S.Layout) -> list[tuple[Any, ...]]:
    """Every row of the table, ordered, each float as the bytes the server stores (its send
    function's output): NaN payloads, signed zeros and NULLs compare exactly."""
    send = "float4send" if layout.types and layout.types[0] == "float4" else "float8send"
    cols = ", ".join(f"{send}({x})" for x in layout.columns)
    rows = c.execute(f"SELECT entity_id, load_id, ts, {cols} FROM {layout.table} ORDER BY entity_id, ts").fetchall()
    return [(*r[:3], *(None if v is None else bytes(v) for v in r[3:])) for r in rows]


def _decoded_rows(d: S.Decoded, layout: S.Layout) -> list[tuple[Any, ...]]:
    big = ">f4" if layout.types and layout.types[0] == "float4" else ">f8"
    out = []
    for i in range(len(d)):
        ts = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(d.ts[i]))
        vals = [
            None if c in d.nulls and d.nulls[c][i] else d.values[c][i : i + 1].astype(big).tobytes()
            for c in layout.columns
        ]
        out.append((int(d.entity_id[i]), int(d.load_id[i]), ts, *vals))
    return out


def _fill(c: psycopg.Connection[Any], data: Any, layouts: list[S.Layout]) -> None:
    rows, special_at, null_at = data
    for lay in layouts:
        values = []
        for k, (e, step, load) in enumerate(rows):
            base = [float(k) * 1.25 + j for j in range(len(lay.columns))]
            if k in special_at:
                base[0] = (_SPECIAL4 if lay.types[0] == "float4" else _SPECIAL)[special_at[k]]
            if lay.nullable and k in null_at:
                base[null_at[k] % len(lay.columns)] = None  # type: ignore[call-overload]
            values.append((e, load, T0 + dt.timedelta(minutes=step), *base))
        cols = ", ".join(lay.columns)
        # binary COPY: NaN payloads reach the table as they are (text would make every NaN canonical)
        with c.cursor().copy(f"COPY {lay.table} (entity_id, load_id, ts, {cols}) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["int4", "int4", "timestamptz", *(["real" if t == "float4" else "float8" for t in lay.types])])
            for v in values:
                cp.write_row(v)


@st.composite
def _tables(draw: Any) -> Any:
    n_ent = draw(st.integers(1, 4))
    rows = []
    for e in range(1, n_ent + 1):
        steps = sorted(draw(st.sets(st.integers(0, 200), min_size=0, max_size=40)))
        rows += [(e, s, draw(st.integers(0, 5))) for s in steps]
    idx = st.integers(0, max(len(rows) - 1, 0))
    special_at = draw(st.dictionaries(idx, st.integers(0, len(_SPECIAL) - 1), max_size=6))
    null_at = draw(st.dictionaries(idx, st.integers(0, 2), max_size=6))
    return rows, special_at, null_at


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=_tables(),
    cuts=st.lists(st.integers(0, 210), min_size=1, max_size=3),
    per=st.integers(1, 9),
    floors=st.dictionaries(st.integers(1, 4), st.one_of(st.none(), st.integers(-5, 210)), max_size=4),
)
def test_compress_then_expand_keeps_every_row_bit_for_bit(
    conn: psycopg.Connection[Any], data: Any, cuts: list[int], per: int, floors: dict[int, int | None]
) -> None:
    layouts = [S.bars_layout(), S.view_layout("fv_t_v1", FEATS), S.view_layout("fv_f_v1", FEATS, float32=True)]
    with conn.transaction(force_rollback=True):
        _fill(conn, data, layouts)
        before = {lay.table: _snapshot(conn, lay) for lay in layouts}
        for lay in layouts:
            moved = 0
            for cut in sorted(cuts):  # successive compressions at later cut-offs add segments
                moved += S.compress(conn, lay, T0 + dt.timedelta(minutes=cut), rows_per_segment=per)
            left = _snapshot(conn, lay)
            segs = S.fetch_segments(conn, lay, [1, 2, 3, 4])
            assert moved == len(segs)
            assert sorted(_decoded_rows(segs, lay) + left, key=lambda r: (r[0], r[2])) == before[lay.table]
            # rows stay newer than segments, per entity
            n_max = conn.execute(
                f"SELECT count(*) FROM {lay.table} t JOIN {lay.segments} s ON s.entity_id = t.entity_id "
                "AND s.ts_last >= t.ts"
            ).fetchone()
            assert n_max == (0,)
            seg_sizes = [r[0] for r in conn.execute(f"SELECT n FROM {lay.segments}").fetchall()]
            assert all(1 <= n <= per for n in seg_sizes)
            # a range read of segments returns exactly the rows in the range
            lo, hi = T0 + dt.timedelta(minutes=min(cuts) // 2), T0 + dt.timedelta(minutes=max(cuts))
            part = S.fetch_segments(conn, lay, [1, 3], lo, hi)
            want = [r for r in _decoded_rows(segs, lay) if r[0] in (1, 3) and lo <= r[2] <= hi]
            assert _decoded_rows(part, lay) == want
            # expand from per-entity points: segments holding rows at or after them come back
            since = {e: (None if f is None else int((T0 - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds()
                                                    * 1_000_000) + f * 60_000_000) for e, f in floors.items()}
            S.expand(conn, lay, since)
            after = S.fetch_segments(conn, lay, [1, 2, 3, 4])
            assert sorted(_decoded_rows(after, lay) + _snapshot(conn, lay), key=lambda r: (r[0], r[2])) == before[lay.table]
            for e, us in since.items():
                for r in _decoded_rows(after, lay):
                    if r[0] == e:
                        last = conn.execute(
                            f"SELECT max(ts_last) FROM {lay.segments} WHERE entity_id = %s", (e,)
                        ).fetchone()
                        assert us is not None and last[0] < T0 + dt.timedelta(
                            microseconds=us - int((T0 - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds() * 1e6)
                        )
            S.expand(conn, lay, {e: None for e in (1, 2, 3, 4)})
            assert _snapshot(conn, lay) == before[lay.table]
            assert conn.execute(f"SELECT count(*) FROM {lay.segments}").fetchone() == (0,)


def test_segment_bytes_per_row_are_the_values_alone(conn: psycopg.Connection[Any]) -> None:
    """A full segment of bars costs its values (8 B ts + 4 B load id + 5 x 8 B = 52 B per row), TOAST's
    chunk headers (about 3%) and a few fixed pages: no per-row tuple header or index entry."""
    n = S.SEGMENT_ROWS
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    with conn.transaction(force_rollback=True):
        with conn.cursor().copy("COPY bars (entity_id, load_id, ts, open, high, low, close, volume) FROM STDIN") as cp:
            for k in range(n):
                c = float(close[k])
                cp.write_row((1, 1, T0 + dt.timedelta(minutes=k), c, c * 1.001, c * 0.999, c, float(k)))
        assert S.compress(conn, S.bars_layout(), T0 + dt.timedelta(days=365)) == n
        size = conn.execute("SELECT pg_total_relation_size('bars_segments')").fetchone()[0]
        assert conn.execute("SELECT count(*), sum(n) FROM bars_segments").fetchone() == (1, n)
    assert 52 * n <= size <= 54 * n + 96 * 1024  # rows layout: ~116 B per row
