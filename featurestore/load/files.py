"""read_chunks: files -> validated chunks, one file after another, memory bounded by ``chunk_rows``."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from featurestore.errors import ConfigError, ValidationError
from featurestore.load.chunk import BarChunk
from featurestore.load.columns import _check_arguments
from featurestore.load.paths import _FORMAT_NAMES, FORMATS, _format_of, expand_paths
from featurestore.load.read_csv import (
    _csv_batches,
    _csv_error,
    _CsvConversionError,
    _locate_csv_error,
)
from featurestore.load.read_ipc import _ipc_batches, ipc_rows
from featurestore.load.read_parquet import _parquet_batches, parquet_rows
from featurestore.load.rules import DEFAULT_CHUNK_ROWS
from featurestore.load.stream import validate_stream

__all__ = ["estimate_rows", "read_chunks"]


def read_chunks(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    format: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    extra_columns: Collection[str] = (),
    column_map: Mapping[str, str | None] | None = None,
    symbol: str | None = None,
    assume_tz: str | None = None,
    delimiter: str = ",",
    encoding: str = "utf8",
) -> Iterator[BarChunk]:
    """Stream validated chunks of at most ``chunk_rows`` rows from files, one file after another.

    The format comes from the extension (``.csv``, ``.csv.gz``, ``.parquet``/``.pq``,
    ``.feather``/``.arrow``/``.ipc``) unless ``format=`` ("csv", "parquet", "feather"/"ipc")
    is given. ``delimiter`` and ``encoding`` apply to CSV. Every file's columns are checked before
    its first chunk is yielded; a file without data rows is an error. Memory is bounded by about
    two chunks whatever the file size (a Feather file written as one huge compressed record batch
    is the exception: it is decompressed whole).
    """
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be >= 1, got {chunk_rows}")
    fmt_given = _format_given(format)
    extras = _check_arguments(extra_columns, symbol, assume_tz)
    options = {"extra_columns": extras, "column_map": column_map, "symbol": symbol, "assume_tz": assume_tz}
    for path in expand_paths(paths):
        fmt = _format_for(path, fmt_given)
        source = str(path)
        if fmt == "csv":
            batches = _csv_batches(path, chunk_rows, extras, column_map, symbol, delimiter, encoding)
        elif fmt == "parquet":
            batches = _parquet_batches(path, chunk_rows, extras, column_map, symbol)
        else:
            batches = _ipc_batches(path, extras, column_map, symbol)
        rows = 0
        try:
            for chunk in validate_stream(batches, chunk_rows, source, options):
                rows += len(chunk)
                yield chunk
        except _CsvConversionError as exc:
            # A value that is not a number: re-read the file with numbers as text to name its row.
            try:
                _locate_csv_error(path, chunk_rows, extras, column_map, delimiter, encoding, options)
            except ValidationError as located:
                raise located from exc.__cause__
            raise _csv_error(exc.__cause__ or exc, source, encoding) from exc.__cause__
        if rows == 0:
            raise ValidationError("file has no data rows (header only or empty)", source=source)



def _format_given(format: str | None) -> str | None:
    if format is None:
        return None
    fmt = _FORMAT_NAMES.get(format.lower())
    if fmt is None:
        raise ConfigError(f"unknown format {format!r}; use one of {sorted(_FORMAT_NAMES)}")
    return fmt


def _format_for(path: Path, fmt_given: str | None) -> str:
    fmt = fmt_given or _format_of(path)
    if fmt is None:
        raise ValidationError(f"unknown file type; use one of {', '.join(FORMATS)} or pass format=", source=str(path))
    return fmt


def estimate_rows(paths: Iterable[Path], *, format: str | None = None) -> tuple[int | None, bool]:
    """(rows, exact) of the data rows in ``paths``, for a progress bar's total; reads no data.

    Parquet and Feather/Arrow IPC files give exact counts from their metadata. An uncompressed
    CSV is estimated from its size and the bytes per line of its first 64 KiB (``exact`` is then
    False). None when a count cannot be had cheaply (compressed CSV, IPC stream format).
    """
    total, exact = 0, True
    for path in paths:
        try:
            fmt = _format_for(path, _format_given(format))
        except (ConfigError, ValidationError):
            return None, False
        rows: int | None
        if fmt == "parquet":
            rows = parquet_rows(path)
        elif fmt == "ipc":
            rows = ipc_rows(path)
        else:
            rows, exact = _csv_rows_estimate(path), False
        if rows is None:
            return None, False
        total += rows
    return total, exact


def _csv_rows_estimate(path: Path) -> int | None:
    if path.name.lower().endswith((".gz", ".bz2", ".zst")):
        return None  # compressed: the file size says little about the rows
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return None
    lines = head.count(b"\n")
    if lines < 2:
        return max(lines, 1)
    per_line = len(head) / lines
    return max(round(size / per_line) - 1, 1)  # minus the header line
