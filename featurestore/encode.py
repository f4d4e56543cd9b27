"""[encode] numpy columns <-> PostgreSQL binary COPY payloads. Pure: no connection.

The binary COPY format (PostgreSQL docs, "COPY", section "Binary Format"), network byte order:

* header: the 11-byte signature ``PGCOPY\\n\\377\\r\\n\\0``, an int32 flags field (bit 16 = OIDs
  included; we write 0 and refuse OIDs when reading), an int32 header-extension length (we write
  0, and skip an extension when reading);
* one tuple per row: an int16 field count, then per field an int32 byte length (-1 = NULL, no
  bytes follow) and the value in the type's binary send format;
* trailer: an int16 -1.

Value formats used here: ``int4``/``int8`` big-endian two's complement; ``float4``/``float8``
big-endian IEEE 754 (NaN and +-inf pass through); ``bool`` one byte 0/1; ``timestamptz`` (and
``timestamp``) an int64 of microseconds since 2000-01-01 00:00 UTC, while our columns hold
microseconds since 1970-01-01 UTC (the shift is :data:`PG_EPOCH_US`). PostgreSQL's
``'infinity'``/``'-infinity'`` are int64 max/min on the wire and in our columns alike.

Rows are built with one structured big-endian numpy dtype per row (field count, then per column
a length word and the value), so encoding is a handful of vectorized column assignments; NULLs
are cut out of that fixed-width image with one boolean byte mask. Decoding views the payload
through the same dtype when every field has its fixed width, and otherwise walks the tuples in a
small numba kernel (numba is already a dependency for the indicators).

For streaming several chunks into one ``COPY ... FROM STDIN (FORMAT BINARY)``, write
:data:`HEADER` once, then :func:`encode_rows` per chunk, then :data:`TRAILER`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from featurestore.errors import ConfigError, ValidationError

__all__ = [
    "HEADER",
    "PG_EPOCH_US",
    "SIGNATURE",
    "TRAILER",
    "TYPES",
    "decode_binary_copy",
    "encode_binary_copy",
    "encode_rows",
    "encode_rows_buffer",
]

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
HEADER = SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"  # flags 0, no header extension
TRAILER = b"\xff\xff"  # int16 -1

PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in microseconds since the Unix epoch
# PostgreSQL's valid timestamp range on the wire (src/include/datatype/timestamp.h), µs since 2000.
PG_MIN_TIMESTAMP = -211_813_488_000_000_000  # 4714-11-24 BC
PG_END_TIMESTAMP = 9_223_371_331_200_000_000  # 294277-01-01 AD (exclusive)
_I64 = np.iinfo(np.int64)

# name -> (wire dtype, native dtype of decoded columns)
TYPES: dict[str, tuple[str, str]] = {
    "int4": (">i4", "<i4"),
    "int8": (">i8", "<i8"),
    "float4": (">f4", "<f4"),
    "float8": (">f8", "<f8"),
    "timestamptz": (">i8", "<i8"),
    "timestamp": (">i8", "<i8"),
    "bool": ("u1", "?"),
}
_MAX_FIELDS = 1664  # PostgreSQL's MaxTupleAttributeNumber


def _row_dtype(types: Sequence[str]) -> np.dtype[np.void]:
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for i, name in enumerate(types):
        if name not in TYPES:
            raise ConfigError(f"unsupported COPY type {name!r}; supported: {sorted(TYPES)}")
        fields += [(f"l{i}", ">i4"), (f"v{i}", TYPES[name][0])]
    return np.dtype(fields)  # packed: numpy adds no padding to a list of fields


def _column_name(i: int, type_name: str) -> str:
    return f"#{i} ({type_name})"


def _wire_values(values: np.ndarray, type_name: str, i: int, null: np.ndarray | None) -> np.ndarray:
    """Check and convert one column to what its wire field holds (still native byte order)."""
    where = _column_name(i, type_name)
    kind = values.dtype.kind
    valid = None if null is None else ~null

    def first_bad(mask: np.ndarray) -> int | None:
        if valid is not None:
            mask = mask & valid
        return int(np.argmax(mask)) if mask.any() else None

    if type_name in ("int4", "int8"):
        if kind not in "iub":
            raise ConfigError(f"column {where} needs integers, got dtype {values.dtype}")
        if type_name == "int4" and values.dtype.itemsize >= 4 and values.dtype != np.int32:
            info = np.iinfo(np.int32)
            bad = first_bad((values < info.min) | (values > info.max))
            if bad is not None:
                raise ValidationError(f"value {int(values[bad])} does not fit int4", row=bad, column=where)
        if type_name == "int8" and values.dtype == np.uint64:
            bad = first_bad(values > _I64.max)
            if bad is not None:
                raise ValidationError(f"value {int(values[bad])} does not fit int8", row=bad, column=where)
        return values
    if type_name in ("float4", "float8"):
        if kind not in "fiu":
            raise ConfigError(f"column {where} needs numbers, got dtype {values.dtype}")
        if type_name == "float4" and kind == "f" and values.dtype.itemsize > 4:
            with np.errstate(over="ignore"):
                narrow = values.astype(np.float32)
            bad = first_bad(np.isinf(narrow) & np.isfinite(values))
            if bad is not None:
                raise ValidationError(f"value {float(values[bad])!r} overflows float4", row=bad, column=where)
            return narrow
        return values
    if type_name in ("timestamptz", "timestamp"):
        if kind == "M":
            values = values.astype("datetime64[us]").view(np.int64)
        elif kind not in "iu":
            raise ConfigError(f"column {where} needs int64 microseconds since the Unix epoch, got {values.dtype}")
        values = values.astype(np.int64, copy=False)
        low = PG_MIN_TIMESTAMP + PG_EPOCH_US
        bad = first_bad((values < low) & (values != _I64.min))
        if bad is not None:
            raise ValidationError(
                f"timestamp {int(values[bad])} µs is before PostgreSQL's minimum (4714 BC)", row=bad, column=where
            )
        shifted = values - PG_EPOCH_US  # cannot overflow after the check above, except the sentinel
        infinite = (values == _I64.max) | (values == _I64.min)
        if infinite.any():
            shifted = np.where(infinite, values, shifted)
        return shifted
    if type_name == "bool":
        if kind != "b":
            raise ConfigError(f"column {where} needs a bool array, got dtype {values.dtype}")
        return values.view(np.uint8)
    raise ConfigError(f"unsupported COPY type {type_name!r}")  # pragma: no cover - checked earlier


def _check_inputs(
    columns: Sequence[np.ndarray],
    types: Sequence[str],
    nulls: Sequence[np.ndarray | None] | None,
) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    if len(columns) != len(types):
        raise ConfigError(f"{len(columns)} columns but {len(types)} types")
    if not 1 <= len(types) <= _MAX_FIELDS:
        raise ConfigError(f"a COPY row needs 1..{_MAX_FIELDS} columns, got {len(types)}")
    if nulls is not None and len(nulls) != len(columns):
        raise ConfigError(f"{len(nulls)} null masks for {len(columns)} columns")
    arrays = [np.asarray(c) for c in columns]
    n = len(arrays[0])
    for i, a in enumerate(arrays):
        if a.ndim != 1 or len(a) != n:
            raise ConfigError(f"column {_column_name(i, types[i])} has shape {a.shape}; expected ({n},)")
    masks: list[np.ndarray | None] = []
    for i in range(len(arrays)):
        m = None if nulls is None else nulls[i]
        if m is not None:
            m = np.asarray(m, dtype=bool)
            if m.shape != (n,):
                raise ConfigError(f"null mask {i} has shape {m.shape}; expected ({n},)")
            if not m.any():
                m = None  # an all-False mask takes the fixed-width path
        masks.append(m)
    return arrays, masks


def _encode(
    columns: Sequence[np.ndarray],
    types: Sequence[str],
    nulls: Sequence[np.ndarray | None] | None,
    head: bytes,
    tail: bytes,
) -> np.ndarray:
    """``head`` + tuples + ``tail`` as one uint8 array (one allocation on the fixed-width path)."""
    arrays, masks = _check_inputs(columns, types, nulls)
    n = len(arrays[0])
    dtype = _row_dtype(types)
    width = dtype.itemsize
    # Field count and length words are the same in every row: broadcast one template row
    # (a third of the time of assigning each word column separately).
    template = np.zeros(1, dtype=dtype)
    template["n"] = len(types)
    for i, type_name in enumerate(types):
        template[f"l{i}"] = np.dtype(TYPES[type_name][0]).itemsize
    variable = any(m is not None for m in masks)
    out = np.empty(len(head) + (0 if variable else n * width) + len(tail), dtype=np.uint8)
    if variable:
        image = np.empty((n, width), dtype=np.uint8)
    else:
        out[: len(head)] = np.frombuffer(head, dtype=np.uint8)
        out[len(out) - len(tail) :] = np.frombuffer(tail, dtype=np.uint8)
        image = out[len(head) : len(head) + n * width].reshape(n, width)
    image[:] = template.view(np.uint8)
    rows = image.reshape(-1).view(dtype)
    for i, (values, type_name, mask) in enumerate(zip(arrays, types, masks, strict=True)):
        rows[f"v{i}"] = _wire_values(values, type_name, i, mask)
        if mask is not None:
            rows[f"l{i}"][mask] = -1
    if not variable:
        return out
    # Variable width: drop the value bytes of NULL fields from the fixed-width image. Boolean
    # indexing of the (rows, bytes) view keeps row-major order, which is exactly the wire order.
    keep = np.ones(image.shape, dtype=bool)
    for i, mask in enumerate(masks):
        if mask is not None:
            offset = dtype.fields[f"v{i}"][1]  # type: ignore[index]
            size = np.dtype(TYPES[types[i]][0]).itemsize
            keep[mask, offset : offset + size] = False
    body = image[keep]
    return np.concatenate(
        [np.frombuffer(head, dtype=np.uint8), body, np.frombuffer(tail, dtype=np.uint8)]
    )


def encode_rows(
    columns: Sequence[np.ndarray],
    types: Sequence[str],
    nulls: Sequence[np.ndarray | None] | None = None,
) -> bytes:
    """Tuples only, without header and trailer: for streaming several chunks into one COPY.

    ``nulls[i]``, when given and not None, is a bool mask of the rows where column ``i`` is NULL
    (its value there is ignored).
    """
    return _encode(columns, types, nulls, b"", b"").tobytes()


def encode_rows_buffer(
    columns: Sequence[np.ndarray],
    types: Sequence[str],
    nulls: Sequence[np.ndarray | None] | None = None,
    *,
    header: bool = False,
    trailer: bool = False,
) -> memoryview:
    """Like :func:`encode_rows` (optionally with header/trailer) but without the final copy.

    For the write hot path: ``copy.write()`` accepts the memoryview, which saves the ``bytes``
    copy (about a third of the encoding time for 7 fixed-width columns).
    """
    array = _encode(columns, types, nulls, HEADER if header else b"", TRAILER if trailer else b"")
    return array.data.cast("B")


def encode_binary_copy(
    columns: Sequence[np.ndarray],
    types: Sequence[str],
    *,
    nulls: Sequence[np.ndarray | None] | None = None,
) -> bytes:
    """A complete binary COPY payload (header, tuples, trailer) for ``COPY ... FROM STDIN``."""
    return _encode(columns, types, nulls, HEADER, TRAILER).tobytes()


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------

_scan_kernel: Callable[..., Any] | None = None


def _scan(buf, start, end, sizes, offsets):  # type: ignore[no-untyped-def]
    """Walk the tuples of a payload with NULLs: record each field's offset (-1 for NULL).

    Returns (rows, position, code): code 0 at the trailer, else an error code of _SCAN_ERRORS.
    Plain integer code that runs as Python and compiles unchanged with numba (see _scanner).
    """
    ncols = sizes.shape[0]
    pos = start
    row = 0
    while pos + 2 <= end:
        count = (np.int64(buf[pos]) << 8) | np.int64(buf[pos + 1])
        if count == 0xFFFF:
            return row, pos, 0
        if count != ncols or row >= offsets.shape[0]:
            return row, pos, 1
        pos += 2
        for i in range(ncols):
            if pos + 4 > end:
                return row, pos, 2
            length = (
                (np.int64(buf[pos]) << 24)
                | (np.int64(buf[pos + 1]) << 16)
                | (np.int64(buf[pos + 2]) << 8)
                | np.int64(buf[pos + 3])
            )
            if length >= 0x80000000:
                length -= 0x100000000
            pos += 4
            if length == -1:
                offsets[row, i] = -1
            elif length == sizes[i] and pos + length <= end:
                offsets[row, i] = pos
                pos += length
            else:
                return row, pos - 4, 3
        row += 1
    return row, pos, 2


def _scanner() -> Callable[..., Any]:
    """The tuple-walking kernel, compiled on first use (only payloads with NULLs need it)."""
    global _scan_kernel
    if _scan_kernel is None:
        try:
            import numba
        except ImportError:  # pragma: no cover - numba is a declared dependency
            _scan_kernel = _scan
        else:
            _scan_kernel = numba.njit(nogil=True, cache=True)(_scan)
    return _scan_kernel


_SCAN_ERRORS = {
    1: "a tuple does not have the expected field count",
    2: "the payload is truncated (no trailer)",
    3: "a field length does not match its type",
}


def decode_binary_copy(data: bytes | bytearray | memoryview, types: Sequence[str]) -> list[np.ndarray]:
    """Parse ``COPY ... TO STDOUT (FORMAT BINARY)`` output into one native numpy array per column.

    NULL in a float column becomes NaN; NULL in any other column raises ValidationError (select
    ``coalesce(...)`` or cast to float if NULLs are expected). ``timestamptz`` columns come back as
    int64 microseconds since the Unix epoch.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    if len(buf) < 21 or bytes(buf[:11]) != SIGNATURE:
        raise ValidationError("not a binary COPY payload (bad signature)", source="COPY")
    flags = int.from_bytes(bytes(buf[11:15]), "big")
    if flags & (1 << 16):
        raise ValidationError("binary COPY payloads with OIDs are not supported", source="COPY")
    start = 19 + int.from_bytes(bytes(buf[15:19]), "big")
    if bytes(buf[-2:]) != TRAILER:
        raise ValidationError("binary COPY payload is truncated (no trailer)", source="COPY")
    dtype = _row_dtype(types)
    sizes = np.array([np.dtype(TYPES[t][0]).itemsize for t in types], dtype=np.int64)
    body = buf[start:-2]

    # Fast path: every field present at its fixed width -> one structured view of the buffer.
    if len(body) % dtype.itemsize == 0:
        rows = body.view(dtype)
        fixed = bool(np.all(rows["n"] == len(types)))
        for i, size in enumerate(sizes):
            fixed = fixed and bool(np.all(rows[f"l{i}"] == size))
        if fixed:
            return [_native(rows[f"v{i}"], t, i, None) for i, t in enumerate(types)]

    # Slow path: walk the tuples once to find each value's offset (-1 = NULL), then gather.
    max_rows = len(body) // (2 + 4 * len(types)) + 1
    offsets = np.empty((max_rows, len(types)), dtype=np.int64)
    nrows, pos, code = _scanner()(buf, start, len(buf), sizes, offsets)
    if code != 0 or pos != len(buf) - 2:
        reason = _SCAN_ERRORS.get(code, "data follows the trailer")
        raise ValidationError(f"malformed binary COPY payload at byte {pos} (row {nrows}): {reason}", source="COPY")
    columns = []
    for i, type_name in enumerate(types):
        off = offsets[:nrows, i]
        null = off < 0
        gather = np.where(null, start, off)[:, None] + np.arange(sizes[i])
        raw = buf[gather].reshape(-1).view(TYPES[type_name][0])
        columns.append(_native(raw, type_name, i, null if null.any() else None))
    return columns


def _native(raw: np.ndarray, type_name: str, i: int, null: np.ndarray | None) -> np.ndarray:
    """Wire values (big-endian) -> a native, C-contiguous column; applies NULL and epoch rules."""
    out = raw.astype(TYPES[type_name][1])  # always a copy: never keep the payload alive
    if type_name == "bool":
        out = raw.astype(np.uint8) != 0
    if type_name in ("timestamptz", "timestamp"):
        pos_inf, neg_inf = out == _I64.max, out == _I64.min
        too_late = (out > _I64.max - PG_EPOCH_US) & ~pos_inf
        if null is not None:
            too_late &= ~null
        if too_late.any():
            row = int(np.argmax(too_late))
            raise ValidationError(
                "timestamp beyond year 294246 does not fit int64 µs since 1970", row=row, column=_column_name(i, type_name)
            )
        out += PG_EPOCH_US
        out[pos_inf | neg_inf] = np.where(pos_inf, _I64.max, _I64.min)[pos_inf | neg_inf]
    if null is not None:
        if out.dtype.kind == "f":
            out[null] = np.nan
        else:
            row = int(np.argmax(null))
            raise ValidationError(
                f"NULL in a {type_name} column; only float columns decode NULL (as NaN)",
                row=row,
                column=_column_name(i, type_name),
            )
    return out
