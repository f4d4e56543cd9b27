"""encode: binary COPY payloads checked byte by byte, round-tripped, and through a real server."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from featurestore.encode import (
    HEADER,
    PG_EPOCH_US,
    PG_MIN_TIMESTAMP,
    TRAILER,
    decode_binary_copy,
    encode_binary_copy,
    encode_rows,
    encode_rows_buffer,
)
from featurestore.errors import ConfigError, ValidationError

I64 = np.iinfo(np.int64)
EARLIEST_US = PG_MIN_TIMESTAMP + PG_EPOCH_US  # 4714-11-24 BC, PostgreSQL's first timestamp


def assert_columns_equal(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype.kind == np.asarray(w).dtype.kind or (g.dtype.kind, w.dtype.kind) == ("i", "M")
        np.testing.assert_array_equal(g, w)


# --- byte layout -------------------------------------------------------------------------------


def test_header_and_trailer_bytes(raw_conn: psycopg.Connection[object]) -> None:
    """Against PostgreSQL itself: an empty binary COPY from the server is exactly header + trailer."""
    with raw_conn.cursor() as cur, cur.copy("COPY (SELECT 1::int4 WHERE false) TO STDOUT (FORMAT BINARY)") as copy:
        server = b"".join(bytes(chunk) for chunk in copy)
    assert server == HEADER + TRAILER
    # and as the protocol documentation spells it: signature, flags (no OIDs), no header extension
    assert HEADER == b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
    assert TRAILER == (-1).to_bytes(2, "big", signed=True)  # a field count of -1


def test_tiny_payload_layout_by_hand() -> None:
    ids = np.array([7, -2], dtype=np.int32)
    ts = np.array([PG_EPOCH_US, 0], dtype=np.int64)  # 2000-01-01 is 0 on the wire; 1970 is negative
    price = np.array([1.5, -np.inf])
    payload = encode_binary_copy([ids, ts, price], ["int4", "timestamptz", "float8"])
    row1 = struct.pack(">h i i i q i d", 3, 4, 7, 8, 0, 8, 1.5)
    row2 = struct.pack(">h i i i q i d", 3, 4, -2, 8, -PG_EPOCH_US, 8, float("-inf"))
    assert payload == HEADER + row1 + row2 + TRAILER
    # spelled out once more in raw bytes for the first tuple
    assert row1[:2] == b"\x00\x03"  # field count
    assert row1[2:10] == b"\x00\x00\x00\x04" + b"\x00\x00\x00\x07"  # length 4, int4 7 big-endian
    assert row1[10:14] == b"\x00\x00\x00\x08" and row1[14:22] == b"\x00" * 8
    assert row1[22:26] == b"\x00\x00\x00\x08" and row1[26:] == bytes.fromhex("3ff8000000000000")
    assert row2[14:22] == bytes.fromhex("fffca2fec4c82000")  # -946684800000000 as big-endian int64


def test_null_fields_have_length_minus_one_and_no_value() -> None:
    a = np.array([1, 2], dtype=np.int64)
    b = np.array([0.25, 9.0])
    payload = encode_binary_copy(
        [a, b], ["int8", "float8"], nulls=[np.array([False, True]), np.array([True, False])]
    )
    row1 = struct.pack(">h i q i", 2, 8, 1, -1)
    row2 = struct.pack(">h i i d", 2, -1, 8, 9.0)
    assert payload == HEADER + row1 + row2 + TRAILER


def test_bool_and_float4_layout() -> None:
    payload = encode_rows([np.array([True, False]), np.array([0.5, 2.0])], ["bool", "float4"])
    assert payload == struct.pack(">h i B i f", 2, 1, 1, 4, 0.5) + struct.pack(">h i B i f", 2, 1, 0, 4, 2.0)


def test_empty_payload() -> None:
    payload = encode_binary_copy([np.array([], dtype=np.int32)], ["int4"])
    assert payload == HEADER + TRAILER
    (col,) = decode_binary_copy(payload, ["int4"])
    assert col.dtype == np.int32 and len(col) == 0


# --- round trips -------------------------------------------------------------------------------

TYPES7 = ["int4", "int8", "timestamptz", "float8", "float4", "bool", "float8"]


def sample_columns(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = rng.integers(EARLIEST_US, I64.max - 1, n)
    ts[:4] = [EARLIEST_US, I64.max - 1, 0, PG_EPOCH_US][: min(4, n)]
    f8 = rng.normal(size=n) * 1e300
    f8[: min(n, 5)] = [np.nan, np.inf, -np.inf, 0.0, -0.0][: min(n, 5)]
    return [
        rng.integers(-(2**31), 2**31 - 1, n).astype(np.int32),
        rng.integers(I64.min, I64.max, n),
        ts,
        f8,
        rng.normal(size=n).astype(np.float32),
        rng.random(n) < 0.5,
        rng.random(n),
    ]


def test_round_trip_fixed_width() -> None:
    cols = sample_columns(10_000)
    assert_columns_equal(decode_binary_copy(encode_binary_copy(cols, TYPES7), TYPES7), cols)


def test_round_trip_with_nulls_in_float_columns() -> None:
    cols = sample_columns(5_000, seed=1)
    rng = np.random.default_rng(2)
    nulls = [None, None, None, rng.random(5_000) < 0.3, rng.random(5_000) < 0.5, None, rng.random(5_000) < 0.01]
    payload = encode_binary_copy(cols, TYPES7, nulls=nulls)
    got = decode_binary_copy(payload, TYPES7)
    want = [c if m is None else np.where(m, np.nan, c).astype(c.dtype) for c, m in zip(cols, nulls, strict=True)]
    assert_columns_equal(got, want)


def test_infinity_sentinels_round_trip() -> None:
    ts = np.array([I64.max, I64.min, 0], dtype=np.int64)
    payload = encode_binary_copy([ts], ["timestamptz"])
    assert payload[len(HEADER) + 6 : len(HEADER) + 14] == b"\x7f" + b"\xff" * 7
    assert_columns_equal(decode_binary_copy(payload, ["timestamptz"]), [ts])


def test_datetime64_input_is_accepted_for_timestamps() -> None:
    ts = np.array(["2000-01-01T00:00:00", "1970-01-01T00:00:01"], dtype="datetime64[s]")
    payload = encode_rows([ts], ["timestamptz"])
    assert payload == struct.pack(">h i q", 1, 8, 0) + struct.pack(">h i q", 1, 8, 1_000_000 - PG_EPOCH_US)


def test_streamed_chunks_decode_as_one() -> None:
    a, b = sample_columns(300, seed=3), sample_columns(200, seed=4)
    payload = HEADER + encode_rows(a, TYPES7) + bytes(encode_rows_buffer(b, TYPES7)) + TRAILER
    want = [np.concatenate([x, y]) for x, y in zip(a, b, strict=True)]
    assert_columns_equal(decode_binary_copy(payload, TYPES7), want)
    whole = encode_rows_buffer(a, TYPES7, header=True, trailer=True)
    assert bytes(whole) == encode_binary_copy(a, TYPES7)


def test_decode_skips_header_extension() -> None:
    body = encode_rows([np.array([5], dtype=np.int32)], ["int4"])
    payload = HEADER[:15] + struct.pack(">i", 3) + b"xyz" + body + TRAILER
    assert_columns_equal(decode_binary_copy(payload, ["int4"]), [np.array([5], dtype=np.int32)])


@settings(max_examples=60, deadline=None)
@given(
    values=hnp.arrays(np.float64, st.integers(0, 40), elements=st.floats(allow_nan=True, allow_infinity=True)),
    data=st.data(),
)
def test_round_trip_property(values: np.ndarray, data: st.DataObject) -> None:
    n = len(values)
    ids = data.draw(hnp.arrays(np.int32, n))
    ts = data.draw(hnp.arrays(np.int64, n, elements=st.integers(EARLIEST_US, I64.max)))
    mask = data.draw(hnp.arrays(np.bool_, n))
    got = decode_binary_copy(
        encode_binary_copy([ids, ts, values], ["int4", "timestamptz", "float8"], nulls=[None, None, mask]),
        ["int4", "timestamptz", "float8"],
    )
    assert_columns_equal(got, [ids, ts, np.where(mask, np.nan, values)])


# --- errors ------------------------------------------------------------------------------------


def test_encode_errors_name_the_column_and_row() -> None:
    with pytest.raises(ValidationError, match=r"row 1, column '#0 \(int4\)'.*does not fit int4"):
        encode_rows([np.array([1, 2**31])], ["int4"])
    with pytest.raises(ValidationError, match=r"row 0.*before PostgreSQL's minimum"):
        encode_rows([np.array([EARLIEST_US - 1])], ["timestamptz"])
    with pytest.raises(ValidationError, match="overflows float4"):
        encode_rows([np.array([1e39])], ["float4"])
    with pytest.raises(ConfigError, match="unsupported COPY type 'text'"):
        encode_rows([np.array([1])], ["text"])
    with pytest.raises(ConfigError, match="has shape"):
        encode_rows([np.array([1]), np.array([1.0, 2.0])], ["int4", "float8"])
    with pytest.raises(ConfigError, match="needs integers"):
        encode_rows([np.array([1.5])], ["int8"])
    with pytest.raises(ConfigError, match="2 columns but 1 types"):
        encode_rows([np.array([1]), np.array([2])], ["int4"])
    # a NULL row's value is ignored, even when it would not fit
    encode_rows([np.array([2**40])], ["int4"], nulls=[np.array([True])])


def test_decode_errors() -> None:
    good = encode_binary_copy([np.array([1, 2], dtype=np.int32)], ["int4"])
    with pytest.raises(ValidationError, match="bad signature"):
        decode_binary_copy(b"PGCOPX" + good[6:], ["int4"])
    with pytest.raises(ValidationError, match="truncated"):
        decode_binary_copy(good[:-1], ["int4"])
    with pytest.raises(ValidationError, match="malformed.*field length"):
        decode_binary_copy(good[:-2] + struct.pack(">h i q", 1, 8, 5) + TRAILER, ["int4"])
    with pytest.raises(ValidationError, match="malformed.*field count"):
        decode_binary_copy(good, ["int4", "int4"])
    nulled = encode_binary_copy([np.array([1, 2], dtype=np.int32)], ["int4"], nulls=[np.array([False, True])])
    with pytest.raises(ValidationError, match=r"row 1.*NULL in a int4 column"):
        decode_binary_copy(nulled, ["int4"])


# --- a real PostgreSQL server (tests/conftest.py's raw_conn) -------------------------------------

DDL = "CREATE TEMP TABLE rt (i4 int4, i8 int8, ts timestamptz, f8 float8, f4 float4, b bool, x float8)"


@pytest.fixture()
def conn(raw_conn: psycopg.Connection[object]) -> Iterator[psycopg.Connection[object]]:
    raw_conn.execute(DDL)
    yield raw_conn
    raw_conn.execute("DROP TABLE IF EXISTS rt")


def copy_out(conn: psycopg.Connection[object], query: str) -> bytes:
    with conn.cursor() as cur, cur.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)") as copy:
        return b"".join(bytes(chunk) for chunk in copy)


def test_server_accepts_payload_and_returns_it(conn: psycopg.Connection[object]) -> None:
    n = 2_000
    cols = sample_columns(n, seed=5)
    rng = np.random.default_rng(6)
    x_null = rng.random(n) < 0.2
    x_null[0] = True
    with conn.cursor() as cur, cur.copy("COPY rt FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(encode_binary_copy(cols, TYPES7, nulls=[None] * 6 + [x_null]))
    order = "ORDER BY i8"
    # 1. values as the server sees them (exact epoch microseconds via numeric extract)
    rows = conn.execute(
        f"SELECT i4, i8, (extract(epoch FROM ts) * 1000000)::int8, f8::text, f4, b, x FROM rt {order}"
    ).fetchall()
    idx = np.argsort(cols[1], kind="stable")
    want = [c[idx] for c in cols]
    assert [r[0] for r in rows] == want[0].tolist()
    assert [r[2] for r in rows] == want[2].tolist()
    assert [float(r[3]) for r in rows] == pytest.approx(want[3].tolist(), nan_ok=True, rel=0, abs=0)
    assert [r[5] for r in rows] == want[5].tolist()
    assert [r[6] is None for r in rows] == x_null[idx].tolist()
    # 2. the server's own binary COPY output decodes to the same columns
    got = decode_binary_copy(copy_out(conn, f"SELECT * FROM rt {order}"), TYPES7)
    want[6] = np.where(x_null, np.nan, cols[6])[idx]
    assert_columns_equal(got, want)
    # 3. timestamps mean what we think: 2000-01-01 and the Unix epoch
    text = conn.execute(
        "SELECT ts AT TIME ZONE 'UTC' FROM rt WHERE (extract(epoch FROM ts) * 1000000)::int8 IN (0, %s) "
        "ORDER BY ts",
        (PG_EPOCH_US,),
    ).fetchall()
    assert [str(t[0]) for t in text] == ["1970-01-01 00:00:00", "2000-01-01 00:00:00"]


def test_server_extreme_and_infinite_timestamps(conn: psycopg.Connection[object]) -> None:
    ts = np.array([EARLIEST_US, I64.max - 1, I64.max, I64.min], dtype=np.int64)
    with conn.cursor() as cur, cur.copy("COPY rt (ts) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(encode_binary_copy([ts], ["timestamptz"]))
    shown = [r[0] for r in conn.execute("SELECT ts::text AS shown FROM rt ORDER BY rt.ts").fetchall()]
    assert shown[0] == "-infinity" and shown[-1] == "infinity"
    assert shown[1].startswith("4714-11-24") and shown[1].endswith(" BC")
    (got,) = decode_binary_copy(copy_out(conn, "SELECT ts FROM rt ORDER BY ts"), ["timestamptz"])
    np.testing.assert_array_equal(got, [I64.min, EARLIEST_US, I64.max - 1, I64.max])


def test_server_generated_nulls_decode(conn: psycopg.Connection[object]) -> None:
    payload = copy_out(
        conn,
        "SELECT g::int4, CASE WHEN g % 3 = 0 THEN NULL ELSE g * 0.5 END::float8, "
        "'2024-01-31 16:00:00+00'::timestamptz FROM generate_series(1, 1000) g",
    )
    ids, vals, ts = decode_binary_copy(payload, ["int4", "float8", "timestamptz"])
    g = np.arange(1, 1001)
    np.testing.assert_array_equal(ids, g)
    np.testing.assert_array_equal(vals, np.where(g % 3 == 0, np.nan, g * 0.5))
    assert (ts == np.datetime64("2024-01-31T16:00:00", "us").astype(np.int64)).all()
