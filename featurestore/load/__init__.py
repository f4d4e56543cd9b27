"""[load] Sources -> validated, typed numpy columns, in chunks.

This package is the input contract of every write: a pandas DataFrame, a pyarrow Table or
RecordBatch, or CSV / Parquet / Feather (Arrow IPC) files become :class:`BarChunk` objects, or a
:class:`~featurestore.errors.ValidationError` that names the source, row, column and problem before
anything touches the database. It is pure: no connection, no global state.

Use :func:`validate_frame` for data already in memory and :func:`read_chunks` for files (memory
stays bounded by ``chunk_rows`` whatever the file size).

The input contract
==================

Columns
-------
* After renaming with ``column_map`` (``{source_name: new_name}``; a value of ``None`` drops that
  source column, e.g. ``{"Adj Close": None}``), the columns must be exactly ``REQUIRED`` =
  symbol, ts, open, high, low, close, volume, plus any of the names given in ``extra_columns``
  (optional: a load may carry some, all or none of them). Names are
  matched case-sensitively. Keys of ``column_map`` that the source does not have are ignored, so
  one map can serve several file layouts.
* A duplicated column name (before or after renaming) is an error; so is a column that is neither
  required nor declared (the message suggests ``column_map={name: None}`` to drop it); so is a
  missing required column (the message lists the columns present).
* ``symbol="GOOG"`` gives every row that symbol; the source must then have no symbol column.
* pandas: when there is no ``ts`` column but the index is a DatetimeIndex, the index is ``ts``;
  for a two-level MultiIndex whose second level holds datetimes, the levels are (symbol, ts).
  Index names are not looked at.
* CSV: the header row gives the names; ``delimiter=`` (default ``,``) and ``encoding=`` (default
  UTF-8) can be set. A file with a single column whose name contains ``;``, a tab or ``|`` gets
  the hint to pass that delimiter. Only an empty field is a missing value (``NA`` may be a
  symbol). Empty files, header-only files, ragged rows, bytes that are not in the encoding, and
  corrupt or truncated Parquet / Feather files are errors naming the file.

Values, checked in this order (the first failing check raises; it reports the first offending
row, i.e. the lowest row number)
--------------------------------------------------------------------------------------------
1. ``symbol``: non-null strings of 1..64 characters matching :data:`SYMBOL_PATTERN`
   (letters, digits and ``. _ - / : = ^ + @``) with at least one letter or digit.
   Use :func:`validate_symbol` for a single value.
2. ``ts``: one of

   * timezone-aware: a tz-aware pandas ``datetime64`` / pyarrow ``timestamp`` with a time zone, or
     ISO 8601 strings that carry an offset (``2024-01-31T16:00:00-05:00``, ``...Z``, ``+0530``);
     offsets may differ from row to row and are converted to UTC;
   * naive: a naive ``datetime64`` / ``timestamp``, ``date32`` / ``date64``, or ISO 8601 strings
     without an offset (``2024-01-31``, ``2024-01-31 16:00``). These are rejected unless
     ``assume_tz`` names the zone they are in (``assume_tz="UTC"``; CLI ``--assume-tz UTC``);
     local times that do not exist or are ambiguous in that zone (DST changes) are rejected.

   Numbers (epoch seconds, milliseconds, ...) are rejected: the unit would be a guess. Missing
   values, unparseable strings and more than microsecond precision (a nonzero 7th+ fractional
   digit or nanoseconds) are rejected. After conversion to UTC, ``1900-01-01 <= ts <
   2200-01-01`` (this catches year 1, year 9999 and epochs read with the wrong unit).
   Stored as int64 microseconds since 1970-01-01 UTC.
3. ``open``, ``high``, ``low``, ``close``, then ``volume``, one column at a time: numbers
   (integers, floats, decimals, or strings that parse as numbers; booleans, dates and
   non-numeric strings are rejected naming the value), not missing, finite; prices in
   ``0 <= price <= 1e12``; volume ``>= 0``.
4. ``extra_columns`` in the order given: numbers as above; NaN and missing are allowed (stored as
   NaN), +-inf is not.
5. Bar consistency: ``high >= low``, then ``high >= max(open, close)``, then
   ``low <= min(open, close)``.
6. No two rows with the same (symbol, ts) inside one chunk; the error names both rows. (Across
   the chunks of one load, the database primary key catches them.)

Row numbers
-----------
One rule: an error names a row the way you would look it up in its source, and says which way.

* Files (CSV, Parquet, Feather): ``data row N`` counts data rows from 1; a CSV header is not
  counted (in a CSV without blank lines, data row N is on line N + 1). Each file counts from 1,
  continuing across its chunks.
* DataFrames, Arrow Tables and RecordBatches: ``row N (0-based position)`` is the position you
  pass to ``.iloc[N]`` / ``.slice(N)`` (plus ``row_offset``).

``ValidationError.row`` and ``BarChunk.rows`` hold the same numbers.

Fixes in errors
---------------
Where an error has a fix (rename or drop a column, give a symbol, delimiter, encoding or time
zone) it is a :class:`LoadInputError` carrying the fix structured: ``str(exc)`` shows it as Python
(``column_map={'Date': 'ts'}``), :meth:`LoadInputError.render_cli` as CLI options (``--map Date=ts``).

All checks are vectorized (numpy / pyarrow compute); no Python loop runs over rows.
"""


from __future__ import annotations

from featurestore.load.chunk import BarChunk
from featurestore.load.contract import validate_frame
from featurestore.load.files import estimate_rows, read_chunks
from featurestore.load.paths import FORMATS, expand_paths
from featurestore.load.rules import (
    DEFAULT_CHUNK_ROWS,
    FLOAT_COLUMNS,
    MAX_PRICE,
    PRICES,
    REQUIRED,
    SYMBOL_MAX_LEN,
    SYMBOL_PATTERN,
    TS_MAX_US,
    TS_MIN_US,
    Fix,
    Hint,
    LoadInputError,
    row_label,
    validate_symbol,
)

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "FLOAT_COLUMNS",
    "FORMATS",
    "MAX_PRICE",
    "PRICES",
    "REQUIRED",
    "SYMBOL_MAX_LEN",
    "SYMBOL_PATTERN",
    "TS_MAX_US",
    "TS_MIN_US",
    "BarChunk",
    "Fix",
    "Hint",
    "LoadInputError",
    "estimate_rows",
    "expand_paths",
    "read_chunks",
    "row_label",
    "validate_frame",
    "validate_symbol",
]
